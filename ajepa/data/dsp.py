"""Signal building blocks shared by the synthetic sound classes (ajepa.data.synthetic and
ajepa.data.textures): harmonic tones, FFT-domain filters, coloured noise, pulse trains.

Everything is float32 numpy and deterministic in the ``numpy.random.Generator`` it is given,
so a clip stays a pure function of its seed.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

TWO_PI = 2.0 * np.pi
# Formants (F1, F2, F3) in Hz of five vowels (/a/, /i/, /u/, /e/, /o/), adult male.
VOWEL_FORMANTS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480],
                           [570, 840, 2410]], float)


def phase_of(freq: np.ndarray, sample_rate: int) -> np.ndarray:
    """Instantaneous phase (wrapped, float32) of a frequency track in Hz."""
    phase = np.cumsum(freq, dtype=np.float64) * (TWO_PI / sample_rate)
    return np.mod(phase, TWO_PI).astype(np.float32)


def harmonics(angle: np.ndarray, max_freq: float, sample_rate: int, count: int, rolloff: float) -> np.ndarray:
    """sum_k rolloff^(k-1) sin(k angle), k=1..count, below 0.45 fs.

    The Chebyshev recurrence sin(k x) = 2 cos(x) sin((k-1) x) - sin((k-2) x) costs one
    multiply-add per harmonic instead of one sine.
    """
    count = max(1, min(count, int(0.45 * sample_rate / max(max_freq, 1.0))))
    s_prev, s_cur = np.zeros_like(angle), np.sin(angle)
    two_cos = 2.0 * np.cos(angle)
    out = s_cur.copy()
    amp = 1.0
    for _ in range(count - 1):
        s_prev, s_cur = s_cur, two_cos * s_cur - s_prev
        amp *= rolloff
        out += np.float32(amp) * s_cur
    return out


def tone(rng: np.random.Generator, freq: np.ndarray, sample_rate: int, count: tuple[int, int],
         rolloff: tuple[float, float]) -> np.ndarray:
    """A harmonic tone along `freq` with a random number of harmonics and rolloff."""
    return harmonics(phase_of(freq, sample_rate), float(freq.max()), sample_rate,
                     int(rng.integers(count[0], count[1] + 1)), rng.uniform(*rolloff))


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def spectral_filter(signal: np.ndarray, sample_rate: int, gain_of_freq) -> np.ndarray:
    """Filter by multiplying the spectrum with ``gain_of_freq(freqs_hz)`` (zero-phase).

    Transforms run at the next FFT-friendly length: event lengths are random, and a
    prime-length FFT is 10-50x slower.
    """
    size = scipy.fft.next_fast_len(len(signal), real=True)
    spectrum = scipy.fft.rfft(signal, n=size)
    spectrum *= gain_of_freq(np.fft.rfftfreq(size, 1.0 / sample_rate)).astype(np.float32)
    return scipy.fft.irfft(spectrum, n=size)[: len(signal)].astype(np.float32, copy=False)


def coloured_noise(rng: np.random.Generator, length: int, slope: float) -> np.ndarray:
    """Unit-RMS noise with power ~ 1/f^slope (0 white, 1 pink, 2 brown), drawn directly
    as a random spectrum (one inverse FFT)."""
    size = scipy.fft.next_fast_len(length, real=True)
    bins = size // 2 + 1
    spectrum = np.empty(bins, dtype=np.complex64)
    spectrum.real = rng.standard_normal(bins, dtype=np.float32)
    spectrum.imag = rng.standard_normal(bins, dtype=np.float32)
    spectrum *= np.exp(np.float32(-slope / 2) * log_bins(bins))
    spectrum[0] = 0.0
    noise = scipy.fft.irfft(spectrum, n=size)[:length].astype(np.float32, copy=False)
    return noise / rms(noise)


def rms(signal: np.ndarray) -> float:
    """Root mean square (in float64), or 1.0 for silence: safe to divide by when levelling."""
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) or 1.0


@functools.lru_cache(maxsize=8)
def log_bins(bins: int) -> np.ndarray:
    """log(k) for spectrum bins k (bin 0 -> 0): the noise colour is a power of k."""
    log_k = np.log(np.maximum(np.arange(bins, dtype=np.float32), 1.0))
    log_k.flags.writeable = False
    return log_k


def pulse_train(rng: np.random.Generator, freq: np.ndarray, sample_rate: int) -> np.ndarray:
    """Unit impulses once per period of a (time-varying) frequency track."""
    cycles = np.cumsum(freq, dtype=np.float64) / sample_rate
    pulses = np.zeros(len(freq), dtype=np.float32)
    pulses[1:][np.diff(np.floor(cycles)) > 0] = 1.0
    pulses[0] = 1.0
    return pulses


def time_axis(length: int, sample_rate: int) -> np.ndarray:
    return np.arange(length, dtype=np.float32) / np.float32(sample_rate)


def time_varying_filter(signal: np.ndarray, sample_rate: int, gain_of, hop: int = 128) -> np.ndarray:
    """Filter whose response changes over time: ``gain_of(freqs_hz, times_s)`` (called with
    a [bins, 1] and a [1, frames] array) gives a [bins, frames] magnitude applied frame by frame in a short-time Fourier transform
    (Hann, 4x overlap, overlap-added back). Wind, moving formants and wandering
    resonances need this; a fixed spectral_filter cannot express them."""
    import scipy.signal

    window = 4 * hop
    length = len(signal)
    if length < window:
        signal = np.pad(signal, (0, window - length))
    freqs, times, spectrum = scipy.signal.stft(signal, fs=sample_rate, window="hann", nperseg=window,
                                               noverlap=window - hop, boundary="even")
    spectrum *= np.asarray(gain_of(freqs[:, None], times[None, :]), dtype=np.float32)
    _, out = scipy.signal.istft(spectrum, fs=sample_rate, window="hann", nperseg=window, noverlap=window - hop,
                                boundary=True)
    out = np.asarray(out[:length], dtype=np.float32)
    return np.pad(out, (0, length - len(out))) if len(out) < length else out


def smooth_random_curve(rng: np.random.Generator, length: int, sample_rate: int, rate_hz: float) -> np.ndarray:
    """A smooth random curve in about [-1, 1] that changes `rate_hz` times a second:
    random knots joined by cosine interpolation. For gusts, pitch drift and swells."""
    knots = max(2, int(np.ceil(length / sample_rate * rate_hz)) + 2)
    values = rng.uniform(-1.0, 1.0, knots)
    position = np.linspace(0.0, knots - 1.0 - 1e-9, length)
    index = position.astype(np.int64)
    frac = (0.5 - 0.5 * np.cos(np.pi * (position - index))).astype(np.float32)
    return (values[index] * (1 - frac) + values[index + 1] * frac).astype(np.float32)


def add_at(out: np.ndarray, start: int, kernel: np.ndarray) -> None:
    """``out[start:start+len(kernel)] += kernel``, clipped to the ends of `out`."""
    start = int(start)
    if start >= len(out) or start + len(kernel) <= 0:
        return
    lo, hi = max(0, start), min(len(out), start + len(kernel))
    out[lo:hi] += kernel[lo - start : hi - start]


def decay(length: int, time_constant: float) -> np.ndarray:
    """exp(-n / time_constant) for n = 0..length-1 (time_constant in samples)."""
    return np.exp(-np.arange(length, dtype=np.float32) / np.float32(max(time_constant, 1e-3)))


def poisson_onsets(rng: np.random.Generator, length: int, sample_rate: int, rate_hz: float) -> np.ndarray:
    """Sample indices of a Poisson process of `rate_hz` events a second over `length`."""
    count = int(rng.poisson(rate_hz * length / sample_rate))
    return np.sort(rng.integers(0, max(1, length), count))
