"""Masking strategies: one registered class per ``strategy`` literal of ajepa.config.

A strategy turns a random generator into a :class:`~ajepa.masks.batch.MaskBatch` for a
whole batch at once (vectorised numpy), because the collator calls it for 256 samples per
step. ``sample()`` is the one-sample view that docs/ARCHITECTURE.md specifies.

Strategies and what they guarantee (grid ``H x W``, ``N = H * W``):

- ``random``: exactly ``k = clamp(round(ratio * N), 1, N - 1)`` target patches, uniformly.
- ``time``: exactly ``clamp(round(ratio * W), 1, W - 1)`` whole columns, as strips whose
  widths are uniform in ``strip_width`` (the last one cut to fit); strips are laid in a
  random order with the free columns on a circle and rotated, so every column is equally
  likely to be masked; strips may touch. One target block per strip.
- ``freq``: the same with whole rows.
- ``block``: one contiguous block of exactly ``k`` patches: a rectangle with the drawn
  aspect plus, if ``k`` is not a product, a partial extra column (row) along its side at a
  random offset.
- ``multiblock`` (I-JEPA): ``num_blocks`` target blocks and one context block (scale
  ``context_scale``, aspect 1); context = context block minus every target.
- ``tf`` (A-JEPA): ``num_blocks`` small blocks, each grown into a time strip (all
  frequency rows over the block's columns, probability ``p_time``) or a frequency strip
  (all time columns over the block's rows); context block minus targets.

For the first four the context is every non-target patch (as in MAE and the audio-JEPA
design study). For the block strategies, scale and aspect are drawn independently per
block (I-JEPA reuses one uniform draw for both and one shape for all blocks); the block
*shapes* are drawn once per batch, positions per sample, so all samples of a batch carry
the same number of target entries (see ajepa.masks.batch). ``ratio`` maps onto the
scale range as described in ajepa.masks.ratio.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from ajepa.config import BlockMask, FreqMask, MultiBlockMask, RandomMask, TFMask, TimeMask
from ajepa.masks import geometry as geo
from ajepa.masks.batch import MaskBatch, SampleMask
from ajepa.masks.ratio import CALIBRATION_PLANS, CALIBRATION_SEED, expected_union_coverage, solve_multiplier

STRATEGIES: dict[str, type["MaskSampler"]] = {}

MIN_KEEP_TRIES = 20  # per-sample re-draws of block positions before min_keep is forced
PLAN_TRIES = 50  # re-draws of a batch's block shapes that leave no room for min_keep
CORRECTION_ROUNDS = 2  # ratio calibration: formula, then corrections measured by sampling


def register(name: str):
    """Class decorator: make a sampler the implementation of ``strategy: name``."""

    def add(cls: type["MaskSampler"]) -> type["MaskSampler"]:
        cls.name = name
        STRATEGIES[name] = cls
        return cls

    return add


def build_mask_sampler(cfg: Any, grid: tuple[int, int]) -> "MaskSampler":
    """The sampler for a masking config (any member of ``ajepa.config.MaskingConfig``)."""
    try:
        cls = STRATEGIES[cfg.strategy]
    except KeyError:
        raise ValueError(f"unknown masking strategy {cfg.strategy!r}; registered: {sorted(STRATEGIES)}") from None
    return cls(cfg, grid)


def numpy_rng(generator: torch.Generator | np.random.Generator) -> np.random.Generator:
    """A numpy generator derived from a torch one (one draw), for fast vectorised sampling."""
    if isinstance(generator, np.random.Generator):
        return generator
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator).item())
    return np.random.default_rng(seed)


class MaskSampler(ABC):
    """Draws masks for a fixed patch grid. Subclasses implement :meth:`draw`."""

    name: ClassVar[str]

    def __init__(self, cfg: Any, grid: tuple[int, int]):
        height, width = int(grid[0]), int(grid[1])
        if height < 1 or width < 1 or height * width < 2:
            raise ValueError(f"a mask needs a grid of at least 2 patches, got {grid}")
        self.cfg, self.grid, self.num_patches = cfg, (height, width), height * width

    def sample(self, generator: torch.Generator, progress: float = 0.0) -> SampleMask:
        """One sample's mask (docs/ARCHITECTURE.md); same as row 0 of a batch of one."""
        return self.sample_batch(generator, 1, progress).sample_mask(0)

    def sample_batch(self, generator: torch.Generator | np.random.Generator, batch_size: int,
                     progress: float = 0.0) -> MaskBatch:
        return self.draw(numpy_rng(generator), batch_size, progress)

    @abstractmethod
    def draw(self, rng: np.random.Generator, batch_size: int, progress: float) -> MaskBatch:
        """Masks of ``batch_size`` samples at training progress ``progress`` in [0, 1]."""

    @property
    def nominal_ratio(self) -> float:
        """Requested share of the grid that is target: exact for count-based strategies,
        the expected union coverage for block strategies."""
        raise NotImplementedError


