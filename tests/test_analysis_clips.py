"""The clip-level paired test (analysis.clips) on constructed cases: a known difference, identical
rows, agreement with exact McNemar and with brute-force enumeration, and its type-I rate under a
null where the two rows are exchangeable on every clip but clips differ in difficulty across seeds."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.clips import (
    clip_comparison,
    clip_pairs,
    detectable_difference,
    sign_flip_pvalue,
    sign_flip_test,
    two_way_bootstrap,
)


def pairs_from(a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    """``a``, ``b``: [seeds, clips] 0/1 outcomes of two rows on the same clips."""
    seeds, clips = a.shape
    return pd.DataFrame({"seed": np.repeat(np.arange(seeds), clips), "fold": "1",
                         "clip": np.tile([f"c{i}" for i in range(clips)], seeds),
                         "a": a.ravel().astype(int), "b": b.ravel().astype(int)})


def exactly(share: float, clips: int, rng) -> np.ndarray:
    """0/1 over ``clips`` with exactly round(share * clips) ones, in random places."""
    out = np.zeros(clips, dtype=int)
    out[rng.choice(clips, int(round(share * clips)), replace=False)] = 1
    return out


def test_seventy_versus_fifty_percent_over_three_seeds_and_200_clips_is_significant():
    rng = np.random.default_rng(0)
    a = np.stack([exactly(0.7, 200, rng) for _ in range(3)])
    b = np.stack([exactly(0.5, 200, rng) for _ in range(3)])
    line = clip_comparison(pairs_from(a, b), n_boot=2000)
    assert line["n_seeds"] == 3 and line["n_clips"] == 200 and line["n_scored"] == 600
    assert line["diff"] == pytest.approx(0.2)
    assert line["p"] < 0.01
    assert 0 < line["low"] < 0.2 < line["high"]
    reverse = sign_flip_test(pairs_from(b, a))
    assert reverse["diff"] == pytest.approx(-0.2) and reverse["p"] == pytest.approx(line["p"])


def test_identical_rows_have_p_one_and_a_zero_interval():
    rng = np.random.default_rng(1)
    a = np.stack([exactly(0.6, 200, rng) for _ in range(3)])
    line = clip_comparison(pairs_from(a, a), n_boot=500)
    assert line["p"] == 1.0 and line["diff"] == 0.0 and (line["low"], line["high"]) == (0.0, 0.0)


def test_small_difference_is_not_significant():
    rng = np.random.default_rng(2)
    base = np.stack([exactly(0.6, 200, rng) for _ in range(3)])
    other = base.copy()
    other[0, np.flatnonzero(base[0] == 0)[:3]] = 1  # 3 more clips right in one seed: +0.5 points
    assert sign_flip_test(pairs_from(other, base))["p"] > 0.2


def test_one_seed_is_exact_mcnemar():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, size=(1, 150)), rng.integers(0, 2, size=(1, 150))
    discordant_a = int(((a == 1) & (b == 0)).sum())
    discordant_b = int(((a == 0) & (b == 1)).sum())
    expected = stats.binomtest(discordant_a, discordant_a + discordant_b, 0.5).pvalue
    assert sign_flip_test(pairs_from(a, b))["p"] == pytest.approx(expected, rel=1e-9)


def test_exact_distribution_matches_enumeration():
    rng = np.random.default_rng(4)
    for _ in range(25):
        m = rng.integers(-3, 4, size=int(rng.integers(1, 11)))
        observed = abs(int(m.sum()))
        flips = np.array(list(itertools.product([-1, 1], repeat=m.size)))
        brute = float(np.mean(np.abs(flips @ np.abs(m)) >= observed))
        assert sign_flip_pvalue(m) == pytest.approx(brute, abs=1e-12)


def test_a_clip_is_one_unit_across_seeds():
    """The same clips in every seed: 20 clips that one row wins in all 3 seeds, 10 the other
    wins: as 60 vs 30 independent discordant pairs that would be p ~ 0.002; as 20 vs 10
    clips it is p ~ 0.1, which is what the test must say."""
    a = np.zeros((3, 100), dtype=int)
    b = np.zeros((3, 100), dtype=int)
    a[:, :20] = 1
    b[:, 20:30] = 1
    p = sign_flip_test(pairs_from(a, b))["p"]
    assert p == pytest.approx(stats.binomtest(20, 30, 0.5).pvalue)
    assert stats.binomtest(60, 90, 0.5).pvalue < 0.01 < 0.05 < p


def test_pairs_join_on_seed_fold_and_clip_and_ignore_unshared_clips():
    predictions = pd.DataFrame({
        "row": ["A", "A", "A", "B", "B", "B", "A"], "task": "t", "seed": [0, 0, 1, 0, 0, 2, 0],
        "fold": ["1", "1", "1", "1", "2", "1", "1"], "clip": ["x", "y", "x", "x", "y", "x", "z"],
        "correct": [1, 0, 1, 0, 1, 1, 1],
    })
    pairs = clip_pairs(predictions, "t", "A", "B")
    assert pairs[["seed", "fold", "clip", "a", "b"]].values.tolist() == [[0, "1", "x", 1, 0]]


def test_type_one_error_rate_on_a_null_simulation():
    """Rows exchangeable in distribution: clip difficulty shared by both rows, plus a row x clip
    effect shared by the seeds (each row finds its own clips easy, in every seed), plus seed
    noise. At alpha = 0.05 the exact test may be conservative (discreteness) but must not
    reject much more than 5 % of the time; pooling every (seed, clip) pair as independent
    McNemar evidence does (measured on 1000 draws: 4.3 % vs 8.7 %)."""
    rng = np.random.default_rng(5)
    reps, seeds, clips = 300, 3, 200
    rejections = naive = 0
    for _ in range(reps):
        difficulty = rng.beta(2, 2, size=clips)
        skill_a = difficulty + rng.normal(0, 0.25, size=clips)
        skill_b = difficulty + rng.normal(0, 0.25, size=clips)
        a = rng.random((seeds, clips)) < np.clip(skill_a + rng.normal(0, 0.1, size=(seeds, clips)), 0, 1)
        b = rng.random((seeds, clips)) < np.clip(skill_b + rng.normal(0, 0.1, size=(seeds, clips)), 0, 1)
        rejections += sign_flip_test(pairs_from(a, b))["p"] < 0.05
        wins, losses = int((a & ~b).sum()), int((~a & b).sum())
        naive += stats.binomtest(wins, wins + losses, 0.5).pvalue < 0.05
    rate = rejections / reps
    assert 0.015 <= rate <= 0.08, rate
    assert naive / reps > rate  # the clip, not the (seed, clip) pair, is the unit


def test_bootstrap_interval_grows_with_seed_to_seed_disagreement():
    rng = np.random.default_rng(6)
    base = np.stack([exactly(0.6, 200, rng) for _ in range(3)])
    steady = np.stack([exactly(0.7, 200, rng) for _ in range(3)])
    swinging = np.stack([exactly(share, 200, rng) for share in (0.5, 0.7, 0.9)])
    narrow = two_way_bootstrap(pairs_from(steady, base), 2000)
    wide = two_way_bootstrap(pairs_from(swinging, base), 2000)
    assert (wide[1] - wide[0]) > 1.5 * (narrow[1] - narrow[0])


def test_detectable_difference_by_hand_and_its_power_on_a_simulation():
    # 100 clips, one seed, 30 disagreeing clips: sqrt(sum m^2) = sqrt(30); 2.8016 * 5.477 / 100
    m = np.array([1] * 20 + [-1] * 10 + [0] * 70)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert detectable_difference(m, 100) == pytest.approx(z * np.sqrt(30) / 100)
    assert np.isnan(detectable_difference(np.zeros(5, dtype=int), 5))
    # Rows that disagree on 30 % of 400 clips, B right half the time it disagrees, A right
    # on a share that makes the true difference the detectable one: about 80 % rejections.
    rng = np.random.default_rng(3)
    n, disagree = 400, 0.3
    mde = z * np.sqrt(disagree * n) / n
    p_a = 0.5 + mde / (2 * disagree)  # P(A right | disagree) giving E[a - b] = mde
    rejections = 0
    for _ in range(400):
        differs = rng.random(n) < disagree
        a_right = rng.random(n) < p_a
        m = np.where(differs, np.where(a_right, 1, -1), 0)
        rejections += sign_flip_pvalue(m) < 0.05
    assert 0.72 < rejections / 400 < 0.88
