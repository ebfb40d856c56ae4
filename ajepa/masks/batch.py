"""Masks of a batch as boolean grids, and their conversion to equal-length index tensors.

Strategies produce a :class:`MaskBatch`: a context mask ``[B, N]`` and one mask per target
block ``[B, M, N]`` (N = H * W patches). Booleans make set operations (union, context minus
targets, disjointness) one numpy expression for the whole batch; indices are made once, at
the end, by :func:`to_index_tensors`.

Equal-length batching. A batch tensor needs the same number of context and of target
indices in every sample, with no padding. I-JEPA cuts every sample to the batch minimum
in raster order, so the highest-frequency / latest patches are the ones silently lost.
Here:
1. counts are equal by construction where possible: random, time, freq and block masks
   have exact counts; multi-block and tf draw one set of block shapes per batch, so every
   sample has the same number of target entries;
2. multi-block and tf draw ``oversample`` x B candidates and keep the B whose context
   size is nearest the median, which narrows the spread that step 3 must remove (8 x 64,
   batch 256: ~14 % of context patches cut instead of ~46 %);
3. what still differs (context after removing overlapping targets; easy vs hard samples of
   a per-sample curriculum) is cut to the batch minimum by dropping patches *uniformly at
   random*, which keeps each sample's mask spatially unbiased. Dropped targets stay hidden
   from the context; they are just not predicted.
The reported ``mask_ratio`` is measured after the cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SampleMask:
    """One sample's mask: sorted context indices and one sorted index tensor per target block."""

    context: torch.Tensor
    targets: list[torch.Tensor]
    hard: bool = False
    relaxed: bool = False  # min_keep could only be met by giving target patches back to the context

    @property
    def target_union(self) -> torch.Tensor:
        if not self.targets:
            return torch.empty(0, dtype=torch.long)
        return torch.unique(torch.cat(self.targets))


@dataclass
class MaskBatch:
    """Boolean masks of B samples on a grid of N patches.

    Target blocks come in one of two forms: ``blocks [B, M, N]`` (block m of sample b; may be
    empty; blocks may overlap) or, for strategies whose blocks never overlap, the cheaper
    ``labels [B, N]`` (block id of each target patch, -1 elsewhere). ``hard[b]`` marks
    samples drawn from a curriculum's hard strategy; ``relaxed[b]`` marks samples whose
    min_keep could only be met by moving target patches to the context.
    """

    context: np.ndarray  # bool [B, N]
    blocks: np.ndarray | None = None  # bool [B, M, N]
    labels: np.ndarray | None = None  # signed int [B, N]
    hard: np.ndarray | None = None  # bool [B]
    relaxed: np.ndarray | None = None  # bool [B]

    def __post_init__(self):
        if (self.blocks is None) == (self.labels is None):
            raise ValueError("give exactly one of blocks or labels")
        size = self.context.shape[0]
        self.hard = np.zeros(size, bool) if self.hard is None else self.hard
        self.relaxed = np.zeros(size, bool) if self.relaxed is None else self.relaxed

    @property
    def size(self) -> int:
        return self.context.shape[0]

    def block_masks(self) -> np.ndarray:
        """Targets as ``[B, M, N]`` booleans, whichever form they are stored in."""
        if self.blocks is not None:
            return self.blocks
        num_blocks = int(self.labels.max(initial=-1)) + 1
        return self.labels[:, None, :] == np.arange(num_blocks)[None, :, None]

    @classmethod
    def merge(cls, parts: list["MaskBatch"], order: np.ndarray) -> "MaskBatch":
        """Concatenate batches and reorder rows: ``result[i] = concatenated[order[i]]``."""
        cat = lambda xs: np.concatenate(xs, 0)[order]  # noqa: E731
        extra = dict(context=cat([p.context for p in parts]), hard=cat([p.hard for p in parts]),
                     relaxed=cat([p.relaxed for p in parts]))
        if all(p.labels is not None for p in parts):
            return cls(labels=cat([p.labels for p in parts]), **extra)
        blocks = [p.block_masks() for p in parts]
        num_blocks = max(b.shape[1] for b in blocks)
        blocks = [np.pad(b, ((0, 0), (0, num_blocks - b.shape[1]), (0, 0))) for b in blocks]
        return cls(blocks=cat(blocks), **extra)

    def sample_mask(self, i: int) -> SampleMask:
        """Sample ``i`` as index tensors (no equalisation: a single sample needs none)."""
        as_index = lambda m: torch.from_numpy(np.flatnonzero(m)).long()  # noqa: E731
        blocks = self.block_masks()[i]
        targets = [as_index(block) for block in blocks if block.any()]
        return SampleMask(as_index(self.context[i]), targets, bool(self.hard[i]), bool(self.relaxed[i]))


