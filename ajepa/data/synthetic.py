"""A built-in, labelled audio dataset generated from a seed: runs anywhere, in seconds.

Why it is built the way it is: ablations must be runnable without AudioSet, and a probe
on the result must *discriminate* between encoders. So the classes are chosen to be
confusable by a mean-pooled spectrum alone (an up-chirp and a down-chirp cover the same
band; a click train and noise bursts are both broadband; a chord, an arpeggio and a
vibrato tone share harmonic stacks) and every clip varies in onset, duration, pitch,
level, background noise colour and SNR, and may hold a quieter distractor event of
another class. Telling them apart needs time-frequency structure, which is what the
encoder is supposed to learn.

Every clip is a pure function of ``(seed, clip index)``, so the set is identical on every
machine and in every worker. Generated sets are cached as int16 ``.npy`` (like 16-bit
WAV) under ``<cache_dir>/synthetic/<key>/``, where the key hashes every parameter.
Labels are balanced and the split (70 % train / 15 % val / 15 % test) is stratified by
class.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ajepa.config import SyntheticConfig
from ajepa.data.datasets import SPLIT_NAMES, stratified_split_codes
from ajepa.data.dsp import (
    TWO_PI,
    VOWEL_FORMANTS,
    coloured_noise,
    log_uniform,
    pulse_train,
    rms,
    spectral_filter,
    time_axis,
    tone,
)
from ajepa.data.textures import TEXTURE_CLASS_NAMES, TEXTURE_GENERATORS
from ajepa.io_utils import atomic_open, atomic_write_text

# Bump when the generator changes: it is part of the cache key, so stale caches are ignored.
# 2: the footsteps class always holds a step (the 12 event classes are unchanged since 1).
GENERATOR_VERSION = 2

# The first twelve: mostly tonal events (the default set, `data.synthetic.num_classes: 12`).
EVENT_CLASS_NAMES: tuple[str, ...] = (
    "vibrato_tone",
    "up_chirp",
    "down_chirp",
    "am_noise_band",
    "click_train",
    "vowel",
    "chord",
    "noise_bursts",
    "siren",
    "beeps",
    "arpeggio",
    "engine_hum",
)
# Then twelve texture and everyday-sound classes (ajepa.data.textures): `num_classes: 24`.
CLASS_NAMES: tuple[str, ...] = EVENT_CLASS_NAMES + TEXTURE_CLASS_NAMES
SPLITS: tuple[str, ...] = SPLIT_NAMES
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)

_CHORDS = ((0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 5, 7))  # semitones: maj, min, maj7, min7, sus4


@dataclass
class SyntheticSet:
    """The generated set: ``waves[i]`` (int16, full scale 32767) has label ``labels[i]``
    and belongs to split ``SPLITS[split_codes[i]]``."""

    waves: np.ndarray  # int16 [N, samples]; a read-only memmap when loaded from the cache
    labels: np.ndarray  # int64 [N]
    split_codes: np.ndarray  # uint8 [N], index into SPLITS
    class_names: tuple[str, ...]
    sample_rate: int
    folder: Path | None  # cache folder (also where its stats.json lives); None when uncached
    waves_path: Path | None = None  # the .npy behind `waves`, so datasets can reopen it lazily

    def indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"unknown synthetic split {split!r}; choose one of {SPLITS}")
        return np.flatnonzero(self.split_codes == SPLITS.index(split))


# --------------------------------------------------------------------------- cache


def synthetic_key(cfg: SyntheticConfig, sample_rate: int, clip_seconds: float) -> str:
    """Readable prefix + hash of everything that changes the generated audio."""
    params = {
        "version": GENERATOR_VERSION,
        "num_clips": cfg.num_clips,
        "seed": cfg.seed,
        "snr_db": list(cfg.snr_db),
        "num_classes": cfg.num_classes,
        "distractor_prob": cfg.distractor_prob,
        # only when used, so the keys (and caches) of sets made before it existed stay valid
        **({"silence_prob": cfg.silence_prob} if cfg.silence_prob else {}),
        "sample_rate": int(sample_rate),
        "clip_seconds": float(clip_seconds),
    }
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    return f"n{cfg.num_clips}_c{cfg.num_classes}_seed{cfg.seed}_{sample_rate}hz_{clip_seconds:g}s_{digest}"


def synthetic_folder(cfg: SyntheticConfig, sample_rate: int, clip_seconds: float, cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir) / "synthetic" / synthetic_key(cfg, sample_rate, clip_seconds)


def load_synthetic(
    cfg: SyntheticConfig, sample_rate: int, clip_seconds: float, cache_dir: str | os.PathLike
) -> SyntheticSet:
    """The synthetic set for these parameters: from the cache, or generated (and cached if
    ``cfg.cache``). Cache files are written atomically, so concurrent trials are safe."""
    folder = synthetic_folder(cfg, sample_rate, clip_seconds, cache_dir)
    waves_path, meta_path = folder / "waves.npy", folder / "meta.json"
    if cfg.cache and waves_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return SyntheticSet(
            waves=np.load(waves_path, mmap_mode="r"),
            labels=np.asarray(meta["labels"], dtype=np.int64),
            split_codes=np.asarray(meta["split_codes"], dtype=np.uint8),
            class_names=tuple(meta["class_names"]),
            sample_rate=int(meta["sample_rate"]),
            folder=folder,
            waves_path=waves_path,
        )
    data = generate_synthetic(cfg, sample_rate, clip_seconds)
    data.folder = folder
    if cfg.cache:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_save_npy(waves_path, data.waves)
        meta = {
            "class_names": list(data.class_names),
            "labels": data.labels.tolist(),
            "split_codes": data.split_codes.tolist(),
            "sample_rate": data.sample_rate,
            "splits": list(SPLITS),
        }
        atomic_write_text(meta_path, json.dumps(meta))
        data.waves_path = waves_path
    return data


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, array)


# --------------------------------------------------------------------------- the set


def generate_synthetic(cfg: SyntheticConfig, sample_rate: int, clip_seconds: float) -> SyntheticSet:
    """Render every clip (no cache). Deterministic in ``cfg.seed``."""
    num_classes = cfg.num_classes
    labels, split_codes = balanced_labels_and_splits(cfg.num_clips, num_classes, cfg.seed)
    num_samples = int(round(clip_seconds * sample_rate))
    waves = np.empty((cfg.num_clips, num_samples), dtype=np.int16)

    def render_range(indices: range) -> None:
        for index in indices:
            rng = np.random.default_rng([cfg.seed, index])
            clip = render_clip(int(labels[index]), rng, sample_rate, num_samples, cfg.snr_db,
                               cfg.distractor_prob, num_classes, cfg.silence_prob)
            waves[index] = np.round(clip * 32767.0).astype(np.int16)

    # Threads pay off only for long clips, whose large FFTs and array ops release the GIL;
    # short clips are dominated by Python overhead, where threads just contend for it.
    workers = max(1, min(4, os.cpu_count() or 1)) if num_samples >= 80_000 else 1
    chunks = [range(start, cfg.num_clips, workers) for start in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(render_range, chunks))
    return SyntheticSet(waves, labels, split_codes, CLASS_NAMES[:num_classes], int(sample_rate), folder=None)


def balanced_labels_and_splits(num_clips: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels in a seeded order, and a class-stratified 70/15/15 split."""
    rng = np.random.default_rng([seed, 0x1AB])
    labels = rng.permutation(np.arange(num_clips) % num_classes).astype(np.int64)
    return labels, stratified_split_codes(labels, seed, SPLIT_FRACTIONS)


