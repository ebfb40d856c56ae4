"""``ajepa-masks CONFIG [key=value ...] --out DIR``: pictures of masks and curriculum functions.

Writes ``masks.png`` (example masks of every strategy, plus the config's own, on a
spectrogram) and ``curriculum.png``. The drawing is :mod:`ajepa.masks.figures`; the
spectrogram under the masks is a rendered clip of the synthetic set, which needs audio and
data: that is why picking it lives here, above them all, and not in the masks package.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ajepa.audio.features import Frontend
from ajepa.cli.common import fail, guarded
from ajepa.config import ConfigError, CurriculumMask, load_config
from ajepa.data.synthetic import render_clip
from ajepa.masks.figures import (
    PAPER_MASKS,
    PAPER_SCHEDULES,
    draw_curriculum,
    draw_mask_examples,
    schedule_label,
    synthetic_spectrogram,
)


def example_spectrogram(cfg) -> tuple[np.ndarray, str]:
    """A log-mel ``[F, T]`` of one clip (a siren) of the built-in synthetic set, else a drawn one."""
    try:
        sample_rate = cfg.data.sample_rate
        frontend = Frontend(cfg.frontend, sample_rate, stats=None)
        samples = int(cfg.frontend.target_frames * cfg.frontend.frame_shift_ms * sample_rate / 1000)
        wave = render_clip(8, np.random.default_rng(0), sample_rate, samples + frontend.window_samples,
                           snr_db=(20.0, 30.0))
        spec = frontend.fit_frames(frontend.log_mel(torch.from_numpy(wave)), train=False)
        return spec.numpy(), "synthetic clip (ajepa.data.synthetic)"
    except Exception:  # noqa: BLE001 - any failure falls back to the drawn picture
        return synthetic_spectrogram(cfg.frontend.num_mel_bins, cfg.frontend.target_frames), "drawn chirp"


def main(argv: Sequence[str] | None = None) -> int:
    """``ajepa-masks``; errors a user can fix end in one line and exit code 2 (ajepa.cli.common)."""
    return guarded("ajepa-masks", lambda: run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ajepa-masks",
        description="Draw example masks of every strategy (and the config's own) and the curriculum functions.",
    )
    parser.add_argument("config", nargs="?", help="experiment YAML (optional: defaults if left out)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. masking.strategy=tf")
    parser.add_argument("--out", default=".", help="output folder (default: current folder)")
    parser.add_argument("--examples", type=int, default=3, help="masks per strategy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after options
    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        config, overrides = None, [config, *overrides]  # only overrides were given
    try:
        cfg = load_config(config, overrides)
    except ConfigError as err:
        return fail("ajepa-masks", err)

    spec, source = example_spectrogram(cfg)
    configs = dict(PAPER_MASKS)
    configs[f"this config: {cfg.masking.strategy}"] = cfg.masking
    out = Path(args.out)
    masks_png = draw_mask_examples(spec, cfg.grid, cfg.model.patch_size, configs, out / "masks.png",
                                   args.examples, args.seed)
    schedules = dict(PAPER_SCHEDULES)
    if isinstance(cfg.masking, CurriculumMask):
        schedules[f"this config: {schedule_label(cfg.masking.schedule)}"] = cfg.masking.schedule
    curriculum_png = draw_curriculum(out / "curriculum.png", schedules)
    print(f"grid {cfg.grid[0]}x{cfg.grid[1]} patches, spectrogram: {source}")
    print(f"wrote {masks_png}")
    print(f"wrote {curriculum_png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
