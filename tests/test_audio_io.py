"""Decoding: mono downmix, resampling, slices, and errors that name the file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from ajepa.audio.io import AudioError, check_audio_file, load_audio, prepare_wave


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * math.pi * freq * t)).astype(np.float32)


def test_mono_file_is_read_unchanged_at_its_own_rate(tmp_path):
    wave = tone(440, 0.25, 16000)
    soundfile.write(tmp_path / "a.wav", wave, 16000, subtype="FLOAT")
    out = load_audio(tmp_path / "a.wav", 16000)
    assert out.dtype == torch.float32 and out.shape == (4000,)
    np.testing.assert_allclose(out.numpy(), wave, atol=1e-7)


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = tone(440, 0.1, 16000), tone(1000, 0.1, 16000)
    soundfile.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    out = load_audio(tmp_path / "s.wav", 16000)
    assert out.ndim == 1
    np.testing.assert_allclose(out.numpy(), (left + right) / 2, atol=1e-6)


def test_resampling_keeps_duration_and_pitch(tmp_path):
    soundfile.write(tmp_path / "r.wav", tone(1000, 0.5, 44100), 44100, subtype="PCM_16")
    out = load_audio(tmp_path / "r.wav", 16000).numpy()
    assert out.shape == (8000,)
    spectrum = np.abs(np.fft.rfft(out))
    peak_hz = np.argmax(spectrum) * 16000 / len(out)
    assert abs(peak_hz - 1000) <= 4


def test_slice_reads_only_the_requested_window(tmp_path):
    wave = np.arange(16000, dtype=np.float32) / 16000
    soundfile.write(tmp_path / "ramp.wav", wave, 16000, subtype="FLOAT")
    out = load_audio(tmp_path / "ramp.wav", 16000, start_seconds=0.25, duration_seconds=0.5)
    assert out.shape == (8000,)
    np.testing.assert_allclose(out.numpy(), wave[4000:12000], atol=1e-7)


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: file not found"):
        load_audio(tmp_path / "nope.wav", 16000)
    with pytest.raises(AudioError, match="file not found"):
        check_audio_file(tmp_path / "nope.wav")


def test_garbage_file_is_unreadable(tmp_path):
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"RIFF not really a wave file" * 10)
    for call in (lambda: load_audio(bad, 16000), lambda: check_audio_file(bad)):
        with pytest.raises(AudioError, match=r"garbage\.wav: unreadable audio"):
            call()


def test_empty_file_is_rejected(tmp_path):
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav: empty audio"):
        load_audio(tmp_path / "empty.wav", 16000)
    with pytest.raises(AudioError, match=r"empty\.wav: empty audio"):
        check_audio_file(tmp_path / "empty.wav")


def test_non_finite_samples_are_rejected(tmp_path):
    wave = tone(440, 0.1, 16000)
    wave[10] = np.nan
    soundfile.write(tmp_path / "nan.wav", wave, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: non-finite audio \(1 NaN/inf"):
        load_audio(tmp_path / "nan.wav", 16000)
    with pytest.raises(AudioError, match="non-finite"):
        check_audio_file(tmp_path / "nan.wav")


def test_good_file_passes_the_cheap_check(tmp_path):
    soundfile.write(tmp_path / "ok.flac", tone(440, 0.2, 16000), 16000)
    check_audio_file(tmp_path / "ok.flac")


def test_prepare_wave_checks_in_memory_arrays():
    with pytest.raises(AudioError, match=r"clip7: non-finite"):
        prepare_wave(np.array([0.0, np.inf]), 16000, 16000, source="clip7")
    assert prepare_wave(np.ones((10, 2)), 16000, 16000).shape == (10,)
