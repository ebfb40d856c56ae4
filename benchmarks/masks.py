"""Mask collator throughput against one ViT-B training step: is the GPU ever waiting for masks?

    python benchmarks/masks.py                   # every strategy, batch 256 on the 8 x 64 grid
    python benchmarks/masks.py --batches 50 --workers 4 --strategies multiblock tf curriculum

For each strategy it prints, per batch of 256 on the paper's 8 x 64 grid (128 mels x 1024
frames, 16 x 16 patches):
- single-process collator time (ms/batch, batches/s), and the throughput of a real
  DataLoader with ``--workers`` worker processes (limited by this machine's cores);
- token counts (context Nc, target entries Nt) and the share of each sample's context
  that equal-length batching keeps (ajepa.masks.batch).
Then it estimates one A-JEPA ViT-B/16 step at batch 256 from analytic FLOPs (2 per MAC):
EMA target encoder forward on all 512 patches, context encoder forward+backward (3x)
on the context, predictor (6 x 384) forward+backward on context + targets; at an H100
SXM's dense bf16 peak of 989 TFLOP/s and at 40 % of it (a typical achieved rate). This is
an estimate, not a measurement. The collator keeps up if 4 workers give more batches/s
than the GPU consumes. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ajepa.config import BlockMask, CurriculumMask, FreqMask, MultiBlockMask, RandomMask, TFMask, TimeMask
from ajepa.masks import MaskCollator, step_seed
from ajepa.masks.strategies import numpy_rng

GRID = (8, 64)
H100_BF16_DENSE_PEAK = 989e12  # FLOP/s, NVIDIA H100 SXM5 datasheet (dense, no sparsity)
ACHIEVED_FRACTION = 0.4
TOTAL_STEPS = 1000
CONFIGS = {
    "random": RandomMask(),
    "time": TimeMask(),
    "freq": FreqMask(),
    "block": BlockMask(),
    "multiblock": MultiBlockMask(),
    "multiblock-os1": MultiBlockMask(oversample=1.0),
    "tf": TFMask(),
    "curriculum": CurriculumMask(),
}


def items(step: int, batch: int):
    return [(step, {"index": i}) for i in range(batch)]


def single_process(collator: MaskCollator, batch: int, batches: int, step0: int) -> float:
    """Seconds per batch, collating in this process (steps around step0: mid-curriculum)."""
    for s in range(3):
        collator(items(step0 + s, batch))
    start = time.perf_counter()
    for s in range(batches):
        collator(items(step0 + 3 + s, batch))
    return (time.perf_counter() - start) / batches


class _StepItems(Dataset):
    """Item (step, index) -> (step, {"index": index}): the collator does all the work."""

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, item):
        step, index = item
        return step, {"index": index}


def with_workers(collator: MaskCollator, batch: int, batches: int, workers: int, step0: int) -> float:
    """Batches/s through a DataLoader with `workers` processes (after the workers are up)."""
    sampler = [[(step0 + s, i) for i in range(batch)] for s in range(batches + 2 * workers)]
    loader = DataLoader(_StepItems(), batch_sampler=sampler, collate_fn=collator, num_workers=workers,
                        prefetch_factor=2, multiprocessing_context="fork")
    iterator = iter(loader)
    for _ in range(2 * workers):  # start-up and first batches
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - start)


def context_kept(collator: MaskCollator, batch: int, step: int, batches: int = 10) -> float:
    """Mean share of a sample's context that survives equal-length batching (over `batches`)."""
    shares = []
    for s in range(step, step + batches):
        rng = numpy_rng(torch.Generator().manual_seed(step_seed(0, s)))
        sizes = collator.sampler.draw(rng, batch, s / TOTAL_STEPS).context.sum(1)
        shares.append(sizes.min() / sizes.mean())
    return float(np.mean(shares))