# --------------------------------------------------------------------------- one clip


def render_clip(
    label: int,
    rng: np.random.Generator,
    sample_rate: int,
    num_samples: int,
    snr_db: tuple[float, float] = (0.0, 20.0),
    distractor_prob: float = 0.5,
    num_classes: int = len(EVENT_CLASS_NAMES),
    silence_prob: float = 0.0,
) -> np.ndarray:
    """One float32 clip in [-1, 1]: an event of class `label` at a random onset and length,
    maybe a quieter distractor of another class, coloured background noise at a random SNR,
    and a random overall level.

    With probability `silence_prob` the clip is instead a shorter event (from 0.25 s or
    10 % of the clip, whichever is longer, up to all of it) in digital silence, without
    background noise (a quieter event of another class may still be mixed in, as in any
    clip): how many real clips look once a
    short recording is zero-padded to a fixed length (ESC-50's 5 s clips; the real dev
    set of benchmarks/real_devset.py is 74 % silent frames). An encoder that never saw
    silence meets it out of distribution at evaluation.
    """
    # drawn only when enabled, so the clips of a set without silence are unchanged
    silent = silence_prob > 0 and rng.random() < silence_prob
    clip = np.zeros(num_samples, dtype=np.float32)
    _place_event(clip, label, rng, sample_rate, min_fraction=0.1 if silent else 0.4, gain=1.0)
    if num_classes > 1 and rng.random() < distractor_prob:
        other = int(rng.integers(num_classes - 1))
        other += other >= label
        _place_event(clip, other, rng, sample_rate, min_fraction=0.15, max_fraction=0.5,
                     gain=10 ** (rng.uniform(-15.0, -8.0) / 20))
    if not silent:
        # The event has unit RMS over its own span and the noise over the clip: SNR is their ratio.
        snr = rng.uniform(*snr_db)
        noise = coloured_noise(rng, num_samples, slope=rng.uniform(0.0, 2.0))
        clip += noise * np.float32(10 ** (-snr / 20))
    peak = float(np.max(np.abs(clip))) or 1.0
    return (clip * (rng.uniform(0.1, 0.9) / peak)).astype(np.float32)


