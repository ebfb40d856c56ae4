"""Normalisation statistics of the pretraining data (the command: ``ajepa-stats``, :mod:`ajepa.cli.stats`).

Computes the global mean and standard deviation of the *un-normalised, un-padded* log-mel
over the pretraining set (``frontend.norm='dataset'`` then reads them). Padding is left
out because it is not audio: counting the zero frames of short clips would pull the mean
towards 0 by an amount that depends on ``target_frames``. Sums are accumulated in float64
per clip, so the result does not depend on clip order or worker count.

The synthetic set needs no manual step: its stats are computed on first use (see
``ajepa.data.tasks``), since the set itself is generated on first use.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ajepa.data.datasets import ClipDataset


class _ClipMoments(Dataset):
    """Per clip: (sum, sum of squares, count) of its log-mel values."""

    def __init__(self, dataset: ClipDataset, indices: np.ndarray):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        spec = self.dataset.log_mel(int(self.indices[i])).to(torch.float64)
        return torch.stack([spec.sum(), (spec * spec).sum(), torch.tensor(float(spec.numel()), dtype=torch.float64)])


def compute_norm_stats(dataset: ClipDataset, max_clips: int | None = None, num_workers: int = 0) -> tuple[float, float, int]:
    """(mean, std, clips used) of the raw log-mel; at most `max_clips` clips, evenly spaced
    over the dataset so a cap still covers all of it."""
    count = len(dataset) if max_clips is None else min(max_clips, len(dataset))
    if count == 0:
        raise ValueError(f"{dataset.name}: no clips to compute normalisation stats from")
    indices = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(np.int64))
    # a private generator: a DataLoader otherwise draws its base seed from the global RNG,
    # and computing stats on first use must not shift the model initialisation that follows
    loader = DataLoader(_ClipMoments(dataset, indices), batch_size=None, num_workers=num_workers,
                        generator=torch.Generator())
    total = torch.zeros(3, dtype=torch.float64)
    for moments in loader:
        total += moments
    mean = total[0] / total[2]
    var = torch.clamp(total[1] / total[2] - mean * mean, min=0.0)
    return float(mean), float(var.sqrt()), len(indices)