def _equal_count_indices(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[B, K]`` sorted column indices of True entries, K = the smallest row count.

    Rows with more than K entries keep a uniformly random subset of K (random keys over
    each row's own entries, padded to the longest row, so the work scales with the
    entries rather than with the width).
    """
    size, width = mask.shape
    flat = np.flatnonzero(mask)
    counts = np.count_nonzero(mask, axis=1)
    keep = int(counts.min())
    if (counts == keep).all():
        return (flat % width).reshape(size, keep)
    if keep == 0:
        return np.zeros((size, 0), np.int64)
    # each row's entries (already sorted), padded to the longest row
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(int(counts.max()))[None, :]
    padding = slot >= counts[:, None]
    entries = (flat % width)[np.minimum(starts[:, None] + slot, flat.size - 1)]
    keys = rng.random(entries.shape)
    keys[padding] = 2.0  # padding is never chosen
    kth = np.partition(keys, keep - 1, axis=1)[:, keep - 1:keep]
    chosen = keys <= kth  # each row's `keep` smallest keys: a uniformly random subset
    for row in np.flatnonzero(np.count_nonzero(chosen, axis=1) != keep):  # tied keys (~never)
        chosen[row] = False
        chosen[row, np.argsort(keys[row], kind="stable")[:keep]] = True
    return entries[chosen].reshape(size, keep)  # row-major: still sorted within each row


def _target_entries(batch: MaskBatch, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(target_idx, target_block) ``[B, Nt]``: block 0's patches, then block 1's, ..."""
    size, num_patches = batch.context.shape
    if batch.labels is not None:
        labels = batch.labels
        is_target = labels >= 0
        counts = np.count_nonzero(is_target, axis=1)
        if (counts == counts[0]).all():
            count = int(counts[0])
            if labels.max() == 0:  # a single block: raster order is block order
                target_idx = (np.flatnonzero(is_target) % num_patches).reshape(size, count)
                return target_idx, np.zeros_like(target_idx)
            # disjoint blocks: a stable sort by block id keeps raster order inside each block
            sort_keys = np.where(is_target, labels, np.iinfo(np.int16).max).astype(np.int16)
            target_idx = np.argsort(sort_keys, axis=1, kind="stable")[:, :count]
            return target_idx, np.take_along_axis(labels, target_idx, 1).astype(np.int64)
    blocks = batch.block_masks()
    entries = _equal_count_indices(blocks.reshape(size, -1), rng)
    return entries % num_patches, entries // num_patches


def to_index_tensors(batch: MaskBatch, rng: np.random.Generator) -> dict[str, torch.Tensor | float]:
    """The collator's mask fields (docs/ARCHITECTURE.md, masks/) from a :class:`MaskBatch`.

    ``target_idx`` lists block 0's patches, then block 1's, ... (a patch in two blocks
    appears twice); ``target_block`` names the block of each entry.
    """
    size, num_patches = batch.context.shape
    context = _equal_count_indices(batch.context, rng)
    target_idx, target_block = _target_entries(batch, rng)
    covered = np.zeros(size * num_patches, dtype=bool)
    covered[(target_idx + num_patches * np.arange(size)[:, None]).ravel()] = True
    return {
        "context_idx": torch.from_numpy(context),
        "target_idx": torch.from_numpy(np.ascontiguousarray(target_idx, dtype=np.int64)),
        "target_block": torch.from_numpy(np.ascontiguousarray(target_block, dtype=np.int64)),
        # a plain int made here, on the CPU, so the step never asks the GPU whether the
        # blocks differ (a host sync per step, and a graph break under torch.compile)
        "num_blocks": int(target_block.max(initial=0)) + 1 if target_block.size else 0,
        "mask_ratio": float(np.count_nonzero(covered)) / covered.size,
        "hard_share": float(batch.hard.mean()),
    }
