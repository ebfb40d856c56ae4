"""Curriculum masking (A-JEPA Fig. 3): from an easy mask to a hard mask over training.

``p(t)`` is the probability that a sample (or a whole batch, ``per: batch``) uses the hard
strategy at training progress ``t = step / total_steps``. Every function starts at ``c0``
(except ``constant``), is non-decreasing, and reaches 1 at ``t = end``. With
``u = min(t / end, 1)``:

==============  =========================================================================
constant        ``value`` throughout
linear          ``c0 + (1 - c0) u``
root            ``sqrt(u (1 - c0^2) + c0^2)`` (the competence function A-JEPA cites)
power           ``(u (1 - c0^k) + c0^k)^(1/k)``, ``k = power``: k = 2 is root, k = 1 linear,
                k > 2 rises faster early, k < 1 starts slowly
exponential     ``c0^(1 - u)``: geometric growth from c0 to 1 (needs c0 > 0)
cosine          ``c0 + (1 - c0) (1 - cos(pi u)) / 2``
step            ``c0 + (1 - c0) * (#switch points <= u) / len(steps)``
==============  =========================================================================

Any two strategies can be paired (``easy``/``hard`` are full masking configs).
"""

from __future__ import annotations

import numpy as np

from ajepa.config import CurriculumMask, CurriculumSchedule
from ajepa.masks.batch import MaskBatch
from ajepa.masks.strategies import MaskSampler, build_mask_sampler, register


def curriculum_probability(schedule: CurriculumSchedule, progress: float | np.ndarray) -> float | np.ndarray:
    """p(t): probability of the hard mask at training progress ``t`` in [0, 1]."""
    t = np.clip(np.asarray(progress, dtype=np.float64), 0.0, 1.0)
    u = np.minimum(t / schedule.end, 1.0)
    c0, kind = schedule.c0, schedule.kind
    if kind == "constant":
        p = np.full_like(u, schedule.value)
    elif kind == "linear":
        p = c0 + (1.0 - c0) * u
    elif kind in ("root", "power"):
        k = 2.0 if kind == "root" else schedule.power
        p = (u * (1.0 - c0**k) + c0**k) ** (1.0 / k)
    elif kind == "exponential":
        p = c0 ** (1.0 - u)
    elif kind == "cosine":
        p = c0 + (1.0 - c0) * (1.0 - np.cos(np.pi * u)) / 2.0
    elif kind == "step":
        switched = (u[..., None] >= np.asarray(schedule.steps)).sum(-1)
        p = c0 + (1.0 - c0) * switched / len(schedule.steps)
    else:  # a new kind in the config without an implementation here
        raise ValueError(f"no curriculum function for schedule.kind={kind!r}")
    p = np.clip(p, 0.0, 1.0)
    return float(p) if p.ndim == 0 else p


@register("curriculum")
class CurriculumSampler(MaskSampler):
    """Per sample (or per batch) choose the hard strategy with probability p(progress)."""

    cfg: CurriculumMask

    def __init__(self, cfg: CurriculumMask, grid):
        super().__init__(cfg, grid)
        self.easy = build_mask_sampler(cfg.easy, grid)
        self.hard = build_mask_sampler(cfg.hard, grid)

    def probability(self, progress: float) -> float:
        return curriculum_probability(self.cfg.schedule, progress)

    def draw(self, rng, batch_size, progress):
        p = self.probability(progress)
        if self.cfg.per == "batch":
            hard = np.full(batch_size, rng.random() < p)
        else:
            hard = rng.random(batch_size) < p
        num_hard = int(hard.sum())
        easy_part = self.easy.draw(rng, batch_size - num_hard, progress) if num_hard < batch_size else None
        hard_part = self.hard.draw(rng, num_hard, progress) if num_hard else None
        if hard_part is not None:
            hard_part.hard[:] = True
        # rows come as [easy..., hard...]; put each back at its position in the batch
        order = np.argsort(np.argsort(hard, kind="stable"), kind="stable")
        return MaskBatch.merge([p for p in (easy_part, hard_part) if p is not None], order)
