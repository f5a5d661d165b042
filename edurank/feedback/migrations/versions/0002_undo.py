"""Undo: when a decision was undone and by whom (a row is marked, never deleted, so the one before it is
current again).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("undone_at", sa.DateTime(timezone=True)))
    op.add_column("decisions", sa.Column("undone_by", sa.String))

