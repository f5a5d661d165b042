"""Jobs: the shared training engine (`loop.py`), one trainer per model, distillation and the quickstart, and the
pieces only training uses (candidates and folds, language-grouped batches, hard negatives, adversaries)."""