def _place_event(clip: np.ndarray, label: int, rng: np.random.Generator, sample_rate: int,
                 min_fraction: float, gain: float, max_fraction: float = 1.0) -> None:
    """Add a unit-RMS event of `label` (times `gain`) at a random onset."""
    total = len(clip)
    minimum = min(total, max(int(0.25 * sample_rate), int(min_fraction * total)))
    length = int(rng.integers(minimum, max(minimum, int(max_fraction * total)) + 1))
    onset = int(rng.integers(0, total - length + 1))
    event = _GENERATORS[label](rng, length, sample_rate)
    event *= _fade(length, int(rng.uniform(0.005, 0.04) * sample_rate))
    level = rms(event)
    clip[onset : onset + length] += event * np.float32(gain / level)


def _fade(length: int, ramp: int) -> np.ndarray:
    """Raised-cosine attack and release, so onsets are not clicks."""
    env = np.ones(length, dtype=np.float32)
    ramp = max(1, min(ramp, length // 2))
    rise = (0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))).astype(np.float32)
    env[:ramp] = rise
    env[length - ramp :] = rise[::-1]
    return env


#---------------------------------------------------------------- the classes


def _vibrato_tone(rng, length, sr):
    t = time_axis(length, sr)
    f0 = log_uniform(rng, 150, 900)
    depth, rate = rng.uniform(0.01, 0.035), rng.uniform(4.0, 7.5)
    freq = f0 * (1 + depth * np.sin(TWO_PI * rate * t + rng.uniform(0, TWO_PI)))
    return tone(rng, freq, sr, (3, 8), (0.45, 0.8))


def _chirp(rng, length, sr, up: bool):
    t = time_axis(length, sr)
    repeats = int(rng.integers(1, 4))
    octaves = rng.uniform(1.0, 2.5)
    low = log_uniform(rng, 150, 1200)
    position = np.mod(t * (repeats / t[-1] if t[-1] > 0 else 1.0), 1.0)
    if not up:
        position = 1.0 - position
    freq = low * np.exp2(octaves * position)
    return tone(rng, freq, sr, (1, 3), (0.3, 0.6))


def _am_noise_band(rng, length, sr):
    t = time_axis(length, sr)
    centre = log_uniform(rng, 400, min(5000, 0.35 * sr))
    half_width = 2 ** (rng.uniform(0.1, 0.35))
    band = spectral_filter(rng.standard_normal(length, dtype=np.float32), sr,
                            lambda f: ((f > centre / half_width) & (f < centre * half_width)).astype(float))
    depth, rate = rng.uniform(0.6, 1.0), rng.uniform(2.0, 12.0)
    return band * (1 - depth * (0.5 + 0.5 * np.cos(TWO_PI * rate * t))).astype(np.float32)


def _click_train(rng, length, sr):
    rate = rng.uniform(4.0, 30.0)
    period = sr / rate
    jitter = rng.uniform(0.0, 0.1)
    count = max(1, int(length / period))
    positions = (np.arange(count) * period + rng.normal(0, jitter * period, count)).astype(np.int64)
    kernel_len = max(4, int(rng.uniform(0.001, 0.004) * sr))
    kernel = rng.standard_normal(kernel_len).astype(np.float32) * np.exp(-np.arange(kernel_len) / (kernel_len / 4))
    out = np.zeros(length + kernel_len, dtype=np.float32)
    positions = np.clip(positions, 0, length - 1)
    np.add.at(out, positions[:, None] + np.arange(kernel_len)[None, :], kernel[None, :])
    return out[:length]


