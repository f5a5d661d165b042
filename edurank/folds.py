"""Cross-validation folds over rows: stratified by one label, or by several columns at once. The essay
scorer and the classifier train on these folds and their evaluations read them back.

numpy and the splitters load inside the functions: the configs validate `--train-folds` with
`check_train_folds`, and the CLI builds its parser from them without loading either."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edurank.errors import InputError

if TYPE_CHECKING:
    import numpy as np


def multilabel_folds(labels: np.ndarray, folds: int, seed: int = 42) -> np.ndarray:
    """Fold number per row, balancing every column's distribution of values across folds at once
    (iterative stratification, Sechidis et al. 2011, via `iterative-stratification`): each column's
    distinct values become one-hot labels, so every trait's score levels spread evenly."""
    import numpy as np
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    if folds < 2 or folds > len(labels):
        raise InputError(f"--folds {folds}: need between 2 and {len(labels)} folds for {len(labels)} rows")
    onehot = np.concatenate([labels[:, [j]] == np.unique(labels[:, j])[None, :] for j in range(labels.shape[1])],
                            axis=1).astype(int)
    assignment = np.empty(len(labels), dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), onehot)):
        assignment[held_out] = fold
    return assignment


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 42) -> np.ndarray:
    """Fold number per row, each label's rows spread evenly over the folds (labels rarer than `folds`
    rows go wherever the splitter puts them)."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    if folds < 2 or folds > len(labels):
        raise InputError(f"--folds {folds}: need between 2 and {len(labels)} folds for {len(labels)} rows")
    assignment = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        assignment[held_out] = fold
    return assignment


def check_train_folds(train_folds: int | None, folds: int) -> None:
    """--train-folds N (train only the first N folds while exploring) must name folds that exist."""
    if train_folds is not None and not 1 <= train_folds <= folds:
        raise InputError(f"--train-folds {train_folds}: must be between 1 and --folds {folds}")