def transformer_flops(tokens: float, dim: int, depth: int, mlp_ratio: float = 4.0) -> float:
    """Forward FLOPs of `depth` pre-norm blocks on `tokens` tokens (matmuls + attention)."""
    per_token = 2 * depth * (4 * dim * dim + 2 * mlp_ratio * dim * dim)
    attention = 2 * depth * 2 * tokens * tokens * dim
    return tokens * per_token + attention


def vit_b_step_flops(batch: int, n_ctx: float, n_tgt: float, n_all: int = 512) -> float:
    patch_embed = 2 * 16 * 16 * 768
    target = transformer_flops(n_all, 768, 12) + n_all * patch_embed  # forward only (EMA encoder)
    context = 3 * (transformer_flops(n_ctx, 768, 12) + n_ctx * patch_embed)
    n_pred = n_ctx + n_tgt
    projections = 2 * 768 * 384 * (n_ctx + n_tgt)  # into and out of the narrow predictor
    predictor = 3 * (transformer_flops(n_pred, 384, 6) + projections)
    return batch * (target + context + predictor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--strategies", nargs="*", default=list(CONFIGS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # more workers than cores
    step0 = TOTAL_STEPS // 2
    print(f"grid {GRID[0]}x{GRID[1]}, batch {args.batch}, {os.cpu_count()} CPU cores on this machine "
          f"(load average {os.getloadavg()[0]:.1f}), torch {torch.__version__}, numpy {np.__version__}")
    print(f"{'strategy':<15}{'ms/batch':>9}{'batch/s':>9}{f'{args.workers}w b/s':>9}"
          f"{'Nc':>6}{'Nt':>6}{'ctx kept':>9}")
    token_counts = {}
    best_worker_rate = {}
    for name in args.strategies:
        collator = MaskCollator(CONFIGS[name], GRID, seed=0, total_steps=TOTAL_STEPS)
        seconds = single_process(collator, args.batch, args.batches, step0)
        rate = with_workers(collator, args.batch, args.batches, args.workers, step0) if args.workers else 0.0
        out = collator(items(step0, args.batch))
        n_ctx, n_tgt = out["context_idx"].shape[1], out["target_idx"].shape[1]
        token_counts[name] = (n_ctx, n_tgt)
        best_worker_rate[name] = rate
        print(f"{name:<15}{1000 * seconds:>9.1f}{1 / seconds:>9.1f}{rate:>9.1f}{n_ctx:>6}{n_tgt:>6}"
              f"{context_kept(collator, args.batch, step0):>9.2f}")

    # One ViT-B/16 A-JEPA step: context 25-40 % of 512 patches (paper), targets as multi-block.
    n_tgt = token_counts.get("multiblock", (0, 360))[1]
    print(f"\nEstimated ViT-B/16 A-JEPA step, batch {args.batch}, 512 patches, {n_tgt} target entries "
          "(an estimate from analytic FLOPs, not a measurement):")
    for share in (0.25, 0.325, 0.40):
        flops = vit_b_step_flops(args.batch, share * 512, n_tgt)
        at_peak = flops / H100_BF16_DENSE_PEAK
        typical = at_peak / ACHIEVED_FRACTION
        print(f"  context {share:.0%} ({share * 512:.0f} patches): {flops / 1e12:.1f} TFLOP/step -> "
              f"{1000 * at_peak:.0f} ms at H100 bf16 peak (989 TFLOP/s), {1000 * typical:.0f} ms at 40 % "
              f"-> GPU consumes {1 / typical:.1f}-{1 / at_peak:.1f} batches/s")
    fastest_gpu = H100_BF16_DENSE_PEAK / vit_b_step_flops(args.batch, 0.25 * 512, n_tgt)
    if args.workers:
        slowest = min(best_worker_rate, key=best_worker_rate.get)
        print(f"\nSlowest strategy with {args.workers} workers here: {slowest} at "
              f"{best_worker_rate[slowest]:.1f} batches/s = {best_worker_rate[slowest] / fastest_gpu:.1f}x what "
              f"even a peak-rate H100 consumes ({fastest_gpu:.1f} batches/s).")


if __name__ == "__main__":
    main()
