"""Validation splits carved from training data, so no choice is ever made on test.

EVAR picks the fine-tuning epoch on the test fold when a task ships no validation split
(ESC-50), which inflates its numbers; here every selection (probe L2 strength,
fine-tuning epoch) uses a split carved from the training data with a fixed seed.
"""

from __future__ import annotations

import numpy as np


def carve_validation(
    labels: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, val positions) into ``labels``; stratified by class when single-label.

    ``labels`` is ``[N]`` class indices or ``[N, C]`` multi-hot. Single-label: each class
    gives about ``round(fraction * n_c)`` clips to validation, at least one when it has two or
    more, and never all of them, so every class stays in training. Multi-label: a seeded
    random share (exact stratification of label sets is not attempted).

    ``groups`` (one key per clip, e.g. ESC-50's ``src_file``) keeps clips cut from one
    recording on one side: whole groups are drawn until the class's share is reached, and a
    class with a single group gives none. Without it every clip is its own group. A group
    belongs to the class of its first clip. Both outputs are sorted.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    if n < 2:
        raise ValueError(f"cannot carve a validation split from {n} training clip(s): add data")
    if groups is None:
        unit = np.arange(n)
    else:
        groups = np.asarray(groups)
        if groups.shape[0] != n:
            raise ValueError(f"{groups.shape[0]} group keys for {n} clips")
        unit = np.unique(groups, return_inverse=True)[1].reshape(-1)
    sizes = np.bincount(unit)
    rng = np.random.default_rng(seed)
    if labels.ndim == 2:
        val_units = _draw_units(rng.permutation(sizes.size), sizes, fraction)
    else:
        first = np.unique(unit, return_index=True)[1]  # first clip of each group
        unit_class = labels[first]
        val_units = np.concatenate([
            _draw_units(rng.permutation(np.flatnonzero(unit_class == cls)), sizes, fraction)
            for cls in np.unique(unit_class)
        ])
    if val_units.size == 0:
        kind = "clips" if groups is None else "groups (recordings)"
        raise ValueError(
            f"no class has two training {kind}, so no validation split can be carved from {n} clips: "
            "add data or give the task a validation split"
        )
    val = np.sort(np.flatnonzero(np.isin(unit, val_units)).astype(np.int64))
    train = np.setdiff1d(np.arange(n), val)
    return train, val


def _draw_units(order: np.ndarray, sizes: np.ndarray, fraction: float) -> np.ndarray:
    """The shortest prefix of the groups in ``order`` holding ``round(fraction * clips)``
    of their clips: at least one group and never all of them, none when there is only one."""
    if order.size < 2:
        return order[:0]
    clips = np.cumsum(sizes[order])
    count = int(np.searchsorted(clips, round(fraction * clips[-1]))) + 1  # first prefix reaching it
    return order[: min(order.size - 1, max(1, count))]


__all__ = ["carve_validation"]
