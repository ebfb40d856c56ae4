"""The masking-ratio knob for block strategies: from a requested ratio to a block scale.

For ``random``, ``time``, ``freq`` and ``block`` the ratio is a patch count and is met
exactly (up to the grid's granularity). Multi-block and tf masks are defined by block
*scales*, and overlapping blocks make the covered share a random variable, so
``ratio = r`` is mapped onto the scale range like this:

    both ends of ``scale`` are multiplied by one factor k (so the range keeps its
    max/min proportion; aspect ratios, block count, strip probabilities and the context
    block are unchanged), with k chosen so that the *expected share of the grid covered by
    the union of target blocks (strips for tf)* equals r.

The expectation is exact for a given set of block shapes: blocks are placed
independently, so a patch is outside every block with probability
``prod_m (1 - P(block m covers it))``, and :func:`ajepa.masks.geometry.coverage_profile`
gives that probability per row and column for each placement mode. It is averaged over a
fixed-seed set of 1024 shape draws (plans), which makes the map deterministic and
monotone in k, and solved by bisection. Plans the sampler would reject (no room for
``min_keep`` context patches) are left out of the average as they are at sampling time.
Left out of the formula: the rare re-draws for ``min_keep``; the realised mean is within
about 0.03 of r on the paper's 8 x 64 grid (tests/test_masks_strategies.py checks 0.05).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ajepa.masks.geometry import coverage_profile

CALIBRATION_PLANS = 1024
CALIBRATION_SEED = 0xA7E9A


def expected_union_coverage(rows: np.ndarray, cols: np.ndarray, grid: tuple[int, int],
                            wraps: tuple[bool, bool]) -> np.ndarray:
    """``[P]`` expected share of the grid covered by the union of blocks ``rows, cols [P, M]``."""
    height, width = grid
    if wraps == (True, True):  # every patch equally likely: a closed form, no grid needed
        return 1.0 - np.prod(1.0 - rows * cols / (height * width), axis=1)
    row_p = coverage_profile(rows, height, wraps[0])  # [P, M, H]
    col_p = coverage_profile(cols, width, wraps[1])  # [P, M, W]
    outside = np.ones((rows.shape[0], height, width))
    for m in range(rows.shape[1]):
        outside *= 1.0 - row_p[:, m, :, None] * col_p[:, m, None, :]
    return 1.0 - outside.mean(axis=(1, 2))


def solve_multiplier(coverage_at: Callable[[float], float], target: float, low: float, high: float,
                     what: str) -> float:
    """Smallest k in [low, high] with ``coverage_at(k) >= target`` (coverage is monotone in k)."""
    lowest, highest = coverage_at(low), coverage_at(high)
    if not lowest <= target <= highest:
        raise ValueError(
            f"{what}: ratio={target} is out of reach on this grid; expected target coverage ranges "
            f"from {lowest:.3f} (1-patch blocks) to {highest:.3f} (largest blocks)"
        )
    for _ in range(40):
        mid = float(np.sqrt(low * high))
        if coverage_at(mid) >= target:
            high = mid
        else:
            low = mid
    # the coverage is a step function of k (sides are whole patches): take the nearer step
    return low if abs(coverage_at(low) - target) < abs(coverage_at(high) - target) else high
