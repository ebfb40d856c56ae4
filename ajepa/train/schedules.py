"""Learning-rate, weight-decay and EMA-momentum schedules: pure functions of the step.

Being pure functions (no scheduler objects with hidden state), they resume exactly from
a checkpoint's step and can be plotted or tested without building a model.
"""

from __future__ import annotations

import math


def lr_at(step: int, total: int, warmup: int, peak: float, floor: float) -> float:
    """Linear warmup from ~0 to `peak` over `warmup` steps, then cosine decay to `floor`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def weight_decay_at(step: int, total: int, start: float, end: float | None) -> float:
    """Constant `start`, or cosine from `start` to `end` over the run (I-JEPA's wd schedule)."""
    if end is None:
        return start
    progress = min(1.0, step / max(1, total))
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_momentum_at(step: int, total: int, start: float, end: float, kind: str = "linear") -> float:
    """EMA momentum from `start` to `end`: linear (I-JEPA) or cosine (BYOL / the A-JEPA brief)."""
    progress = min(1.0, step / max(1, total))
    if kind == "linear":
        return start + (end - start) * progress
    if kind == "cosine":
        return end - (end - start) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown EMA schedule {kind!r}: choose 'linear' or 'cosine'")
