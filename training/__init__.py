"""Trainers, one module per job, and the pieces they share (folds, batching, hard negatives)."""
