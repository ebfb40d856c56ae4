"""How much of the log-mel band statistics a frozen encoder's clip embedding keeps.

    python benchmarks/band_decoding.py --checkpoint runs/s0 [runs/s1 ...]

Why: on the real-sound dev set a pretrained encoder loses some classes that its random
initialisation gets (bird, gunshot; ``benchmarks/real_audio.py --per-class``). One
explanation would be that pretraining discards low-level spectral information, e.g. the
energy of high bands, which a JEPA target may treat as unpredictable noise. This measures
it directly: for the pretrained encoder and the same architecture at its initial weights,
a cross-validated ridge regression predicts each of the 2 x 128 log-mel band statistics
(per-band mean and std over time, the ``real_audio.py`` baseline's features) from the
standardised, mean-pooled clip embedding of every dev clip, and prints the R^2 averaged
over each quarter of the mel bands (low to high). R^2 near 1: the embedding keeps that
information linearly.

The dev set, protocol and initial encoder are those of ``benchmarks/real_audio.py``.
Exit codes: 0 done; 2 a request that cannot run as given (one line says what to fix).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # real_audio beside this file

import real_audio  # noqa: E402  (the dev task, the initial encoder and the log-mel statistics)

QUARTERS = 4


def all_clips(per_split: dict, fold: str) -> np.ndarray:
    """One fold's train + val + test arrays: every clip of the set once."""
    return np.concatenate([per_split[(fold, s)].features for s in ("train", "val", "test") if (fold, s) in per_split])


def band_r2(embedding: np.ndarray, targets: np.ndarray, seed: int = 0) -> np.ndarray:
    """Cross-validated R^2 of a ridge regression from `embedding` to each target column."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    x = (embedding - embedding.mean(0)) / (embedding.std(0) + 1e-8)
    folds = KFold(5, shuffle=True, random_state=seed)
    predicted = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 3, 11)), x, targets, cv=folds)
    residual = ((targets - predicted) ** 2).sum(0)
    total = ((targets - targets.mean(0)) ** 2).sum(0)
    return 1 - residual / np.maximum(total, 1e-12)


def quarter_means(values: np.ndarray) -> list[float]:
    return [float(part.mean()) for part in np.array_split(values, QUARTERS)]


def run(args) -> int:
    import torch

    from ajepa.eval.run import cached_task_embeddings, default_cache
    from ajepa.train.checkpoint import load_encoder

    checkpoints = [real_audio.checkpoint_file(p) for p in args.checkpoint]
    if missing := [str(c) for c in checkpoints if not c.is_file()]:  # before building or reading anything
        print(f"band_decoding: no checkpoint at {', '.join(missing)}", file=sys.stderr)
        return 2
    real_audio.ensure_devset(args.data)
    print(f"R^2 of the log-mel band statistics from the mean-pooled embedding, by quarter of the "
          f"mel bands (low -> high); dev set {args.data}")
    for run_path, checkpoint in zip(args.checkpoint, checkpoints):
        pretrained, cfg = load_encoder(checkpoint, "target")
        task, task_data = real_audio.build_dev_task(cfg, args.data, "task")
        fold = str(task_data.folds[0].name)
        stats = all_clips(real_audio.logmel_stats_embeddings(task_data), fold)
        bands = cfg.frontend.num_mel_bins
        for label, encoder in (("pretrained", pretrained), ("init", real_audio.initial_encoder(cfg))):
            embeddings = cached_task_embeddings(encoder, task_data, cfg.eval, default_cache(cfg), task,
                                                torch.device("cpu"), None)
            r2 = band_r2(all_clips(embeddings, fold), stats)
            print(f"{str(run_path):<28}{label:<12}band mean "
                  + " ".join(f"{v:.2f}" for v in quarter_means(r2[:bands]))
                  + "   band std " + " ".join(f"{v:.2f}" for v in quarter_means(r2[bands:])))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="band_decoding", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, nargs="+", required=True, help="run folder(s) or last.pt")
    parser.add_argument("--data", type=Path, default=real_audio.DEFAULT_DATA,
                        help=f"dev set folder (default {real_audio.DEFAULT_DATA}; built when missing)")
    args = parser.parse_args(argv)
    from ajepa.cli.common import guarded

    return guarded("band_decoding", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
