"""Alembic's environment for the feedback store: `edurank.feedback.store.migrate` runs `upgrade head` with its
own connection, already inside the transaction that holds the migration lock, in `config.attributes`."""

from __future__ import annotations

from alembic import context


def run_migrations() -> None:
    attributes = context.config.attributes
    context.configure(connection=attributes["connection"], version_table=attributes["version_table"])
    with context.begin_transaction():  # joins the store's transaction: the whole upgrade commits at once
        context.run_migrations()


if hasattr(context, "config"):  # run by Alembic; a plain import (the wheel's import check) does nothing
    run_migrations()
