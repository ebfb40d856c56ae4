"""How long pretraining waits for data, with and without the log-mel feature cache.

    python benchmarks/data_wait.py                       # 200 clips of 5 s, 150 steps, cache off then on
    python benchmarks/data_wait.py --workers 0 1 --rate 16000 --clips 400

Writes an ESC-50-layout set (``ROOT/audio/*.wav``, ``ROOT/meta/esc50.csv``) of 5 s clips --
coloured noise plus tones, 16-bit WAV at ``--rate`` (ESC-50's own 44.1 kHz by default, so
uncached items also pay the resampling) -- into a temporary folder, then runs the tiny
pretraining (``experiments/tiny.yaml`` with ``data.kind=esc50``, ``data.clip_seconds=5``,
``frontend.target_frames=192``, so every item is a random 2 s crop of a 5 s clip, and
``eval.tasks=[]``) once per (cache, workers) setting. Each run starts from an empty cache
folder; the cache's one-off build is timed on its own, before training.

Prints per run: the build time, training samples/s and the data-wait share (the mean of
``train/data_wait`` in ``out_dir/metrics.jsonl`` over every log window but the first, which
holds the warm-up). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10


def write_esc50(root: Path, clips: int, seconds: float, rate: int, seed: int = 0) -> Path:
    """ESC-50 layout: 5 folds, CLASSES classes; each clip is noise plus a few tones."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n, dtype=np.float32) / rate
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for i in range(clips):
        target, fold = i % CLASSES, 1 + (i // CLASSES) % 5
        noise = rng.standard_normal(n).astype(np.float32)
        noise = np.cumsum(noise) * 0.02 if target % 2 else noise  # white or brown-ish
        wave = 0.05 * noise / (np.abs(noise).max() + 1e-6)
        for _ in range(1 + target % 3):
            freq = 200.0 * (1 + target) * rng.uniform(0.9, 1.1)
            onset, length = rng.uniform(0, seconds - 1), rng.uniform(0.3, 1.0)
            gate = ((t >= onset) & (t < onset + length)).astype(np.float32)
            wave += 0.3 * gate * np.sin(2 * np.pi * freq * t).astype(np.float32)
        wave = 0.9 * wave / (np.abs(wave).max() + 1e-6)
        name = f"{fold}-{100000 + i}-A-{target}.wav"
        soundfile.write(root / "audio" / name, wave, rate, subtype="PCM_16")
        rows.append(f"{name},{fold},{target},class{target},False,{100000 + i},A")
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


def run(data_root: Path, work: Path, cache: bool, workers: int, steps: int, extra: list[str]) -> dict:
    from ajepa.config import load_config
    from ajepa.data.tasks import build_pretrain_dataset
    from ajepa.train import Trainer

    tag = f"cache_{'on' if cache else 'off'}_w{workers}"
    cache_dir, out_dir = work / tag / "cache", work / tag / "run"
    overrides = [
        "data.kind=esc50", f"data.root={data_root}", "data.clip_seconds=5", f"data.num_workers={workers}",
        f"data.feature_cache={str(cache).lower()}", f"data.cache_dir={cache_dir}",
        "frontend.target_frames=192", "frontend.norm=preset", "frontend.norm_preset=esc50",
        f"optim.steps={steps}", "optim.warmup=10", "eval.tasks=[]", "log_every=10",
        f"checkpoint_every={steps}", f"out_dir={out_dir}", "device=cpu", *extra,
    ]
    cfg = load_config(ROOT / "experiments" / "tiny.yaml", overrides)
    started = time.perf_counter()
    build_pretrain_dataset(cfg)  # with the cache: the one-off build (validation alone without it)
    build = time.perf_counter() - started
    started = time.perf_counter()
    Trainer(cfg, []).fit()
    wall = time.perf_counter() - started
    windows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()][1:]
    return {
        "cache": "on" if cache else "off",
        "workers": workers,
        "build_s": build,
        "fit_s": wall,
        "samples_per_s": float(np.mean([w["train/samples_per_s"] for w in windows])),
        "data_wait": float(np.mean([w["train/data_wait"] for w in windows])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=44100, help="sample rate of the written WAVs (ESC-50: 44100)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="data.num_workers values to run")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    parser.add_argument("overrides", nargs="*", help="extra dotted overrides for every run, e.g. threads=1")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="ajepa-data-wait-"))
    try:
        data_root = write_esc50(work / "ESC-50", args.clips, args.seconds, args.rate)
        print(f"{args.clips} clips of {args.seconds:g} s at {args.rate} Hz in {data_root}; "
              f"{args.steps} steps of experiments/tiny.yaml with 2 s crops", flush=True)
        results = []
        for workers in args.workers:
            for cache in (False, True):
                results.append(run(data_root, work, cache, workers, args.steps, args.overrides))
                r = results[-1]
                print(f"  cache {r['cache']:>3}  workers {workers}: build {r['build_s']:6.1f} s  "
                      f"train {r['fit_s']:6.1f} s  {r['samples_per_s']:6.1f} samples/s  "
                      f"data wait {100 * r['data_wait']:5.1f} %", flush=True)
        print("\n| cache | workers | cache build s | fit s | samples/s | data wait |")
        print("|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['cache']} | {r['workers']} | {r['build_s']:.1f} | {r['fit_s']:.1f} | "
                  f"{r['samples_per_s']:.1f} | {100 * r['data_wait']:.1f} % |")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
