"""The log-mel frontend against a hand computation, crop/pad, normalisation stats."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ajepa.audio.features import (
    Frontend,
    NormStatsError,
    fbank_settings,
    frames_for_samples,
    resolve_norm_stats,
    write_norm_stats,
)
from ajepa.config import NORM_PRESETS, FrontendConfig

RATE = 16000


def sine(freq: float, seconds: float, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE), dtype=torch.float64) / RATE
    return (amplitude * torch.sin(2 * math.pi * freq * t)).float()


def hand_log_mel_frame(frame: np.ndarray, num_mel_bins: int = 128) -> np.ndarray:
    """Kaldi's fbank for one 25 ms frame written out in numpy (htk_compat, hanning window,
    pre-emphasis 0.97, 512-point FFT power, triangular mel filters on 20 Hz..Nyquist, log)."""
    x = frame.astype(np.float64)
    x = x - x.mean()
    x = np.concatenate([[x[0] - 0.97 * x[0]], x[1:] - 0.97 * x[:-1]])
    n = len(x)
    x = x * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1)))
    power = np.abs(np.fft.rfft(x, 512)) ** 2
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    low, high = mel(20.0), mel(RATE / 2)
    delta = (high - low) / (num_mel_bins + 1)
    bin_mel = mel(np.arange(256) * RATE / 512)
    energies = np.empty(num_mel_bins)
    for m in range(num_mel_bins):
        left, centre, right = low + m * delta, low + (m + 1) * delta, low + (m + 2) * delta
        up = (bin_mel - left) / (centre - left)
        down = (right - bin_mel) / (right - centre)
        weights = np.where((bin_mel > left) & (bin_mel < right), np.minimum(up, down), 0.0)
        energies[m] = weights @ power[:256]
    return np.log(np.maximum(energies, np.finfo(np.float32).eps))


def test_log_mel_matches_a_hand_computation():
    wave = sine(1000, 0.2) + 0.05 * torch.randn(3200, generator=torch.Generator().manual_seed(0))
    frontend = Frontend(FrontendConfig(), RATE, None)
    spec = frontend.log_mel(wave)
    assert spec.shape == (128, frames_for_samples(3200, RATE, 25, 10)) == (128, 18)
    centred = (wave - wave.mean()).numpy()
    for frame in (0, 7):
        expected = hand_log_mel_frame(centred[frame * 160 : frame * 160 + 400])
        np.testing.assert_allclose(spec[:, frame].numpy(), expected, atol=2e-3, rtol=1e-4)


def test_row_zero_is_the_lowest_band():
    frontend = Frontend(FrontendConfig(), RATE, None)
    low = frontend.log_mel(sine(200, 0.3)).mean(dim=1).argmax()
    high = frontend.log_mel(sine(4000, 0.3)).mean(dim=1).argmax()
    assert low < high


def test_output_is_normalised_padded_and_shaped():
    cfg = FrontendConfig(target_frames=128, norm="fixed", norm_mean=-5.0, norm_std=2.5)
    frontend = Frontend(cfg, RATE, resolve_norm_stats(cfg))
    wave = sine(700, 1.0)
    out = frontend(wave)
    assert out.shape == (1, 128, 128) and out.dtype == torch.float32
    raw = frontend.log_mel(wave)
    frames = raw.shape[1]
    assert frames == 98
    np.testing.assert_allclose(out[0, :, :frames].numpy(), ((raw + 5.0) / 5.0).numpy(), rtol=1e-6, atol=1e-6)
    # AST convention: zeros appended to the un-normalised log-mel, then normalised.
    assert torch.allclose(out[0, :, frames:], torch.full((128, 128 - frames), 5.0 / 5.0))


def test_centre_crop_for_eval_and_seeded_random_crop_for_training():
    frontend = Frontend(FrontendConfig(target_frames=32), RATE, None)
    spec = torch.arange(100, dtype=torch.float32).repeat(4, 1)  # [F=4, T=100], value = frame index
    centre = frontend.fit_frames(spec, train=False)
    assert centre.shape == (4, 32) and centre[0, 0] == 34
    starts = {int(frontend.fit_frames(spec, True, torch.Generator().manual_seed(s))[0, 0]) for s in range(40)}
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 68
    a = frontend.fit_frames(spec, True, torch.Generator().manual_seed(3))
    b = frontend.fit_frames(spec, True, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(frontend.fit_frames(spec[:, :32], True), spec[:, :32])


def test_too_short_waves_still_give_one_frame():
    frontend = Frontend(FrontendConfig(target_frames=16), RATE, None)
    assert frontend(torch.ones(100)).shape == (1, 128, 16)


def test_norm_presets_fixed_and_none():
    assert resolve_norm_stats(FrontendConfig(norm="preset", norm_preset="esc50")) == NORM_PRESETS["esc50"]
    assert resolve_norm_stats(FrontendConfig(norm="none")) is None
    assert resolve_norm_stats(FrontendConfig(norm="fixed", norm_mean=1.0, norm_std=2.0)) == (1.0, 2.0)


def test_dataset_norm_reads_stats_json_and_names_the_fix(tmp_path):
    cfg = FrontendConfig(norm="dataset")
    with pytest.raises(NormStatsError, match=rf"{tmp_path}/stats.json.*ajepa-stats CONFIG"):
        resolve_norm_stats(cfg, tmp_path)
    write_norm_stats(tmp_path, -3.5, 4.25, fbank_settings(cfg, RATE), num_clips=7)
    assert resolve_norm_stats(cfg, tmp_path, RATE) == (-3.5, 4.25)
    assert json.loads((tmp_path / "stats.json").read_text())["num_clips"] == 7
    other = FrontendConfig(norm="dataset", num_mel_bins=64)
    with pytest.raises(NormStatsError, match="num_mel_bins: file 128 vs config 64"):
        resolve_norm_stats(other, tmp_path, RATE)
    with pytest.raises(NormStatsError, match="sample_rate"):
        resolve_norm_stats(cfg, tmp_path, 8000)


def test_corrupt_stats_file_is_reported(tmp_path):
    (tmp_path / "stats.json").write_text('{"mean": 1.0}')
    with pytest.raises(NormStatsError, match="not a valid stats file"):
        resolve_norm_stats(FrontendConfig(norm="dataset"), tmp_path)


def test_frontend_runs_single_threaded_and_restores_the_thread_count():
    seen = []
    frontend = Frontend(FrontendConfig(target_frames=16), RATE, None)
    original_log_mel = Frontend.log_mel

    def spy(self, wave):
        seen.append(torch.get_num_threads())
        return original_log_mel(self, wave)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        Frontend.log_mel = spy
        frontend(sine(440, 0.1))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        Frontend.log_mel = original_log_mel
        torch.set_num_threads(before)
