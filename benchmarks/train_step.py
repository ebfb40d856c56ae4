"""Pretraining step throughput: steps/s, samples/s and achieved FLOP/s per model preset.

    python benchmarks/train_step.py                        # tiny and base on this machine
    python benchmarks/train_step.py --preset base --batch 64 --device cuda --precision bf16
    python benchmarks/train_step.py --preset tiny --frames 192 --batch 8 --masks-per-clip 1 2 4
    python benchmarks/train_step.py --preset tiny --frames 192 --batch 8 --predictor-attention per_block shared_context

Masks come from the real collator (multi-block by default), so token counts are the
ones training sees. FLOPs are counted analytically (matmuls + attention, 2 per MAC):
target forward over all patches, context forward+backward (x3) over the context, and
predictor forward+backward over context + targets. With M masks per clip the target
forward runs once per clip and the rest once per mask: `samples/s` counts clips,
`masks/s` counts (clip, mask) pairs. The ``per_block`` predictor (I-JEPA's semantics)
runs the context once per target block in its one pass, so its predictor counts
blocks x context + targets tokens; ``shared_context`` counts context + targets.
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import torch

from ajepa.config import load_config
from ajepa.masks import MaskCollator
from ajepa.models import AJEPA
from ajepa.models.vit import vit_flops_per_token


def step_flops(cfg, n_all: int, n_ctx: int, n_tgt: int, views: int = 1, blocks: int = 1) -> float:
    """FLOPs per clip of one step with `views` masks per clip and `blocks` target blocks."""
    m = cfg.model
    target = n_all * vit_flops_per_token(m.encoder_dim, m.encoder_depth, n_all, m.mlp_ratio)
    return target + views * _masked_flops(cfg, n_ctx, n_tgt, blocks)


def _masked_flops(cfg, n_ctx: int, n_tgt: int, blocks: int = 1) -> float:
    m = cfg.model
    context = 3 * n_ctx * vit_flops_per_token(m.encoder_dim, m.encoder_depth, n_ctx, m.mlp_ratio)
    copies = blocks if m.predictor_attention == "per_block" else 1
    n_pred = copies * n_ctx + n_tgt
    predictor = 3 * n_pred * vit_flops_per_token(m.predictor_dim, m.predictor_depth, n_pred, m.mlp_ratio)
    return context + predictor


def bench(preset: str, batch: int, frames: int, device: str, precision: str, steps: int, warmup: int,
          compile_: bool, views: int = 1, attention: str = "per_block") -> dict:
    cfg = load_config(None, [f"model.preset={preset}", f"frontend.target_frames={frames}",
                             f"optim.batch_size={batch}", "optim.steps=1000", "optim.warmup=1",
                             f"optim.precision={precision}", f"masking.masks_per_clip={views}",
                             f"model.predictor_attention={attention}"])
    dev = torch.device(device)
    model = AJEPA(cfg).to(dev).train()
    forward = torch.compile(model, dynamic=True) if compile_ else model
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                            fused=dev.type == "cuda")
    collate = MaskCollator(cfg.masking, cfg.grid, seed=0, total_steps=1000)
    spec = torch.randn(batch, 1, cfg.frontend.num_mel_bins, frames)
    batches = [collate([(s, {"spec": spec[i]}) for i in range(batch)]) for s in range(warmup + steps)]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    flops = 0.0

    def one(b):
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            terms, _ = forward(b["spec"].to(dev), b["context_idx"].to(dev), b["target_idx"].to(dev),
                               b["target_block"].to(dev) if b["num_blocks"] > 1 else None, b["num_blocks"])
        terms["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.ema_update(0.996)

    for b in batches[:warmup]:
        one(b)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for b in batches[warmup:]:
        one(b)
        n_ctx, n_tgt = b["context_idx"].shape[1], b["target_idx"].shape[1]
        flops += batch * step_flops(cfg, cfg.grid[0] * cfg.grid[1], n_ctx, n_tgt, views, b["num_blocks"])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {"preset": preset, "grid": f"{cfg.grid[0]}x{cfg.grid[1]}", "batch": batch, "device": device,
            "precision": precision, "M": views, "predictor": attention, "steps/s": steps / elapsed,
            "samples/s": steps * batch / elapsed, "masks/s": steps * batch * views / elapsed,
            "TFLOP/s": flops / elapsed / 1e12, "GFLOP/sample": flops / (steps * batch) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["tiny", "small", "base"], action="append")
    parser.add_argument("--batch", type=int, default=None, help="default: 32 tiny, 8 small/base on CPU")
    parser.add_argument("--frames", type=int, default=1024)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--masks-per-clip", type=int, nargs="+", default=[1], metavar="M",
                        help="masking.masks_per_clip values to compare (default 1)")
    parser.add_argument("--predictor-attention", nargs="+", default=["per_block"],
                        choices=["per_block", "shared_context"], help="model.predictor_attention values to compare")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = args.preset or ["tiny", "base"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    for preset in presets:
        batch = args.batch or (32 if preset == "tiny" or args.device == "cuda" else 8)
        for views, attention in ((v, a) for v in args.masks_per_clip for a in args.predictor_attention):
            row = bench(preset, batch, args.frames, args.device, args.precision, args.steps, args.warmup,
                        args.compile, views, attention)
            print("  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
