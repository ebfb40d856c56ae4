"""Block shapes and block placement on a patch grid, vectorised over a batch.

Everything here works on numpy arrays with a leading batch (or plan) axis, because the
collator builds 256 masks per step and a Python loop per block would be what the GPU
waits for. Conventions (docs/ARCHITECTURE.md): the grid is ``(H, W)`` = (frequency rows,
time columns), patch ``index = row * W + col``; "aspect" is time extent / frequency extent.

Two I-JEPA defects are fixed here:
- starts are drawn over *every* valid position, so blocks reach the last row and column
  (I-JEPA's ``randint(0, H - h)`` excludes the last start);
- a block may span a whole axis (I-JEPA clamps sides strictly below the grid size); when
  the grid is too short for the drawn aspect, the block keeps its *area* and spans the
  axis, because the area (scale) is the quantity the ablations control.

Placement ``"wrap"`` puts blocks on the torus: a block running past the last column
continues at the first. Then every patch is covered by a block with the same probability
(``side / axis``), which removes I-JEPA's bias toward central patches; with in-grid
placement a 12-column block on 64 columns covers a central column 12x more often than the
first one. ``"inside"`` keeps blocks in the grid (the paper's geometry).
"""

from __future__ import annotations

import numpy as np

WRAPS = {"wrap": (True, True), "wrap_time": (False, True), "inside": (False, False)}


def round_half_up(x: np.ndarray | float) -> np.ndarray:
    """Round .5 upward (numpy's round-half-even would make counts depend on parity)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def log_uniform(rng: np.random.Generator, low: float, high: float, size) -> np.ndarray:
    """Aspect ratios are drawn log-uniformly so that 0.75 and 1/0.75 are equally likely shapes."""
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def block_shape(area: np.ndarray, aspect: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of blocks with ``rows * cols ≈ area`` and ``cols / rows ≈ aspect``.

    Sides are at least 1 and at most the grid; a side cut by the grid hands its length to
    the other side so the area is kept.
    """
    height, width = grid
    area = np.clip(np.asarray(area, dtype=np.float64), 1.0, height * width)
    rows = np.clip(round_half_up(np.sqrt(area / aspect)), 1, height)
    cols = np.clip(round_half_up(area / rows), 1, width)
    # A block that hit the width limit gives the rest of its area back to the rows.
    rows = np.where(cols == width, np.clip(round_half_up(area / width), 1, height), rows)
    return rows, cols


def draw_starts(rng: np.random.Generator, lengths: np.ndarray, size: int, wrap: bool, shape) -> np.ndarray:
    """First row (or column) of blocks of the given lengths along one axis, uniformly.

    ``wrap``: any of the ``size`` positions. Otherwise any of ``size - length + 1``
    positions, the last one included.
    """
    choices = np.full(shape, size) if wrap else size - np.broadcast_to(lengths, shape) + 1
    return np.floor(rng.random(shape) * choices).astype(np.int64)


def axis_cover(starts: np.ndarray, lengths: np.ndarray, size: int) -> np.ndarray:
    """Boolean ``[..., size]``: which positions along an axis the segments cover (modulo size)."""
    positions = np.arange(size)
    offset = (positions - starts[..., None]) % size
    return offset < np.asarray(lengths)[..., None]


def rectangles(top, left, rows, cols, grid: tuple[int, int]) -> np.ndarray:
    """Boolean ``[..., H * W]`` masks of (possibly wrapped) rectangles."""
    height, width = grid
    row_in = axis_cover(top, rows, height)
    col_in = axis_cover(left, cols, width)
    mask = row_in[..., :, None] & col_in[..., None, :]
    return mask.reshape(*mask.shape[:-2], height * width)


def coverage_profile(lengths: np.ndarray, size: int, wrap: bool) -> np.ndarray:
    """``[..., size]`` probability that a randomly placed segment covers each position.

    Exact for :func:`draw_starts`; used to turn a masking ratio into a block scale.
    """
    lengths = np.asarray(lengths)
    if wrap:
        return np.broadcast_to((lengths / size)[..., None], (*lengths.shape, size)).astype(np.float64)
    positions = np.arange(size)
    num_starts = size - lengths[..., None] + 1
    # starts s in [max(0, i - len + 1), min(i, size - len)] cover position i
    first = np.maximum(0, positions - lengths[..., None] + 1)
    last = np.minimum(positions, size - lengths[..., None])
    return np.clip(last - first + 1, 0, None) / num_starts


def strip_layout(rng: np.random.Generator, widths: np.ndarray, counts: np.ndarray, size: int) -> np.ndarray:
    """Lay strips along a circular axis: ``[B, size]`` strip id per position, -1 = free.

    ``widths [B, S]`` are strip widths (rows beyond ``counts[b]`` are unused) whose used part
    sums to at most ``size``. The strips and the free positions are shuffled into a random
    sequence (every arrangement of strips among free cells equally likely) and the sequence
    is rotated by a uniform offset, so every position is covered with the same probability.
    """
    batch, max_strips = widths.shape
    used = np.arange(max_strips)[None, :] < counts[:, None]
    widths = np.where(used, widths, 0)
    free = size - widths.sum(1)
    # items: max_strips strip slots, then `size` free cells (only free[b] of them real)
    item_len = np.concatenate([widths, (np.arange(size)[None, :] < free[:, None]).astype(np.int64)], 1)
    item_id = np.concatenate([np.broadcast_to(np.arange(max_strips), (batch, max_strips)),
                              np.full((batch, size), -1)], 1)
    keys = np.where(item_len > 0, rng.random(item_len.shape), 2.0)
    order = np.argsort(keys, axis=1)
    item_len = np.take_along_axis(item_len, order, 1)
    item_id = np.take_along_axis(item_id, order, 1)
    labels = np.repeat(item_id.ravel(), item_len.ravel()).reshape(batch, size)
    shift = np.floor(rng.random(batch) * size).astype(np.int64)
    gather = (np.arange(size)[None, :] - shift[:, None]) % size
    return np.take_along_axis(labels, gather, 1)
