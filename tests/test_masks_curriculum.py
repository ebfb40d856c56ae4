"""Curriculum functions p(t) and the easy/hard mixing (ajepa.masks.curriculum)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ajepa.config import CurriculumMask, CurriculumSchedule, RandomMask, TimeMask
from ajepa.masks import build_mask_sampler, curriculum_probability

KINDS = ["constant", "linear", "root", "power", "exponential", "cosine", "step"]
T = np.linspace(0.0, 1.0, 201)


def test_root_is_the_competence_function():
    schedule = CurriculumSchedule(kind="root", c0=0.01)
    for t in (0.0, 0.1, 0.25, 0.5, 0.9):
        assert curriculum_probability(schedule, t) == pytest.approx(min(1, math.sqrt(t * (1 - 0.01**2) + 0.01**2)))
    assert curriculum_probability(schedule, 1.0) == pytest.approx(1.0)


def test_named_shapes():
    p = lambda **kw: curriculum_probability(CurriculumSchedule(**kw), T)  # noqa: E731
    assert np.allclose(p(kind="linear", c0=0.1), 0.1 + 0.9 * T)
    assert np.allclose(p(kind="power", power=2.0), p(kind="root"))
    assert np.allclose(p(kind="power", power=1.0, c0=0.2), p(kind="linear", c0=0.2))
    assert np.allclose(p(kind="exponential", c0=0.01), 0.01 ** (1 - T))
    assert np.allclose(p(kind="cosine", c0=0.0), (1 - np.cos(np.pi * T)) / 2)
    assert np.allclose(p(kind="constant", value=0.3), 0.3)
    steps = p(kind="step", c0=0.0, steps=[0.25, 0.5, 0.75])
    assert steps[T < 0.25].max() == 0 and np.allclose(steps[(T >= 0.5) & (T < 0.75)], 2 / 3) and steps[-1] == 1
    # a larger root degree rises faster early on
    assert (p(kind="power", power=5.0)[1:100] > p(kind="root")[1:100]).all()
    assert (p(kind="power", power=0.5)[1:100] < p(kind="linear", c0=0.01)[1:100]).all()


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS), c0=st.floats(0.001, 0.9), power=st.floats(0.2, 8.0),
       end=st.floats(0.1, 1.0), value=st.floats(0.0, 1.0))
def test_every_schedule_is_a_probability_rising_to_one_at_end(kind, c0, power, end, value):
    schedule = CurriculumSchedule(kind=kind, c0=c0, power=power, end=end, value=value, steps=[0.3, 0.6])
    p = curriculum_probability(schedule, T)
    assert ((p >= 0) & (p <= 1)).all()
    assert (np.diff(p) >= -1e-12).all(), "p(t) never decreases"
    if kind == "constant":
        assert np.allclose(p, value)
    else:
        assert p[0] == pytest.approx(c0)
        assert np.allclose(p[T >= end], 1.0)


def test_schedule_validation():
    with pytest.raises(ValidationError, match="exponential"):
        CurriculumSchedule(kind="exponential", c0=0.0)
    with pytest.raises(ValidationError, match="increasing"):
        CurriculumSchedule(kind="step", steps=[0.6, 0.3])


def hard_share(cfg: CurriculumMask, progress: float, batches: int, batch: int, seed: int = 0) -> tuple[float, np.ndarray]:
    sampler = build_mask_sampler(cfg, (8, 32))
    generator = torch.Generator().manual_seed(seed)
    flags = [sampler.sample_batch(generator, batch, progress).hard for _ in range(batches)]
    return float(np.mean(flags)), np.array(flags)


@pytest.mark.parametrize("kind", ["root", "linear", "exponential", "cosine"])
@pytest.mark.parametrize("t", [0.05, 0.3, 0.7])
def test_share_of_hard_masks_matches_p_per_sample(kind, t):
    """Binomial test: |share - p| within 4.5 standard errors (false alarm rate < 1e-5)."""
    cfg = CurriculumMask(easy=RandomMask(), hard=TimeMask(), schedule=CurriculumSchedule(kind=kind))
    n = 60 * 64
    share, _ = hard_share(cfg, t, 60, 64)
    p = curriculum_probability(cfg.schedule, t)
    assert abs(share - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-9, (share, p)


def test_share_of_hard_masks_per_batch_is_all_or_nothing():
    cfg = CurriculumMask(easy=RandomMask(), hard=TimeMask(), per="batch",
                         schedule=CurriculumSchedule(kind="linear", c0=0.0))
    share, flags = hard_share(cfg, 0.4, 400, 4)
    assert ((flags.sum(1) == 0) | (flags.sum(1) == 4)).all()
    assert abs(share - 0.4) <= 4.5 * math.sqrt(0.4 * 0.6 / 400)


def test_any_two_strategies_pair_and_hard_samples_use_the_hard_one():
    """random (easy) + time (hard): exactly the hard samples consist of whole columns."""
    cfg = CurriculumMask(easy=RandomMask(ratio=0.5), hard=TimeMask(ratio=0.5), schedule=CurriculumSchedule(kind="constant"))
    sampler = build_mask_sampler(cfg, (8, 32))
    batch = sampler.sample_batch(torch.Generator().manual_seed(0), 64, 0.5)
    assert 0 < batch.hard.sum() < 64
    whole_columns = [(m.reshape(8, 32).any(0) == m.reshape(8, 32).all(0)).all() for m in batch.block_masks().any(1)]
    assert np.array_equal(np.array(whole_columns), batch.hard)


def test_defaults_pair_multiblock_with_tf():
    sampler = build_mask_sampler(CurriculumMask(), (8, 64))
    assert (sampler.easy.name, sampler.hard.name) == ("multiblock", "tf")
    start = sampler.sample_batch(torch.Generator().manual_seed(0), 256, 0.0).hard.mean()
    end = sampler.sample_batch(torch.Generator().manual_seed(0), 256, 1.0).hard.mean()
    assert start < 0.05 and end == 1.0