def _count(ratio: float, total: int) -> int:
    """Patches (or rows/columns) for a ratio: nearest count, at least one target and one context."""
    return int(min(max(geo.round_half_up(ratio * total), 1), total - 1))


# --------------------------------------------------------------------------- count-based


@register("random")
class RandomSampler(MaskSampler):
    """Unstructured masking: a uniformly random set of exactly k patches."""

    cfg: RandomMask

    def __init__(self, cfg: RandomMask, grid):
        super().__init__(cfg, grid)
        self.count = _count(cfg.ratio, self.num_patches)

    @property
    def nominal_ratio(self) -> float:
        return self.count / self.num_patches

    def draw(self, rng, batch_size, progress):
        keys = rng.random((batch_size, self.num_patches))
        kth = np.partition(keys, self.count - 1, axis=1)[:, self.count - 1:self.count]
        target = keys <= kth  # the k smallest keys: a uniformly random k-subset
        for row in np.flatnonzero(np.count_nonzero(target, axis=1) != self.count):  # tied keys (~never)
            target[row] = False
            target[row, np.argsort(keys[row], kind="stable")[:self.count]] = True
        return MaskBatch(~target, labels=target.view(np.int8) - 1)  # one block: 0, elsewhere -1


class _StripSampler(MaskSampler):
    """Whole rows or columns, in strips of random width, covering an exact count of lines."""

    axis: ClassVar[int]  # 0: strips of rows (freq), 1: strips of columns (time)

    def __init__(self, cfg: TimeMask | FreqMask, grid):
        super().__init__(cfg, grid)
        self.lines = self.grid[self.axis]
        if self.lines < 2:
            raise ValueError(f"{cfg.strategy!r} masking needs at least 2 lines along its axis, grid {grid}")
        self.count = _count(cfg.ratio, self.lines)
        self.widths = (min(cfg.strip_width[0], self.count), min(cfg.strip_width[1], self.count))
        self.max_strips = -(-self.count // self.widths[0])

    @property
    def nominal_ratio(self) -> float:
        return self.count / self.lines

    def draw(self, rng, batch_size, progress):
        low, high = self.widths
        widths = rng.integers(low, high + 1, (batch_size, self.max_strips))
        ends = np.cumsum(widths, axis=1)
        strips = (ends < self.count).sum(1) + 1
        last = strips - 1
        rows = np.arange(batch_size)
        widths[rows, last] -= ends[rows, last] - self.count  # cut the last strip to fit
        line_labels = geo.strip_layout(rng, widths, strips, self.lines)  # [B, lines]
        height, width = self.grid
        if self.axis == 1:  # the same label in every row
            labels = np.broadcast_to(line_labels[:, None, :], (batch_size, height, width))
        else:
            labels = np.broadcast_to(line_labels[:, :, None], (batch_size, height, width))
        labels = labels.reshape(batch_size, self.num_patches)
        return MaskBatch(labels < 0, labels=labels)


@register("time")
class TimeSampler(_StripSampler):
    """Time masking: whole columns (all frequency rows) over spans of time patches."""

    axis = 1


@register("freq")
class FreqSampler(_StripSampler):
    """Frequency masking: whole rows (all time columns) over spans of frequency patches."""

    axis = 0


@register("block")
class BlockSampler(MaskSampler):
    """One contiguous block of exactly k patches (rectangle plus a partial column or row)."""

    cfg: BlockMask

    def __init__(self, cfg: BlockMask, grid):
        super().__init__(cfg, grid)
        self.count = _count(cfg.ratio, self.num_patches)
        self.wraps = geo.WRAPS[cfg.placement]

    @property
    def nominal_ratio(self) -> float:
        return self.count / self.num_patches

    def draw(self, rng, batch_size, progress):
        height, width = self.grid
        k = self.count
        aspect = geo.log_uniform(rng, *self.cfg.aspect_ratio, batch_size)
        rows = np.clip(geo.round_half_up(np.sqrt(k / aspect)), 1, min(height, k))
        cols = k // rows
        full_width = cols >= width
        cols = np.where(full_width, width, cols)
        rows = np.where(full_width, k // width, rows)
        rest = k - rows * cols  # < rows (partial column) or < width (partial row)
        box_rows = rows + (full_width & (rest > 0))
        box_cols = cols + (~full_width & (rest > 0))
        top = geo.draw_starts(rng, box_rows, height, self.wraps[0], batch_size)
        left = geo.draw_starts(rng, box_cols, width, self.wraps[1], batch_size)
        body = geo.rectangles(top, left, rows, cols, self.grid)
        # the partial line slides along the rectangle's side, so corners can be targets too
        side = np.where(full_width, cols, rows)
        slide = np.floor(rng.random(batch_size) * (side - rest + 1)).astype(np.int64)
        one = np.ones_like(rest)
        extra_row = geo.rectangles((top + rows) % height, (left + slide) % width, one, rest, self.grid)
        extra_col = geo.rectangles((top + slide) % height, (left + cols) % width, rest, one, self.grid)
        target = body | np.where(full_width[:, None], extra_row, extra_col)
        return MaskBatch(~target, labels=target.view(np.int8) - 1)


# --------------------------------------------------------------------------- block-based


class _BlockPlanSampler(MaskSampler):
    """Target blocks + one context block minus the targets (I-JEPA's scheme, defects fixed).

    A *plan* is the batch's block shapes (drawn once per batch, so every sample has the
    same number of target entries); positions are drawn per sample. Samples whose context
    has fewer than ``min_keep`` patches are re-drawn (positions) up to MIN_KEEP_TRIES times;
    if that fails, the missing context patches are taken from outside the context block,
    then from the targets, and the sample is flagged ``relaxed``.
    """

    config_type: ClassVar[type]

    def __init__(self, cfg: MultiBlockMask | TFMask, grid):
        super().__init__(cfg, grid)
        self.wraps = geo.WRAPS[cfg.placement]
        self.num_blocks = cfg.num_blocks
        self.multiplier = 1.0
        if cfg.ratio is not None:
            self.multiplier = _calibrated_multiplier(type(self), cfg.model_dump_json(), self.grid)

    # shapes from uniforms, so calibration can reuse one fixed set of draws ----------------
    @abstractmethod
    def target_shapes(self, uniforms: np.ndarray, multiplier: float) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) ``[..., M]`` of target blocks from uniforms ``[..., M, 3]``."""

    def context_shape(self, uniform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low, high = self.cfg.context_scale
        return geo.block_shape((low + (high - low) * uniform) * self.num_patches, 1.0, self.grid)

    def feasible(self, rows, cols, ctx_rows, ctx_cols) -> np.ndarray:
        """Whether a plan leaves room for min_keep context patches when the blocks overlap most."""
        height, width = self.grid
        full_row = np.where(cols == width, rows, 0).max(-1)  # strips spanning all columns
        full_col = np.where(rows == height, cols, 0).max(-1)
        cross = full_row * width + full_col * height - full_row * full_col
        smallest_union = np.maximum((rows * cols).max(-1), cross)
        room = np.minimum(self.num_patches - smallest_union, ctx_rows * ctx_cols)
        return room >= self.cfg.min_keep

    def coverage_at(self, multiplier: float, uniforms: np.ndarray, ctx_uniforms: np.ndarray) -> float:
        rows, cols = self.target_shapes(uniforms, multiplier)
        ok = self.feasible(rows, cols, *self.context_shape(ctx_uniforms))
        coverage = expected_union_coverage(rows, cols, self.grid, self.wraps)
        return float(coverage[ok].mean() if ok.any() else coverage.mean())

    @property
    def nominal_ratio(self) -> float:
        uniforms, ctx_uniforms = _calibration_uniforms(self.num_blocks)
        return self.coverage_at(self.multiplier, uniforms, ctx_uniforms)

    # sampling --------------------------------------------------------------------------
    def draw_plan(self, rng: np.random.Generator, multiplier: float | None = None):
        """One batch's shapes: target (rows, cols) [M] and the context block's (rows, cols)."""
        multiplier = self.multiplier if multiplier is None else multiplier
        for _ in range(PLAN_TRIES):
            rows, cols = self.target_shapes(rng.random((self.num_blocks, 3)), multiplier)
            ctx_rows, ctx_cols = self.context_shape(rng.random())
            if self.feasible(rows, cols, ctx_rows, ctx_cols):
                break
        return rows, cols, ctx_rows, ctx_cols

    def _place(self, rng, size, rows, cols, ctx_rows, ctx_cols):
        height, width = self.grid
        shape = (size, self.num_blocks)
        top = geo.draw_starts(rng, rows, height, self.wraps[0], shape)
        left = geo.draw_starts(rng, cols, width, self.wraps[1], shape)
        blocks = geo.rectangles(top, left, rows, cols, self.grid)  # [size, M, N]
        ctx_top = geo.draw_starts(rng, ctx_rows, height, self.wraps[0], size)
        ctx_left = geo.draw_starts(rng, ctx_cols, width, self.wraps[1], size)
        context_block = geo.rectangles(ctx_top, ctx_left, ctx_rows, ctx_cols, self.grid)
        return blocks, context_block & ~blocks.any(1)

    def draw(self, rng, batch_size, progress):
        return self.draw_with_plan(rng, batch_size, self.draw_plan(rng))

    def draw_with_plan(self, rng, batch_size, plan) -> MaskBatch:
        candidates = max(batch_size, int(np.ceil(self.cfg.oversample * batch_size)))
        blocks, context = self._place(rng, candidates, *plan)
        short = np.flatnonzero(context.sum(1) < self.cfg.min_keep)
        for _ in range(MIN_KEEP_TRIES):
            if not short.size:
                break
            new_blocks, new_context = self._place(rng, short.size, *plan)
            blocks[short], context[short] = new_blocks, new_context
            short = short[context[short].sum(1) < self.cfg.min_keep]
        relaxed = np.zeros(candidates, bool)
        for i in short:  # only for plans that barely fit: give patches back to the context
            self._force_min_keep(rng, blocks[i], context[i])
            relaxed[i] = True
        keep = self._typical(context.sum(1), batch_size)
        return MaskBatch(context[keep], blocks=blocks[keep], relaxed=relaxed[keep])

    @staticmethod
    def _typical(context_sizes: np.ndarray, batch_size: int) -> np.ndarray:
        """The batch_size candidates whose context size is nearest the median (in draw order).

        Equal-length batching cuts every context to the batch's smallest one; keeping
        typical candidates narrows the spread: on 8 x 64 with oversample=2 the cut drops
        ~14 % of context patches instead of ~46 % (multiblock), while the mean target
        coverage moves by < 0.01. oversample=1 keeps the unconditioned distribution.
        """
        if context_sizes.size == batch_size:
            return np.arange(batch_size)
        distance = np.abs(context_sizes - np.median(context_sizes))
        return np.sort(np.argsort(distance, kind="stable")[:batch_size])

    def _force_min_keep(self, rng, blocks: np.ndarray, context: np.ndarray) -> None:
        union = blocks.any(0)
        need = self.cfg.min_keep - int(context.sum())
        for pool in (~union & ~context, union & ~context):  # free patches first, then targets
            candidates = np.flatnonzero(pool)
            take = rng.permutation(candidates)[:need]
            context[take] = True
            blocks[:, take] = False
            need -= take.size
            if need <= 0:
                break


@functools.lru_cache(maxsize=4)
def _calibration_uniforms(num_blocks: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(CALIBRATION_SEED)
    return rng.random((CALIBRATION_PLANS, num_blocks, 3)), rng.random(CALIBRATION_PLANS)


@functools.lru_cache(maxsize=64)
def _calibrated_multiplier(cls: type[_BlockPlanSampler], cfg_json: str, grid: tuple[int, int]) -> float:
    """Scale multiplier k for cfg.ratio (see ajepa.masks.ratio); cached per (config, grid)."""
    cfg = cls.config_type.model_validate_json(cfg_json)
    probe = cls(cfg.model_copy(update={"ratio": None}), grid)
    uniforms, ctx_uniforms = _calibration_uniforms(cfg.num_blocks)
    low = 0.5 / (cfg.scale[1] * probe.num_patches)  # every block a single patch
    high = 1.0 / cfg.scale[1]  # the largest block is the whole grid
    coverage = lambda k: probe.coverage_at(k, uniforms, ctx_uniforms)  # noqa: E731
    what = f"masking strategy {cfg.strategy!r}"
    target = cfg.ratio
    multiplier = solve_multiplier(coverage, target, low, high, what)
    for _ in range(CORRECTION_ROUNDS):  # min_keep re-draws and oversampling shift the realised share
        target += cfg.ratio - _realised_coverage(probe, multiplier)
        multiplier = solve_multiplier(coverage, target, max(low, multiplier / 2), min(high, multiplier * 2), what,
                                      clamp=True, iterations=12)
    return multiplier


def _realised_coverage(sampler: "_BlockPlanSampler", multiplier: float, plans: int = 96, per_plan: int = 16) -> float:
    """Mean union coverage the sampler really produces (fixed seed), as an offset to the formula.

    Measured as formula + mean(realised - formula) per plan: the per-plan difference varies
    far less than the coverage itself, so 96 plans give it to about +-0.005.
    """
    rng = np.random.default_rng(CALIBRATION_SEED + 1)
    offsets = []
    for _ in range(plans):
        plan = sampler.draw_plan(rng, multiplier)
        realised = sampler.draw_with_plan(rng, per_plan, plan).blocks.any(1).mean()
        exact = expected_union_coverage(plan[0][None], plan[1][None], sampler.grid, sampler.wraps)[0]
        offsets.append(realised - exact)
    uniforms, ctx_uniforms = _calibration_uniforms(sampler.num_blocks)
    return sampler.coverage_at(multiplier, uniforms, ctx_uniforms) + float(np.mean(offsets))


def _shapes(cfg, grid, uniforms, multiplier, aspect_scale=1.0):
    """Block rows/cols from uniforms[..., 0] (scale) and [..., 1] (aspect): independent draws."""
    low, high = cfg.scale
    scale = np.minimum(multiplier * (low + (high - low) * uniforms[..., 0]), 1.0)
    log_low, log_high = np.log(cfg.aspect_ratio[0]), np.log(cfg.aspect_ratio[1])
    aspect = np.exp(log_low + (log_high - log_low) * uniforms[..., 1]) * aspect_scale
    return geo.block_shape(scale * grid[0] * grid[1], aspect, grid)


@register("multiblock")
class MultiBlockSampler(_BlockPlanSampler):
    """I-JEPA multi-block: M target blocks; ``time_bias`` > 1 stretches them along time."""

    cfg: MultiBlockMask
    config_type = MultiBlockMask

    def target_shapes(self, uniforms, multiplier):
        return _shapes(self.cfg, self.grid, uniforms, multiplier, self.cfg.time_bias)


@register("tf")
class TFSampler(_BlockPlanSampler):
    """A-JEPA time-frequency masking: small blocks grown into full time or frequency strips.

    A time strip keeps the block's columns and takes every frequency row; a frequency
    strip keeps the block's rows and takes every time column. uniforms[..., 2] < p_time
    picks the time strip.
    """

    cfg: TFMask
    config_type = TFMask

    def target_shapes(self, uniforms, multiplier):
        rows, cols = _shapes(self.cfg, self.grid, uniforms, multiplier)
        time_strip = uniforms[..., 2] < self.cfg.p_time
        height, width = self.grid
        return np.where(time_strip, height, rows), np.where(time_strip, cols, width)
