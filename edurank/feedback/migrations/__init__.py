"""Alembic's script directory of the feedback store: `env.py` and the ordered revisions in `versions/`, run by
`FeedbackStore.open` (no alembic.ini: the store passes its connection in)."""
