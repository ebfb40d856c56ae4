"""One prepared GPU check (issue 14): run it once on a CUDA machine, read the figures.

    python benchmarks/gpu_check.py                 # on a GPU node, ~3-5 min on an H100/H200
    python benchmarks/gpu_check.py --smoke         # anywhere (CPU): tiny shapes, checks the script runs

What it prints, in order (each section survives a failure of the one before, so one run
gives every figure it can):
1. versions and the device, and the bf16 dense peak used for MFU (``--peak-tflops``
   overrides; the table below is the vendor's dense, non-sparse figure);
2. ViT-B/16 pretraining step on the paper's 8 x 64 grid: samples/s, achieved TFLOP/s and
   MFU for fp32 / bf16, eager / ``torch.compile`` (FLOPs counted analytically, see
   ``benchmarks/train_step.py``; fp32 MFU is quoted against the same bf16 peak);
3. the largest batch that fits (bf16, eager), by doubling until out of memory;
4. the mask collator's batches/s with 0/4/8 worker processes against the step rate it
   must feed (goal: >= 20x headroom);
5. a 2-GPU DDP smoke run (``torchrun``, 20 steps of the tiny preset) when 2+ GPUs exist;
6. ``ajepa-eval`` of a short pretraining's checkpoint on the synthetic task, whose
   embedding pass runs under bf16 autocast on CUDA.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_step import bench  # noqa: E402

ROOT = Path(__file__).parents[1]
#: dense bf16 peak TFLOP/s by device-name fragment (vendor data sheets, no sparsity)
BF16_PEAK = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "V100": 125.0,
             "RTX 4090": 165.0, "RTX 3090": 71.0}


def section(title: str):
    print(f"\n== {title}", flush=True)


def peak_for(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK.items() if k.lower() in name.lower()), None)


def step_table(args, device: str, peak: float | None) -> None:
    for precision in ("fp32", "bf16"):
        for compiled in (False, True):
            try:
                row = bench(args.preset, args.batch, args.frames, device, precision, args.steps, args.warmup,
                            compiled)
            except Exception as err:  # report and go on: one failure must not hide the other figures
                print(f"{precision} {'compiled' if compiled else 'eager'}: FAILED {type(err).__name__}: {err}")
                continue
            mfu = f"{100 * row['TFLOP/s'] / peak:.1f} %" if peak else "n/a"
            print(f"{precision:5s} {'compiled' if compiled else 'eager   '}  samples/s {row['samples/s']:8.1f}  "
                  f"TFLOP/s {row['TFLOP/s']:7.2f}  MFU {mfu}  ({row['GFLOP/sample']:.0f} GFLOP/sample)", flush=True)


def largest_batch(args, device: str) -> None:
    if device != "cuda":
        print("skipped (no CUDA)")
        return
    batch, fits = args.batch, 0
    while batch <= 4096:
        try:
            bench(args.preset, batch, args.frames, device, "bf16", 1, 1, False)
            fits = batch
            print(f"batch {batch}: fits, peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB", flush=True)
            batch *= 2
        except torch.cuda.OutOfMemoryError:
            print(f"batch {batch}: out of memory")
            break
        finally:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    print(f"largest batch that fits (power of 2): {fits}")


def collator_rate(args, step_samples_per_s: float | None) -> None:
    from torch.utils.data import DataLoader, Dataset

    from ajepa.config import load_config
    from ajepa.data.loader import StepBatchSampler, StepTaggedDataset
    from ajepa.masks import MaskCollator

    cfg = load_config(None, [f"model.preset={args.preset}", f"frontend.target_frames={args.frames}"])

    class Specs(Dataset):  # a cached-feature item: the cost left is the collate and masks
        def __len__(self):
            return 4096

        def __getitem__(self, key):
            return {"spec": torch.zeros(1, cfg.frontend.num_mel_bins, args.frames)}

    batches = 40 if not args.smoke else 5
    for workers in (0, 4, 8) if not args.smoke else (0,):
        sampler = StepBatchSampler(4096, args.batch, 0, batches)
        loader = DataLoader(StepTaggedDataset(Specs()), batch_sampler=sampler, num_workers=workers,
                            collate_fn=MaskCollator(cfg.masking, cfg.grid, 0, batches),
                            prefetch_factor=4 if workers else None)
        start = time.perf_counter()
        count = sum(1 for _ in loader)
        rate = count / (time.perf_counter() - start)
        need = f"; the step needs {step_samples_per_s / args.batch:.1f}/s: headroom {rate * args.batch / step_samples_per_s:.1f}x" \
            if step_samples_per_s else ""
        print(f"{workers} workers: {rate:.1f} batches/s of {args.batch}{need}", flush=True)


def ddp_smoke(args) -> None:
    if torch.cuda.device_count() < 2:
        print(f"skipped ({torch.cuda.device_count()} GPU(s) visible)")
        return
    script = (
        "import torch.distributed as d, os; d.init_process_group('nccl');"
        "from ajepa.config import load_config; from ajepa.train import Trainer;"
        f"cfg = load_config('{ROOT}/experiments/tiny.yaml', ['out_dir={args.out}/ddp', 'device=cuda', "
        "'optim.steps=20', 'optim.warmup=2', 'optim.batch_size=16', 'optim.precision=bf16', 'eval.tasks=[]']);"
        "print(Trainer(cfg).fit()['train/loss']); d.destroy_process_group()"
    )
    path = Path(args.out) / "ddp_smoke.py"
    path.write_text(script.replace(";", "\n"))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(path)],
                            capture_output=True, text=True, timeout=300)
    print(result.stdout[-2000:] or "", result.stderr[-2000:] if result.returncode else "")
    print(f"DDP smoke exit code {result.returncode}")


def eval_under_bf16(args, device: str) -> None:
    from ajepa.config import load_config
    from ajepa.train import Trainer

    out = Path(args.out) / "eval_run"
    cfg = load_config(ROOT / "experiments" / "tiny.yaml", [
        f"out_dir={out}", f"device={device}", "optim.steps=50", "optim.warmup=5", "eval.tasks=[]",
        "optim.precision=bf16" if device == "cuda" else "optim.precision=fp32"])
    Trainer(cfg).fit()
    command = [sys.executable, "-m", "ajepa.cli.eval", str(out / "checkpoints" / "last.pt"), "--task", "synthetic",
               "--device", device, "--out", str(Path(args.out) / "eval.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    print(result.stdout[-1500:], result.stderr[-1500:] if result.returncode else "")
    print(f"ajepa-eval exit code {result.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, CPU allowed: checks the script itself")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak for MFU")
    parser.add_argument("--out", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        print("gpu_check: no CUDA device visible; use --smoke to check the script on CPU", file=sys.stderr)
        sys.exit(2)
    args.preset, args.frames = ("tiny", 192) if args.smoke else ("base", 1024)
    args.batch, args.steps, args.warmup = (8, 3, 1) if args.smoke else (64, 10, 3)
    args.out = args.out or tempfile.mkdtemp(prefix="ajepa_gpu_check_")

    section("versions")
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    peak = args.peak_tflops or peak_for(name)
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
          f"device {name} x{torch.cuda.device_count() if device == 'cuda' else 0}, bf16 peak {peak} TFLOP/s, "
          f"{os.cpu_count()} CPUs")
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    checks = [
        (f"{args.preset} step, grid 8 x {args.frames // 16}, batch {args.batch}", lambda: step_table(args, device, peak)),
        ("largest batch (bf16, eager)", lambda: largest_batch(args, device)),
        ("mask collator vs step rate", lambda: collator_rate(args, _step_rate(args, device))),
        ("DDP smoke (2 GPUs)", lambda: ddp_smoke(args)),
        ("ajepa-eval of a checkpoint (bf16 autocast on CUDA)", lambda: eval_under_bf16(args, device)),
    ]
    for title, check in checks:
        section(title)
        try:
            check()
        except Exception as err:
            print(f"FAILED {type(err).__name__}: {err}", flush=True)


def _step_rate(args, device: str) -> float | None:
    try:
        return bench(args.preset, args.batch, args.frames, device, "bf16" if device == "cuda" else "fp32",
                     args.steps, args.warmup, False)["samples/s"]
    except Exception:
        return None


if __name__ == "__main__":
    main()
