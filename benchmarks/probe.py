"""Time to linear-probe one encoder on an ESC-50-sized task on CPU, and the fast probe
(full-batch L-BFGS) against the EVAR recipe (minibatch Adam, up to 200 epochs, early
stopping) on the same cached embeddings.

    python benchmarks/probe.py                          # 2,000 clips, random tiny encoder
    python benchmarks/probe.py --clips 500 --sgd-epochs 100          # quicker
    python benchmarks/probe.py --shape base --clips 200              # ViT-B-shaped encoder
    python benchmarks/probe.py --checkpoint runs/tiny/checkpoints/last.pt

It writes a fixture in the ESC-50 release layout (``audio/<fold>-<src>-<take>-<target>.wav``
+ ``meta/esc50.csv``, 50 classes, 5 folds, 5 s clips) into a temporary folder with
soundfile, reads it through ``ajepa.data.tasks.build_task`` like the real dataset, encodes
every clip once (``ajepa.eval.run.embed_task``), and probes the 5 folds with each solver
under the same protocol (L2 grid selected on a validation split carved from each fold's
training data, refit on train+val, test once). Class c of the fixture is one of 10 pitches
x 5 sound types with per-clip jitter, onset, length and noise, so a random encoder gets
well above chance but far from 100 %. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ajepa.config import ESC50Task, load_config
from ajepa.data.tasks import build_task
from ajepa.eval.embeddings import EmbeddingCache
from ajepa.eval.metrics import aggregate_folds
from ajepa.eval.probe import probe_fold
from ajepa.eval.run import cached_task_embeddings
from ajepa.models.vit import encoder_from_config

CLASSES, FOLDS = 50, 5
ESC50_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]


def render(target: int, rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """One clip of class ``target``: pitch = target % 10, sound type = target // 10."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = 180.0 * 2 ** ((target % 10) / 3.5) * rng.uniform(0.97, 1.03)
    kind = target // 10
    if kind == 0:  # pure tone
        event = np.sin(2 * np.pi * pitch * t)
    elif kind == 1:  # harmonic stack
        event = sum(np.sin(2 * np.pi * k * pitch * t) / k for k in range(1, 6))
    elif kind == 2:  # amplitude-modulated tone
        event = np.sin(2 * np.pi * pitch * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 6) * t))
    elif kind == 3:  # upward glide over one octave
        event = np.sin(2 * np.pi * pitch * (t + t**2 / (2 * seconds)))
    else:  # noise band around the pitch
        spectrum = np.fft.rfft(rng.normal(size=n))
        freqs = np.fft.rfftfreq(n, 1 / rate)
        spectrum[np.abs(freqs - pitch) > 0.15 * pitch] = 0
        event = np.fft.irfft(spectrum, n)
        event /= np.abs(event).max() + 1e-9
    length = int(rng.uniform(0.4, 1.0) * n)
    start = int(rng.integers(0, n - length + 1))
    envelope = np.zeros(n)
    envelope[start:start + length] = np.hanning(length) ** 0.25
    clip = 0.5 * event * envelope + 10 ** (-rng.uniform(10, 30) / 20) * rng.normal(size=n)
    return (clip / max(1.0, np.abs(clip).max())).astype(np.float32)


