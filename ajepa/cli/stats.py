"""``ajepa-stats CONFIG [key=value ...]``: write the log-mel mean/std of the pretraining data.

The statistics themselves are :func:`ajepa.data.stats.compute_norm_stats`; this module
parses the arguments, reports errors and says where the file went. It lives on the CLI
floor so that the library module needs no import of ``ajepa.data.tasks`` (which imports
it): that import made the cycle data/stats.py <-> data/tasks.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ajepa.audio.features import fbank_settings, write_norm_stats
from ajepa.cli.common import fail, guarded
from ajepa.config import ConfigError, load_config
from ajepa.data.stats import compute_norm_stats
from ajepa.data.tasks import build_pretrain_dataset, pretrain_stats_location

DEFAULT_MAX_CLIPS = 20000


def main(argv: list[str] | None = None) -> int:
    """``ajepa-stats``; errors a user can fix end in one line and exit code 2 (ajepa.cli.common)."""
    return guarded("ajepa-stats", lambda: run(argv))


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ajepa-stats",
        description="Compute the log-mel mean/std of the pretraining data and write stats.json beside it "
        "(used by frontend.norm=dataset).",
    )
    parser.add_argument("config", help="experiment YAML (the same one you train with)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=/data/audioset")
    parser.add_argument("--max-clips", type=int, default=DEFAULT_MAX_CLIPS,
                        help=f"clips to average over, evenly spaced (default {DEFAULT_MAX_CLIPS}; 0 = all)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of beside the data")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after options
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        return fail("ajepa-stats", err)
    dataset = build_pretrain_dataset(cfg, normalise=False)
    mean, std, used = compute_norm_stats(dataset, args.max_clips or None, cfg.data.num_workers)
    target = args.out if args.out is not None else pretrain_stats_location(cfg.data)
    path = write_norm_stats(
        target, mean, std, fbank_settings(cfg.frontend, cfg.data.sample_rate),
        num_clips=used, dataset_clips=len(dataset), data_kind=cfg.data.kind, config=str(args.config),
    )
    print(f"mean={mean:.6f} std={std:.6f} over {used} of {len(dataset)} clips -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
