"""The decisions table: one row per decision, never deleted.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("topic_id", sa.String, nullable=False),
        sa.Column("content_id", sa.String, nullable=False),
        sa.Column("channel_id", sa.String),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("who", sa.String),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rank", sa.Integer),
        sa.Column("probability", sa.Float),
        sa.Column("versions", sa.JSON, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sqlite_autoincrement=True,  # ids never reused: "latest" is the highest id
    )
    op.create_index("ix_decisions_pair", "decisions", ["topic_id", "content_id"])