def _vowel(rng, length, sr):
    t = time_axis(length, sr)
    f0 = rng.uniform(90, 260) * (1 + rng.uniform(0.0, 0.02) * np.sin(TWO_PI * rng.uniform(3, 6) * t))
    formants = VOWEL_FORMANTS[int(rng.integers(len(VOWEL_FORMANTS)))] * rng.uniform(0.9, 1.2)
    bandwidths = np.array([80.0, 110.0, 160.0]) * rng.uniform(0.8, 1.3)

    def envelope(f):
        resonance = sum(1.0 / (1.0 + ((f - fc) / bw) ** 2) for fc, bw in zip(formants, bandwidths))
        return resonance / (1.0 + f / 500.0)  # glottal spectral tilt

    return spectral_filter(pulse_train(rng, f0, sr), sr, envelope)


def _chord(rng, length, sr):
    root = log_uniform(rng, 130, 520)
    intervals = _CHORDS[int(rng.integers(len(_CHORDS)))]
    out = np.zeros(length, dtype=np.float32)
    strum = int(rng.uniform(0.0, 0.06) * sr)
    for i, semitones in enumerate(intervals):
        freq = np.full(length, root * 2 ** (semitones / 12), dtype=np.float32)
        start = min(i * strum, length - 1)
        out[start:] += tone(rng, freq[start:], sr, (2, 4), (0.4, 0.7))
    return out


def _noise_bursts(rng, length, sr):
    out = np.zeros(length, dtype=np.float32)
    for _ in range(int(rng.integers(2, 7))):
        burst = min(length, int(rng.uniform(0.03, 0.2) * sr))
        start = int(rng.integers(0, length - burst + 1))
        decay = np.exp(-np.arange(burst) / (burst / rng.uniform(2.0, 6.0))).astype(np.float32)
        out[start : start + burst] += coloured_noise(rng, burst, rng.uniform(0.0, 1.0)) * decay
    return out


def _siren(rng, length, sr):
    t = time_axis(length, sr)
    centre = log_uniform(rng, 500, 1500)
    deviation, rate = rng.uniform(0.15, 0.4), rng.uniform(0.5, 3.0)
    freq = centre * (1 + deviation * np.sin(TWO_PI * rate * t + rng.uniform(0, TWO_PI)))
    return tone(rng, freq, sr, (1, 3), (0.3, 0.6))


def _beeps(rng, length, sr):
    t = time_axis(length, sr)
    freq = np.full(length, log_uniform(rng, 500, min(3000, 0.4 * sr)), dtype=np.float32)
    on, off = rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.3)
    gate = (np.mod(t, on + off) < on).astype(np.float32)
    return tone(rng, freq, sr, (1, 2), (0.2, 0.4)) * gate


def _arpeggio(rng, length, sr):
    root = log_uniform(rng, 130, 700)
    notes = int(rng.integers(3, 9))
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    steps = rng.choice(scale, size=notes)
    note_of_sample = np.minimum(np.arange(length) * notes // length, notes - 1)
    freq = (root * 2 ** (steps[note_of_sample] / 12)).astype(np.float32)
    return tone(rng, freq, sr, (2, 5), (0.4, 0.7))


def _engine_hum(rng, length, sr):
    t = time_axis(length, sr)
    f0 = rng.uniform(25, 70) * (1 + rng.uniform(0.0, 0.05) * np.sin(TWO_PI * rng.uniform(0.1, 0.5) * t))
    cutoff = rng.uniform(300, 1200)
    hum = spectral_filter(pulse_train(rng, f0, sr), sr, lambda f: 1.0 / (1.0 + (f / cutoff) ** 4))
    hum /= rms(hum)
    return hum + 0.3 * coloured_noise(rng, length, 2.0)


_GENERATORS = (
    _vibrato_tone,
    lambda rng, n, sr: _chirp(rng, n, sr, up=True),
    lambda rng, n, sr: _chirp(rng, n, sr, up=False),
    _am_noise_band,
    _click_train,
    _vowel,
    _chord,
    _noise_bursts,
    _siren,
    _beeps,
    _arpeggio,
    _engine_hum,
) + TEXTURE_GENERATORS
assert len(_GENERATORS) == len(CLASS_NAMES)