def write_fixture(root: Path, clips: int, seconds: float, rate: int, seed: int = 0) -> None:
    """``clips`` clips in the ESC-50 layout, balanced over 50 classes and 5 folds."""
    import soundfile

    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(clips):
        target, fold = i % CLASSES, (i // CLASSES) % FOLDS + 1
        name = f"{fold}-{i:06d}-A-{target}.wav"
        soundfile.write(root / "audio" / name, render(target, rng, seconds, rate), rate, subtype="PCM_16")
        rows.append([name, fold, target, f"class{target:02d}", "False", f"{i:06d}", "A"])
    with (root / "meta" / "esc50.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([ESC50_HEADER, *rows])


def probe_all_folds(embeddings, task, probe_cfg, seed: int) -> tuple[dict[str, float], float]:
    started = time.perf_counter()
    per_fold = []
    for position, fold in enumerate(task.folds):
        result = probe_fold(embeddings[(fold.name, "train")], embeddings.get((fold.name, "val")),
                            embeddings[(fold.name, "test")], task.num_classes, task.multilabel, task.metric,
                            probe_cfg, seed + position)
        per_fold.append(result.metrics)
    return aggregate_folds("esc50", per_fold, [f.name for f in task.folds]), time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2000, help="fixture size (ESC-50: 2000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length (ESC-50: 5 s)")
    parser.add_argument("--fixture-rate", type=int, default=16000,
                        help="sample rate of the written WAVs (ESC-50 ships 44100; 16000 skips resampling)")
    parser.add_argument("--shape", choices=("tiny", "small", "base"), default="tiny",
                        help="random encoder of this model preset (ignored with --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="probe this checkpoint's target encoder")
    parser.add_argument("--sgd-epochs", type=int, default=200, help="EVAR: 200")
    parser.add_argument("--sgd-patience", type=int, default=20, help="EVAR: 20 epochs without validation gain")
    parser.add_argument("--sgd-lr", type=float, default=3e-3,
                        help="Adam step (3e-3 beat 1e-3 and 1e-2 on this fixture)")
    parser.add_argument("--l2-grid", type=float, nargs="+", default=None, help="default: eval.probe.l2_grid")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the fixture and the embeddings here, so a rerun only re-probes (default: temp dir)")
    args = parser.parse_args(argv)
    if args.clips < CLASSES * FOLDS:
        parser.error(f"--clips must be at least {CLASSES * FOLDS} (one clip per class and fold)")

    with tempfile.TemporaryDirectory(prefix="ajepa-probe-bench-") as tmp:
        work = args.workdir or Path(tmp)
        if args.checkpoint is not None:
            from ajepa.train.checkpoint import load_encoder

            encoder, cfg = load_encoder(args.checkpoint, "target")
            cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"cache_dir": work / "cache"})})
            what = str(args.checkpoint)
        else:
            cfg = load_config(None, [f"model.preset={args.shape}", f"data.cache_dir={work / 'cache'}"])
            torch.manual_seed(0)
            encoder = encoder_from_config(cfg.model, cfg.grid).eval()
            what = f"random {args.shape}-shaped encoder"
        overrides = {"sgd_epochs": args.sgd_epochs, "sgd_patience": args.sgd_patience, "sgd_lr": args.sgd_lr}
        if args.l2_grid:
            overrides["l2_grid"] = args.l2_grid
        eval_cfg = cfg.eval.model_copy(update={"probe": cfg.eval.probe.model_copy(update=overrides)})
        params = sum(p.numel() for p in encoder.parameters()) / 1e6
        print(f"{what} ({params:.1f} M parameters), {args.clips} clips x {args.seconds:g} s, "
              f"torch threads {torch.get_num_threads()}", flush=True)

        started = time.perf_counter()
        root = work / "ESC-50"
        if not (root / "meta" / "esc50.csv").is_file():
            write_fixture(root, args.clips, args.seconds, args.fixture_rate)
        fixture_s = time.perf_counter() - started

        started = time.perf_counter()
        eval_task = ESC50Task(root=root)
        task = build_task(eval_task, cfg.frontend, cfg.data.sample_rate, cfg.data.cache_dir)
        build_s = time.perf_counter() - started
        encoded = []
        encoder.patch_embed.register_forward_hook(lambda module, inputs, out: encoded.append(inputs[0].shape[0]))
        cache = EmbeddingCache(work / "embeddings" if args.workdir else None)
        started = time.perf_counter()
        embeddings = cached_task_embeddings(encoder, task, eval_cfg, cache, eval_task)
        extract_s = time.perf_counter() - started
        dim = next(iter(embeddings.values())).features.shape[1]

        fast, fast_s = probe_all_folds(embeddings, task, eval_cfg.probe, seed=0)
        sgd_cfg = eval_cfg.probe.model_copy(update={"solver": "sgd"})
        slow, slow_s = probe_all_folds(embeddings, task, sgd_cfg, seed=0)

    grid = eval_cfg.probe.l2_grid
    print(f"\nfixture written in {fixture_s:.1f} s (not part of the evaluation)")
    if sum(encoded):
        print(f"task read: {build_s:.1f} s;  extraction: {extract_s:.1f} s ({sum(encoded)} clips encoded, "
              f"{sum(encoded) / extract_s:.1f} clips/s, {dim}-d embeddings, once for all 5 folds)")
    else:
        print(f"task read: {build_s:.1f} s;  embeddings from the cache in {args.workdir} ({extract_s:.1f} s)")
    print(f"L2 grid {grid}, selected per fold on a validation split carved from training, refit on train+val\n")
    print(f"{'probe':<44}{'time (s)':>10}{'acc':>9}{'acc_std':>9}{'mAP':>8}")
    rows = (("L-BFGS, full batch (ajepa default)", fast, fast_s),
            (f"Adam lr {args.sgd_lr:g}, <= {args.sgd_epochs} ep, patience {args.sgd_patience}", slow, slow_s))
    for label, metrics, seconds in rows:
        print(f"{label:<44}{seconds:>10.1f}{100 * metrics['eval/esc50/acc']:>9.2f}"
              f"{100 * metrics['eval/esc50/acc_std']:>9.2f}{100 * metrics['eval/esc50/map']:>8.2f}")
    gap = 100 * (fast["eval/esc50/acc"] - slow["eval/esc50/acc"])
    verdict = "not worse than" if gap >= -1.0 else "WORSE than"
    print(f"\naccuracy gap L-BFGS - SGD: {gap:+.2f} points (the fast probe is {verdict} the reference, "
          f"tolerance 1 point); probe speed-up x{slow_s / max(fast_s, 1e-9):.1f}")
    source = "extract" if sum(encoded) else "cached embeddings"
    print(f"one checkpoint, end to end (read + {source} + 5-fold L-BFGS probe): {build_s + extract_s + fast_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
