"""Masking for A-JEPA pretraining: strategies, curriculum and the data-loader collator.

Masks are made in the DataLoader's ``collate_fn`` as plain int64 index tensors over the
patch grid (raster order, ``index = row * W + col``), as a pure function of
``(seed, step, position in batch)``; see docs/ARCHITECTURE.md ("masks/").
"""

from ajepa.masks.batch import MaskBatch, SampleMask
from ajepa.masks.collator import MaskCollator, step_seed
from ajepa.masks.curriculum import CurriculumSampler, curriculum_probability  # registers "curriculum"
from ajepa.masks.strategies import STRATEGIES, MaskSampler, build_mask_sampler

__all__ = [
    "STRATEGIES",
    "CurriculumSampler",
    "MaskBatch",
    "MaskCollator",
    "MaskSampler",
    "SampleMask",
    "build_mask_sampler",
    "curriculum_probability",
    "step_seed",
]
