"""Back-of-the-envelope cost of a trial, for ``--dry-run`` (no torch, no Ray).

Why an estimate at all: a sweep file can silently ask for hundreds of GPU-hours (a
``--base experiments/paper_vitb.yaml`` grid), and the dry run is where that should be
seen. Compute is counted as matmul FLOPs of the three transformer passes of one A-JEPA
step -- target encoder forward on all patches, context encoder forward+backward on the
visible patches, predictor forward+backward on context + target tokens -- with the usual
``2 * params * tokens`` per forward and 3x for forward+backward. Attention's quadratic
term, the data pipeline and evaluation are left out, so treat it as a lower bound.

Throughputs are effective rates, not peaks: CPU_FLOPS was measured on the tiny config
(fp32, 1 thread per trial), GPU_FLOPS assumes ~30 % of an A100's bf16 peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ajepa.config import TrainConfig

CPU_FLOPS = 25e9     # effective FLOP/s of one CPU core on the tiny model (measured, see module doc)
GPU_FLOPS = 100e12   # effective FLOP/s of one data-centre GPU in bf16


@dataclass(frozen=True)
class TrialCost:
    steps: int | None     # None: epochs-based, length known only once the dataset is read
    samples: int | None
    flops: float | None


def _block_params(dim: int, mlp_ratio: float) -> float:
    return (4 + 2 * mlp_ratio) * dim * dim


def _token_shares(cfg: TrainConfig) -> tuple[float, float]:
    """(visible context share, target share with repeats) of the patch grid, roughly."""
    m = cfg.masking
    if m.strategy == "curriculum":
        m = m.hard
    ratio = getattr(m, "ratio", None)
    if m.strategy in ("multiblock", "tf"):
        mean_scale = sum(m.scale) / 2
        targets = ratio if ratio else min(0.95, m.num_blocks * mean_scale)
        union = ratio if ratio else 1 - (1 - mean_scale) ** m.num_blocks
        context = sum(m.context_scale) / 2 * (1 - union)
        return max(context, 0.05), targets
    ratio = ratio or 0.75
    return 1 - ratio, ratio


def _num_blocks(cfg: TrainConfig) -> int:
    m = cfg.masking.hard if cfg.masking.strategy == "curriculum" else cfg.masking
    return getattr(m, "num_blocks", 1)


def trial_cost(cfg: TrainConfig) -> TrialCost:
    steps = cfg.optim.steps
    if steps is None and cfg.data.kind == "synthetic":
        steps = max(1, math.ceil(cfg.optim.epochs * cfg.data.synthetic.num_clips / cfg.optim.batch_size))
    if steps is None:
        return TrialCost(None, None, None)
    h, w = cfg.grid
    n = h * w
    mc = cfg.model
    enc = mc.encoder_depth * _block_params(mc.encoder_dim, mc.mlp_ratio)
    pred = mc.predictor_depth * _block_params(mc.predictor_dim, mc.mlp_ratio) + 2 * mc.encoder_dim * mc.predictor_dim
    context, targets = _token_shares(cfg)
    views = cfg.masking.masks_per_clip  # target forward once per clip, the rest once per mask
    # the target encoder sees every patch once per clip, or only the targets once per mask
    target_pass = 2 * enc * n if cfg.target.input == "full" else views * 2 * enc * targets * n
    # I-JEPA's per-block predictor repeats the context once per target block
    copies = _num_blocks(cfg) if mc.predictor_attention == "per_block" else 1
    per_sample = target_pass + views * (6 * enc * context * n + 6 * pred * (copies * context + targets) * n)
    samples = steps * cfg.optim.batch_size
    return TrialCost(steps, samples, per_sample * samples)


def device_seconds(flops: float, gpu: float, cpu: float, workers: int) -> tuple[float, str]:
    """Seconds one trial takes on its resources, and the unit its total is quoted in."""
    if gpu > 0:
        return flops / (GPU_FLOPS * min(1.0, gpu) * workers), "GPU"
    return flops / (CPU_FLOPS * max(1.0, cpu) * workers), "CPU"


def human_flops(flops: float) -> str:
    for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP"


def human_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
