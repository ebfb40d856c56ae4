"""The log-mel frontend shared by pretraining and every evaluation task.

It reproduces the AST / Audio-MAE / A-JEPA recipe exactly, so presets and published
normalisation statistics stay valid:

1. ``kaldi.fbank(wave - wave.mean(), htk_compat, sample_frequency, use_energy=False,
   window_type, num_mel_bins, dither, frame_shift, frame_length)`` -> ``[T, F]`` log-mel;
2. fit the time axis to ``target_frames``: zeros appended at the end when shorter (the
   un-normalised log-mel is padded, as AST does, so padding becomes ``-mean / (2 std)``
   after step 3), a crop when longer: random with a supplied ``torch.Generator`` for
   training, centred for evaluation (AST always keeps the head; centring loses less of
   an event that starts late);
3. normalise ``(x - mean) / (2 * std)``;

and returns ``FloatTensor[1, F, T]`` with row 0 the lowest mel band (the
``ARCHITECTURE.md`` convention).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torchaudio.compliance.kaldi as kaldi

from ajepa.audio.io import single_threaded
from ajepa.config import NORM_PRESETS, FrontendConfig
from ajepa.contracts import UserError
from ajepa.io_utils import atomic_write_text

STATS_FILE = "stats.json"

# Settings that change the log-mel values; stats computed under other settings are stale.
_STATS_KEYS = ("num_mel_bins", "frame_length_ms", "frame_shift_ms", "window_type", "dither", "htk_compat")


class NormStatsError(UserError):
    """Normalisation statistics that cannot be found or do not fit the frontend."""


def frames_for_samples(num_samples: int, sample_rate: int, frame_length_ms: float, frame_shift_ms: float) -> int:
    """Frames kaldi.fbank produces (snip_edges=True) for `num_samples`: 998 for 10 s at 16 kHz."""
    window = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    if num_samples < window:
        return 1  # the frontend pads short waves to one window
    return 1 + (num_samples - window) // shift


class Frontend:
    """Wave ``[samples]`` -> normalised log-mel ``[1, F, target_frames]``.

    Plain attributes only, so datasets holding a frontend stay picklable for DataLoader
    workers.
    """

    def __init__(
        self,
        cfg: FrontendConfig,
        sample_rate: int,
        stats: tuple[float, float] | None,
        target_frames: int | None = None,
    ):
        self.cfg = cfg
        self.sample_rate = int(sample_rate)
        self.target_frames = int(target_frames if target_frames is not None else cfg.target_frames)
        self.num_mel_bins = cfg.num_mel_bins
        if stats is not None and not stats[1] > 0:
            raise NormStatsError(f"normalisation std must be > 0, got {stats[1]}")
        self.stats = None if stats is None else (float(stats[0]), float(stats[1]))

    def __repr__(self) -> str:
        return (
            f"Frontend({self.num_mel_bins} mels x {self.target_frames} frames @ {self.sample_rate} Hz, "
            f"stats={self.stats})"
        )

    @property
    def window_samples(self) -> int:
        return int(self.sample_rate * self.cfg.frame_length_ms * 0.001)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Un-normalised, un-padded log-mel ``[F, T]`` (what ``ajepa-stats`` averages)."""
        wave = wave.reshape(1, -1).to(torch.float32)
        if wave.shape[1] < self.window_samples:
            wave = torch.nn.functional.pad(wave, (0, self.window_samples - wave.shape[1]))
        with single_threaded():
            fbank = kaldi.fbank(
                wave - wave.mean(),
                htk_compat=self.cfg.htk_compat,
                sample_frequency=self.sample_rate,
                use_energy=False,
                window_type=self.cfg.window_type,
                num_mel_bins=self.num_mel_bins,
                dither=self.cfg.dither,
                frame_shift=self.cfg.frame_shift_ms,
                frame_length=self.cfg.frame_length_ms,
            )
            return fbank.transpose(0, 1).contiguous()

    def fit_frames(self, spec: torch.Tensor, train: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pad ``[F, T]`` with zeros at the end, or crop it (random if `train`, else centred)."""
        frames = spec.shape[-1]
        target = self.target_frames
        if frames < target:
            return torch.nn.functional.pad(spec, (0, target - frames))
        if frames == target:
            return spec
        if train:
            start = int(torch.randint(0, frames - target + 1, (1,), generator=generator))
        else:
            start = (frames - target) // 2
        return spec[..., start : start + target]

    def normalise(self, spec: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        if self.stats is None:
            return spec
        mean, std = self.stats
        if inplace:  # the same arithmetic, without two temporaries
            return spec.sub_(mean).div_(2.0 * std)
        return (spec - mean) / (2.0 * std)

    def finish(self, log_mel: torch.Tensor, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Steps 2-3 on an un-normalised log-mel ``[F, T]`` (float32, or the feature cache's
        float16: cropped first, then widened, so normalisation runs in float32)."""
        with single_threaded():
            spec = self.fit_frames(log_mel, train, generator)
            spec = spec.to(dtype=torch.float32, memory_format=torch.contiguous_format, copy=True)
            return self.normalise(spec, inplace=True).unsqueeze(0)

    def __call__(self, wave: torch.Tensor, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        with single_threaded():
            return self.finish(self.log_mel(wave), train, generator)


# --------------------------------------------------------------------------- statistics


def fbank_settings(cfg: FrontendConfig, sample_rate: int) -> dict[str, Any]:
    """The settings a stats.json was computed under (checked when it is read)."""
    return {key: getattr(cfg, key) for key in _STATS_KEYS} | {"sample_rate": int(sample_rate)}


def stats_file(location: str | os.PathLike) -> Path:
    """A folder means ``<folder>/stats.json``; a ``.json`` path is taken as is."""
    location = Path(location)
    return location if location.suffix == ".json" else location / STATS_FILE


def resolve_norm_stats(
    cfg: FrontendConfig,
    stats_location: str | os.PathLike | None = None,
    sample_rate: int | None = None,
) -> tuple[float, float] | None:
    """(mean, std) for ``cfg.norm``, or None for ``norm='none'``.

    ``'dataset'`` reads ``stats.json`` at `stats_location` (the data root, or the
    synthetic cache folder: see ``ajepa.data.stats.stats_location``). With
    `sample_rate` given, stats computed under other fbank settings are refused.
    """
    if cfg.norm == "none":
        return None
    if cfg.norm == "preset":
        return NORM_PRESETS[cfg.norm_preset]
    if cfg.norm == "fixed":
        return float(cfg.norm_mean), float(cfg.norm_std)  # type: ignore[arg-type]
    if stats_location is None:
        raise NormStatsError("frontend.norm='dataset' needs the folder of the data's stats.json; none was given")
    path = stats_file(stats_location)
    if not path.is_file():
        raise NormStatsError(
            f"frontend.norm='dataset' expects normalisation stats at {path}, which does not exist: "
            f"run `ajepa-stats CONFIG` (same config) to compute them, or set frontend.norm=preset"
        )
    return read_norm_stats(path, cfg, sample_rate)


def read_norm_stats(path: Path, cfg: FrontendConfig | None = None, sample_rate: int | None = None) -> tuple[float, float]:
    try:
        payload = json.loads(path.read_text())
        mean, std = float(payload["mean"]), float(payload["std"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise NormStatsError(f"{path}: not a valid stats file ({err}); rerun `ajepa-stats CONFIG`") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise NormStatsError(f"{path}: unusable stats mean={mean}, std={std}; rerun `ajepa-stats CONFIG`")
    recorded = payload.get("frontend")
    if cfg is not None and sample_rate is not None and recorded is not None:
        expected = fbank_settings(cfg, sample_rate)
        diff = {k: (recorded.get(k), v) for k, v in expected.items() if recorded.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: file {a!r} vs config {b!r}" for k, (a, b) in diff.items())
            raise NormStatsError(
                f"{path}: stats were computed with other frontend settings ({detail}); rerun `ajepa-stats CONFIG`"
            )
    return mean, std


def write_norm_stats(path: Path, mean: float, std: float, settings: dict[str, Any], **extra: Any) -> Path:
    """Write stats.json atomically (concurrent sweep trials may read it while it is written)."""
    path = stats_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"mean": float(mean), "std": float(std), "frontend": settings, **extra}
    return atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")
