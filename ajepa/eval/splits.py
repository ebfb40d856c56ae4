"""Validation splits carved from training data, so no choice is ever made on test.

EVAR picks the fine-tuning epoch on the test fold when a task ships no validation split
(ESC-50), which inflates its numbers; here every selection (probe L2 strength,
fine-tuning epoch) uses a split carved from the training data with a fixed seed.
"""

from __future__ import annotations

import numpy as np


def carve_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, val positions) into ``labels``; stratified by class when single-label.

    ``labels`` is ``[N]`` class indices or ``[N, C]`` multi-hot. Single-label: each class
    gives ``round(fraction * n_c)`` clips to validation, at least one when it has two or
    more, and never all of them, so every class stays in training. Multi-label: a seeded
    random share (exact stratification of label sets is not attempted).
    Both outputs are sorted.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    if n < 2:
        raise ValueError(f"cannot carve a validation split from {n} training clip(s): add data")
    rng = np.random.default_rng(seed)
    if labels.ndim == 2:
        take = min(n - 1, max(1, round(fraction * n)))
        val = rng.permutation(n)[:take]
    else:
        val_parts = []
        for cls in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == cls))
            take = round(fraction * members.size)
            if members.size >= 2:
                take = min(members.size - 1, max(1, take))
            else:
                take = 0
            val_parts.append(members[:take])
        val = np.concatenate(val_parts) if val_parts else np.zeros(0, dtype=np.int64)
        if val.size == 0:
            raise ValueError(
                f"no class has two training clips, so no validation split can be carved from {n} clips: "
                "add data or give the task a validation split"
            )
    val = np.sort(val.astype(np.int64))
    train = np.setdiff1d(np.arange(n), val)
    return train, val


__all__ = ["carve_validation"]
