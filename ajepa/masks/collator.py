"""The DataLoader ``collate_fn`` that adds masks to each batch.

Masks are made here, in the loader workers, so the training loop only moves index
tensors to the GPU (the I-JEPA design). Every item carries its global step (see
ajepa.data.loader), and the masks are drawn from a generator seeded by
``step_seed(seed, step)``: the same step gives the same masks in any worker process, in
any order, and after resuming from a checkpoint.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import default_collate

from ajepa.masks.batch import to_index_tensors
from ajepa.masks.strategies import build_mask_sampler, numpy_rng
from ajepa.seeding import mix_seed

MASK_KEYS = ("context_idx", "target_idx", "target_block", "num_blocks", "mask_ratio", "hard_share")
_MASK_STREAM = 0x6D61736B  # "mask": keeps the mask stream apart from other (seed, step) streams


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """63-bit seed from (seed, step[, rank]) by splitmix64 mixing: stable across processes and
    platforms. Rank 0 gives the single-process seed, so one process and DDP rank 0 agree."""
    return mix_seed(seed, step, _MASK_STREAM) if rank == 0 else mix_seed(seed, step, _MASK_STREAM, rank)


class MaskCollator:
    """``collate_fn`` for items ``(step, sample_dict)``: default-collated samples + masks.

    Adds ``context_idx [B*M, Nc]`` (sorted), ``target_idx [B*M, Nt]``, ``target_block
    [B*M, Nt]``, ``num_blocks`` (int: target blocks per mask, at most), ``mask_ratio``
    (realised target share of the grid, batch mean) and ``hard_share`` (share of masks on
    the curriculum's hard mask). ``M =
    cfg.masks_per_clip`` independent masks are drawn per clip; rows ``b*M .. b*M+M-1`` belong
    to clip ``b`` (the model infers M from the row counts). Progress is ``step / total_steps``.
    """

    def __init__(self, cfg: Any, grid: tuple[int, int], seed: int, total_steps: int, rank: int = 0):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.cfg, self.grid, self.seed, self.total_steps = cfg, tuple(grid), int(seed), int(total_steps)
        self.rank = int(rank)  # DDP: each rank draws its own masks for its own slice of the batch
        self.masks_per_clip = int(getattr(cfg, "masks_per_clip", 1))
        self.sampler = build_mask_sampler(cfg, self.grid)

    def generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(step_seed(self.seed, step, self.rank))

    def masks(self, step: int, batch_size: int) -> dict[str, torch.Tensor | float]:
        """The mask fields alone for a batch of ``batch_size`` at ``step``."""
        rng = numpy_rng(self.generator(step))
        batch = self.sampler.draw(rng, batch_size, min(max(step / self.total_steps, 0.0), 1.0))
        return to_index_tensors(batch, rng)

    def __call__(self, items: Sequence[tuple[int, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("MaskCollator got an empty batch")
        steps = {int(step) for step, _ in items}
        if len(steps) != 1:
            raise ValueError(
                f"one batch must belong to one step, got steps {sorted(steps)}: use "
                "ajepa.data.loader.StepBatchSampler (items are (step, sample) pairs)"
            )
        samples = default_collate([sample for _, sample in items])
        clash = [key for key in MASK_KEYS if key in samples]
        if clash:
            raise ValueError(f"sample dicts already contain mask keys {clash}")
        return {**samples, **self.masks(steps.pop(), len(items) * self.masks_per_clip)}
