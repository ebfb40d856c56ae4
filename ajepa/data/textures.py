"""Texture and everyday-sound classes of the synthetic set (classes 13-24).

Why they exist: the first twelve synthetic classes (ajepa.data.synthetic) are mostly tonal
events, clean harmonic stacks and sweeps. Much real sound is not: rain, fire, wind and
machinery are noise textures with temporal structure; footsteps, knocks and explosions
are transients with resonant tails; speech, screams and birdsong are fast-moving
harmonic sounds. An encoder pretrained only on tones learns little about those. These
generators are procedural sketches of such sounds (physically motivated where cheap:
Poisson droplets, modal resonances, Minnaert bubbles, moving formants), each with
random parameters wide enough that a class is a family, not a template.

Every generator has the signature ``(rng, length, sample_rate) -> float32[length]``; the
caller (``ajepa.data.synthetic._place_event``) normalises the level, fades the ends and
places the event in a clip. Nothing here reads or fetches data.
"""

from __future__ import annotations

import numpy as np

from ajepa.data.dsp import (
    TWO_PI,
    VOWEL_FORMANTS,
    add_at,
    coloured_noise,
    decay,
    harmonics,
    log_uniform,
    phase_of,
    poisson_onsets,
    pulse_train,
    rms,
    smooth_random_curve,
    spectral_filter,
    time_axis,
    time_varying_filter,
)

TEXTURE_CLASS_NAMES: tuple[str, ...] = (
    "rain",
    "fire_crackle",
    "wind",
    "footsteps",
    "knocks",
    "explosion",
    "bird_trill",
    "babble",
    "scream",
    "bubbles",
    "machinery",
    "thunder",
)


def _nyquist_cap(freq: float, sample_rate: int) -> float:
    return min(freq, 0.45 * sample_rate)


def _band(low: float, high: float):
    """A smooth band-pass gain (log-frequency raised cosine) for spectral_filter. At low
    sample rates a band whose upper edge was capped below its lower one is widened
    downwards to half an octave or more."""
    low = min(low, high / 1.5)
    centre, half = np.sqrt(low * high), max(np.log(high / low) / 2, 1e-3)

    def gain(f):
        distance = np.abs(np.log(np.maximum(f, 1.0) / centre)) / half
        return np.where(distance < 1.0, 0.5 + 0.5 * np.cos(np.pi * distance), 0.0)

    return gain


def _lowpass(cutoff: float, order: int = 2):
    return lambda f: 1.0 / (1.0 + (f / cutoff) ** (2 * order))


def _decaying_sine(length: int, freq: np.ndarray | float, sample_rate: int, time_constant: float) -> np.ndarray:
    freq = np.broadcast_to(np.asarray(freq, dtype=np.float32), (length,))
    return np.sin(phase_of(freq, sample_rate)) * decay(length, time_constant)


def _noise_burst(rng, length: int, sample_rate: int, band: tuple[float, float], time_constant: float) -> np.ndarray:
    burst = spectral_filter(rng.standard_normal(length, dtype=np.float32), sample_rate, _band(*band))
    return burst * decay(length, time_constant)


def _rain(rng, length, sr):
    """Many small droplets (short rising sines) at a Poisson rate, over a hiss."""
    out = np.zeros(length, dtype=np.float32)
    for onset in poisson_onsets(rng, length, sr, log_uniform(rng, 40, 300)):
        drop = int(rng.uniform(0.004, 0.02) * sr)
        start = _nyquist_cap(log_uniform(rng, 1200, 6000), sr)
        freq = start * (1 + rng.uniform(0.0, 1.0) * np.linspace(0, 1, drop, dtype=np.float32))
        add_at(out, onset, _decaying_sine(drop, np.minimum(freq, 0.45 * sr), sr, drop / 4)
               * np.float32(rng.lognormal(0.0, 0.6)))
    hiss = spectral_filter(coloured_noise(rng, length, rng.uniform(0.0, 1.0)), sr,
                           lambda f: 1.0 / (1.0 + (800.0 / np.maximum(f, 1.0)) ** 2))
    scale = rms(out)
    return out + hiss * np.float32(scale * rng.uniform(0.3, 1.5))


def _fire_crackle(rng, length, sr):
    """Sparse clicks of heavy-tailed loudness over a low, slowly breathing roar."""
    out = np.zeros(length, dtype=np.float32)
    for onset in poisson_onsets(rng, length, sr, rng.uniform(5, 40)):
        click = max(4, int(rng.uniform(0.0005, 0.004) * sr))
        add_at(out, onset, rng.standard_normal(click, dtype=np.float32) * decay(click, click / 3)
               * np.float32(min(rng.pareto(1.5) + 0.2, 20.0)))
    roar = spectral_filter(coloured_noise(rng, length, 1.0), sr, _lowpass(rng.uniform(250, 900)))
    roar *= 1.0 + 0.6 * smooth_random_curve(rng, length, sr, rng.uniform(1.0, 4.0))
    scale = rms(out)
    return out + roar * np.float32(scale * rng.uniform(0.2, 1.0))


