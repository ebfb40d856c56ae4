"""The built-in synthetic set: deterministic, balanced, stratified, cached, not trivial."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ajepa.audio.features import Frontend
from ajepa.config import FrontendConfig, SyntheticConfig
from ajepa.data.synthetic import (
    CLASS_NAMES,
    EVENT_CLASS_NAMES,
    SPLITS,
    generate_synthetic,
    load_synthetic,
    render_clip,
    synthetic_folder,
)

RATE = 16000


@pytest.fixture(scope="module")
def small_set():
    return generate_synthetic(SyntheticConfig(num_clips=240, seed=3), RATE, 1.0)


def test_at_least_ten_distinct_classes_balanced(small_set):
    assert len(CLASS_NAMES) >= 10 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert small_set.class_names == EVENT_CLASS_NAMES == CLASS_NAMES[:12]  # the default: 12 classes
    assert np.bincount(small_set.labels).tolist() == [20] * 12
    assert small_set.waves.shape == (240, RATE) and small_set.waves.dtype == np.int16


def test_same_seed_same_clips_other_seed_other_clips(small_set):
    again = generate_synthetic(SyntheticConfig(num_clips=240, seed=3), RATE, 1.0)
    other = generate_synthetic(SyntheticConfig(num_clips=240, seed=4), RATE, 1.0)
    assert np.array_equal(small_set.waves, again.waves)
    assert np.array_equal(small_set.labels, again.labels)
    assert np.array_equal(small_set.split_codes, again.split_codes)
    assert not np.array_equal(small_set.waves, other.waves)


def test_splits_are_stratified_disjoint_and_cover_the_set(small_set):
    parts = [set(small_set.indices(s).tolist()) for s in SPLITS]
    assert set().union(*parts) == set(range(240)) and sum(map(len, parts)) == 240
    for split, expected in zip(SPLITS, (14, 3, 3)):  # 70/15/15 of 20 clips per class
        counts = np.bincount(small_set.labels[small_set.indices(split)], minlength=12)
        assert counts.tolist() == [expected] * 12, split


def test_clips_are_finite_audible_and_vary_within_a_class():
    clips = [render_clip(5, np.random.default_rng([0, i]), RATE, RATE) for i in range(3)]
    for clip in clips:
        assert np.isfinite(clip).all() and 0.05 < np.abs(clip).max() <= 0.9
    assert not np.allclose(clips[0], clips[1])


def test_every_class_renders_at_other_sample_rates():
    for label in range(len(CLASS_NAMES)):
        clip = render_clip(label, np.random.default_rng(label), 8000, 4000)
        assert clip.shape == (4000,) and np.isfinite(clip).all()


def test_fewer_classes_option():
    data = generate_synthetic(SyntheticConfig(num_clips=20, num_classes=4), RATE, 0.5)
    assert data.class_names == CLASS_NAMES[:4] and set(data.labels.tolist()) == {0, 1, 2, 3}


def test_texture_classes_extend_the_set_without_changing_the_first_twelve():
    from pydantic import ValidationError

    data = generate_synthetic(SyntheticConfig(num_clips=48, num_classes=24, seed=3), RATE, 0.5)
    assert data.class_names == CLASS_NAMES and len(CLASS_NAMES) == 24
    assert np.bincount(data.labels).tolist() == [2] * 24
    assert "rain" in CLASS_NAMES[12:] and "footsteps" in CLASS_NAMES[12:]
    # render_clip's default vocabulary is still the twelve event classes (its distractors come from them)
    clip = render_clip(3, np.random.default_rng([9, 9]), RATE, RATE)
    assert np.array_equal(clip, render_clip(3, np.random.default_rng([9, 9]), RATE, RATE, num_classes=12))
    with pytest.raises(ValidationError, match="num_classes"):
        SyntheticConfig(num_classes=25)


def test_silence_option_gives_events_in_digital_silence_and_leaves_other_sets_alone(tmp_path):
    silent = generate_synthetic(SyntheticConfig(num_clips=24, seed=5, silence_prob=1.0), RATE, 2.0)
    noisy = generate_synthetic(SyntheticConfig(num_clips=24, seed=5), RATE, 2.0)
    zero_share = lambda waves: float(np.mean(np.asarray(waves) == 0))  # noqa: E731
    assert zero_share(silent.waves) > 0.1 and zero_share(noisy.waves) < 0.01
    assert all(np.abs(w).max() > 1000 for w in silent.waves)  # every clip still holds its event
    assert np.array_equal(silent.labels, noisy.labels)
    # the option is part of the cache key only when it is used: older keys stay valid
    base = SyntheticConfig(num_clips=24, seed=5)
    assert synthetic_folder(base, RATE, 2.0, tmp_path) == synthetic_folder(
        SyntheticConfig(num_clips=24, seed=5, silence_prob=0.0), RATE, 2.0, tmp_path)
    assert synthetic_folder(base, RATE, 2.0, tmp_path) != synthetic_folder(
        SyntheticConfig(num_clips=24, seed=5, silence_prob=0.5), RATE, 2.0, tmp_path)


def test_cache_is_reused_and_keyed_by_parameters(tmp_path):
    cfg = SyntheticConfig(num_clips=24, seed=1)
    first = load_synthetic(cfg, RATE, 0.5, tmp_path)
    folder = synthetic_folder(cfg, RATE, 0.5, tmp_path)
    assert (folder / "waves.npy").is_file() and first.folder == folder
    cached = load_synthetic(cfg, RATE, 0.5, tmp_path)
    assert isinstance(cached.waves, np.memmap)
    assert np.array_equal(np.asarray(cached.waves), first.waves)
    assert synthetic_folder(cfg, RATE, 0.6, tmp_path) != folder
    assert synthetic_folder(SyntheticConfig(num_clips=24, seed=2), RATE, 0.5, tmp_path) != folder
    uncached = load_synthetic(SyntheticConfig(num_clips=24, seed=1, cache=False), RATE, 0.5, tmp_path / "x")
    assert not (tmp_path / "x").exists() and np.array_equal(uncached.waves, first.waves)


def test_mean_spectrum_probe_is_above_chance_but_far_from_perfect(small_set):
    """The set must separate encoders: a mean-pooled log-mel already beats chance, and
    still leaves most of the way to 100 % for time-frequency structure (up vs down chirps)."""
    from sklearn.linear_model import LogisticRegression

    frontend = Frontend(FrontendConfig(), RATE, (-4.27, 4.57))
    features = np.stack([frontend.log_mel(torch.from_numpy(w / 32767.0)).mean(dim=1).numpy()
                         for w in small_set.waves.astype(np.float32)])
    train, test = small_set.split_codes != 2, small_set.split_codes == 2
    probe = LogisticRegression(max_iter=2000).fit((features[train] + 4.27) / 9.1, small_set.labels[train])
    accuracy = (probe.predict((features[test] + 4.27) / 9.1) == small_set.labels[test]).mean()
    assert 2 / 12 < accuracy < 0.85


def test_every_texture_event_is_audible_even_when_short():
    from ajepa.data.synthetic import _GENERATORS

    for label in range(12, len(CLASS_NAMES)):
        for i in range(20):  # the shortest events _place_event makes: 0.25 s
            event = _GENERATORS[label](np.random.default_rng([label, i]), RATE // 4, RATE)
            assert event.shape == (RATE // 4,) and np.isfinite(event).all()
            assert np.sqrt(np.mean(event.astype(np.float64) ** 2)) > 1e-6, (CLASS_NAMES[label], i)