def _wind(rng, length, sr):
    """Noise through a resonance whose centre and level wander slowly (gusts)."""
    duration = length / sr
    wander = rng.uniform(0.3, 2.0)
    centre_curve = smooth_random_curve(rng, length, sr, wander)
    centre = log_uniform(rng, 200, _nyquist_cap(1500, sr))
    width = rng.uniform(0.3, 0.8)  # octaves (std of a log-gaussian band)
    knots = np.linspace(0, duration, len(centre_curve))

    def gain(freqs, times):
        c = np.minimum(centre * np.exp2(1.2 * np.interp(times, knots, centre_curve)), 0.45 * sr)
        return np.exp(-0.5 * (np.log2(np.maximum(freqs, 1.0) / c) / width) ** 2)

    out = time_varying_filter(coloured_noise(rng, length, 1.0), sr, gain)
    return out * (1.0 + 0.8 * smooth_random_curve(rng, length, sr, wander * 1.5)).astype(np.float32)


def _footsteps(rng, length, sr):
    """Steps at a walking or running pace: a low thump and a scuff of the surface, maybe
    a heel-toe double hit."""
    out = np.zeros(length, dtype=np.float32)
    period = sr / rng.uniform(1.3, 3.5)
    surface = (log_uniform(rng, 300, 1500), _nyquist_cap(log_uniform(rng, 2000, 7000), sr))
    double = rng.random() < 0.5
    position = rng.uniform(0, min(period, 0.2 * length))  # the first step always falls inside the event
    while position < length:
        for hit, gain in ((0, 1.0), (int(rng.uniform(0.03, 0.08) * sr), rng.uniform(0.3, 0.8))) if double else ((0, 1.0),):
            thump_len = int(rng.uniform(0.03, 0.07) * sr)
            scuff_len = int(rng.uniform(0.02, 0.09) * sr)
            level = np.float32(gain * rng.uniform(0.6, 1.0))
            add_at(out, position + hit, _decaying_sine(thump_len, rng.uniform(50, 140), sr, thump_len / 4) * level)
            add_at(out, position + hit, _noise_burst(rng, scuff_len, sr, surface, scuff_len / 3) * level * 0.7)
        position += int(period * rng.uniform(0.9, 1.1))
    return out


def _knocks(rng, length, sr):
    """One to five hits on a resonant object: a few inharmonic, exponentially decaying
    modes (modal synthesis) started by a short click."""
    modes = int(rng.integers(2, 7))
    base = log_uniform(rng, 150, 1500)
    ratios = np.concatenate([[1.0], np.sort(rng.uniform(1.3, 6.0, modes - 1))])
    freqs = np.minimum(base * ratios, 0.45 * sr)
    decays = rng.uniform(0.01, 0.25, modes) / np.sqrt(ratios)
    amps = rng.uniform(0.3, 1.0, modes) / ratios
    hit_len = min(length, int(0.4 * sr))
    hit = sum(np.float32(a) * _decaying_sine(hit_len, f, sr, d * sr) for f, d, a in zip(freqs, decays, amps))
    click = min(hit_len, max(4, int(0.002 * sr)))
    hit[:click] += rng.standard_normal(click, dtype=np.float32) * decay(click, click / 3) * np.float32(0.5)
    out = np.zeros(length, dtype=np.float32)
    hits = int(rng.integers(1, 6))
    gap = rng.uniform(0.08, 0.4) * sr
    for k in range(hits):
        add_at(out, int(k * gap * rng.uniform(0.8, 1.2)), hit * np.float32(rng.uniform(0.6, 1.0)))
    return out


def _explosion(rng, length, sr):
    """A broadband blast, then a long low rumble with debris crackle."""
    blast_len = min(length, int(rng.uniform(0.03, 0.12) * sr))
    out = np.zeros(length, dtype=np.float32)
    add_at(out, 0, coloured_noise(rng, blast_len, rng.uniform(0.0, 0.5)) * decay(blast_len, blast_len / 3) * 3.0)
    rumble = spectral_filter(coloured_noise(rng, length, 1.5), sr, _lowpass(rng.uniform(120, 500)))
    out += rumble * decay(length, rng.uniform(0.3, 1.2) * sr)
    for onset in poisson_onsets(rng, length // 2, sr, rng.uniform(0, 30)):
        bit = max(4, int(0.003 * sr))
        add_at(out, onset + blast_len, rng.standard_normal(bit, dtype=np.float32) * decay(bit, bit / 3)
               * np.float32(rng.uniform(0.1, 0.6)))
    return out


def _bird_trill(rng, length, sr):
    """A fast series of short whistled sweeps (syllables), maybe switching pattern midway."""
    out = np.zeros(length, dtype=np.float32)
    top = 0.42 * sr
    switch = int(rng.uniform(0.4, 1.0) * length) if rng.random() < 0.5 else length
    position = 0
    for part in range(2):
        rate, syll = rng.uniform(4, 20), rng.uniform(0.015, 0.08)
        low = min(log_uniform(rng, 1500, 5000), top / 1.6)
        span = rng.uniform(0.2, 0.9)  # octaves
        shape = int(rng.integers(3))  # 0 down, 1 up, 2 chevron
        end = switch if part == 0 else length
        while position < end:
            n = max(8, int(syll * sr))
            x = np.linspace(0, 1, n, dtype=np.float32)
            curve = (1 - x, x, 1 - np.abs(2 * x - 1))[shape]
            freq = np.minimum(low * np.exp2(span * curve), top)
            env = np.sin(np.pi * x) ** 2
            add_at(out, position, harmonics(phase_of(freq, sr), float(freq.max()), sr, 2, rng.uniform(0.1, 0.4)) * env)
            position += max(n, int(sr / rate * rng.uniform(0.85, 1.15)))
        position = max(position, switch)
    return out


def _voiced(rng, length, sr, f0: np.ndarray, formant_track, jitter: float) -> np.ndarray:
    """A glottal pulse train (with pitch jitter) through formants moving along
    ``formant_track(times) -> [3, frames]``."""
    f0 = f0 * (1 + jitter * rng.standard_normal(length).astype(np.float32))
    source = pulse_train(rng, f0, sr)
    duration = length / sr

    def gain(freqs, times):
        formants = formant_track(np.clip(times[0] / max(duration, 1e-6), 0.0, 1.0))  # [3, frames]
        resonance = sum(1.0 / (1.0 + ((freqs - fc[None, :]) / (0.08 * fc[None, :] + 50.0)) ** 2) for fc in formants)
        return resonance / (1.0 + freqs / 500.0)

    return time_varying_filter(source, sr, gain)


def _babble(rng, length, sr):
    """Speech-like syllables: voiced vowels gliding between formant targets at a syllable
    rate, a falling pitch contour, fricative noise between some syllables."""
    t = time_axis(length, sr)
    duration = max(length / sr, 1e-3)
    f0 = rng.uniform(90, 240) * (1.15 - 0.3 * t / duration) * (1 + 0.06 * smooth_random_curve(rng, length, sr, 3))
    syllables = max(2, int(duration * rng.uniform(3, 6)))
    scale = rng.uniform(0.9, 1.25)
    targets = VOWEL_FORMANTS[rng.integers(len(VOWEL_FORMANTS), size=syllables + 1)] * scale
    cap = 0.45 * sr

    def track(position):
        index = position * syllables
        low = np.minimum(index.astype(np.int64), syllables - 1)
        frac = index - low
        return np.minimum((targets[low] * (1 - frac[:, None]) + targets[low + 1] * frac[:, None]).T, cap)

    voiced = _voiced(rng, length, sr, f0.astype(np.float32), track, jitter=0.01)
    # syllable envelope: voicing swells per syllable, with short gaps
    syllable_phase = np.mod(t / duration * syllables, 1.0)
    voiced *= (np.sin(np.pi * syllable_phase) ** 0.5).astype(np.float32)
    level = rms(voiced)
    for k in range(syllables):
        if rng.random() < 0.5:
            n = int(rng.uniform(0.03, 0.09) * sr)
            band = (_nyquist_cap(log_uniform(rng, 2000, 4000), sr) * 0.9, _nyquist_cap(7500, sr))
            add_at(voiced, int(k * length / syllables), _noise_burst(rng, n, sr, band, n / 2) * np.float32(level * 1.5))
    return voiced


def _scream(rng, length, sr):
    """A high, rough, strained voice: high pitch on a rise-fall contour, strong jitter,
    an open vowel, breath noise."""
    t = time_axis(length, sr)
    duration = max(length / sr, 1e-3)
    peak = rng.uniform(0.2, 0.7)
    contour = np.exp(-0.5 * ((t / duration - peak) / rng.uniform(0.25, 0.6)) ** 2)
    f0 = log_uniform(rng, 350, 900) * (0.75 + 0.35 * contour)
    f0 = np.minimum(f0, 0.2 * sr).astype(np.float32)
    vowel = VOWEL_FORMANTS[[0, 3, 4][int(rng.integers(3))]] * rng.uniform(1.2, 1.6)
    formants = np.minimum(vowel, 0.45 * sr)
    voice = _voiced(rng, length, sr, f0, lambda p: np.repeat(formants[:, None], len(p), axis=1),
                    jitter=rng.uniform(0.03, 0.08))
    level = rms(voice)
    breath = spectral_filter(rng.standard_normal(length, dtype=np.float32), sr, _band(1000, _nyquist_cap(6000, sr)))
    return voice + breath * np.float32(level * rng.uniform(0.1, 0.5))


def _bubbles(rng, length, sr):
    """Water: bubbles (sines whose pitch rises as they decay, after Minnaert) at a Poisson
    rate over a low gurgle."""
    out = np.zeros(length, dtype=np.float32)
    for onset in poisson_onsets(rng, length, sr, log_uniform(rng, 8, 80)):
        n = int(rng.uniform(0.01, 0.06) * sr)
        f = _nyquist_cap(log_uniform(rng, 300, 2500), sr)
        rise = 1 + rng.uniform(0.2, 1.5) * np.linspace(0, 1, n, dtype=np.float32)
        add_at(out, onset, _decaying_sine(n, np.minimum(f * rise, 0.45 * sr), sr, n / 3)
               * np.float32(rng.lognormal(0.0, 0.5)))
    gurgle = spectral_filter(coloured_noise(rng, length, 1.0), sr, _band(100, _nyquist_cap(1200, sr)))
    scale = rms(out)
    return out + gurgle * np.float32(scale * rng.uniform(0.1, 0.6))


def _machinery(rng, length, sr):
    """A running machine: a rhythmic mechanical clatter with accents, a mains-like hum and
    a gear whine, in random proportions."""
    out = np.zeros(length, dtype=np.float32)
    rate = rng.uniform(4, 25)
    accent_every = int(rng.integers(1, 5))
    band = (log_uniform(rng, 500, 2000), _nyquist_cap(log_uniform(rng, 3000, 8000), sr))
    for k in range(int(length / sr * rate) + 1):
        n = max(8, int(rng.uniform(0.005, 0.02) * sr))
        gain = 1.0 if k % accent_every == 0 else rng.uniform(0.2, 0.6)
        add_at(out, int(k * sr / rate), _noise_burst(rng, n, sr, band, n / 3) * np.float32(gain))
    level = rms(out)
    t = time_axis(length, sr)
    hum_f0 = rng.uniform(40, 130)
    hum = harmonics(phase_of(np.full(length, hum_f0, np.float32), sr), hum_f0, sr, int(rng.integers(3, 10)),
                    rng.uniform(0.5, 0.8))
    whine_f = _nyquist_cap(log_uniform(rng, 800, 4000), sr)
    whine = np.sin(phase_of((whine_f * (1 + 0.01 * np.sin(TWO_PI * rng.uniform(0.5, 3) * t))).astype(np.float32), sr))
    return out + np.float32(level) * (np.float32(rng.uniform(0.2, 1.2)) * hum / 2
                                    + np.float32(rng.uniform(0.0, 0.6)) * whine)


def _thunder(rng, length, sr):
    """Distant thunder: low noise in several overlapping swells, maybe a crack first."""
    t = time_axis(length, sr)
    duration = max(length / sr, 1e-3)
    envelope = np.zeros(length, dtype=np.float32)
    for _ in range(int(rng.integers(2, 6))):
        centre, width = rng.uniform(0.0, 0.8) * duration, rng.uniform(0.05, 0.3) * duration
        envelope += np.float32(rng.uniform(0.3, 1.0)) * np.exp(-0.5 * ((t - centre) / width) ** 2)
    rumble = spectral_filter(coloured_noise(rng, length, 1.5), sr, _lowpass(rng.uniform(60, 300), order=3))
    out = rumble * envelope
    if rng.random() < 0.5:
        n = min(length, int(rng.uniform(0.05, 0.2) * sr))
        out[:n] += coloured_noise(rng, n, 0.5) * decay(n, n / 4) * np.float32(rng.uniform(0.5, 2.0))
    return out


TEXTURE_GENERATORS = (
    _rain,
    _fire_crackle,
    _wind,
    _footsteps,
    _knocks,
    _explosion,
    _bird_trill,
    _babble,
    _scream,
    _bubbles,
    _machinery,
    _thunder,
)
assert len(TEXTURE_GENERATORS) == len(TEXTURE_CLASS_NAMES)
