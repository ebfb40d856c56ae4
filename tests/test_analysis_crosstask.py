"""The summary across tasks (analysis.crosstask) against hand-computed cases, and in every
output format of a report."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pandas as pd
import pytest

from analysis import build_report, render
from analysis.crosstask import (
    cross_task,
    iqm,
    mean_over_tasks,
    mean_ranks,
    percentile_interval,
    probability_of_improvement,
    replicate_iqms,
    replicate_means,
    stratified_replicates,
    task_metrics,
)
from analysis.runs import Axis
from analysis.tables import CONTROL_ROW


def frame(values: dict[str, dict[str, list[float | None]]]) -> pd.DataFrame:
    """A load_runs-shaped frame: values[row][metric] = per-seed scores (None: not logged)."""
    lines, t = [], 0
    for label, metrics in values.items():
        n = max(len(v) for v in metrics.values())
        for seed in range(n):
            t += 1
            line = {"run_id": f"r{t}", "status": "FINISHED", "start_time": pd.Timestamp(t, unit="s"), "seed": seed,
                    "axis.model": label, "units": "points"}
            if label == CONTROL_ROW:
                line.update({"axis.model": None, "role": "control"})
            for metric, per_seed in metrics.items():
                line[f"metrics.{metric}"] = per_seed[seed] if seed < len(per_seed) else None
            lines.append(line)
    runs = pd.DataFrame(lines)
    runs["seed"] = runs["seed"].astype("Int64")
    rows = tuple(label for label in values if label != CONTROL_ROW)
    runs.attrs.update(axes=[Axis("model", rows)], experiment="x", uri="sqlite:///x")
    return runs


ESC, US8K, GTZAN = "eval/esc50/acc", "eval/us8k/acc", "eval/gtzan/acc"


def test_iqm_mean_and_probability_of_improvement_by_hand():
    scores = [np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])]
    # 8 pooled scores, floor(0.25 * 8) = 2 cut from each end: mean of 3, 4, 10, 20
    assert iqm(scores) == pytest.approx(9.25)
    assert mean_over_tasks(scores) == pytest.approx((2.5 + 25) / 2)
    # 6 scores: floor(1.5) = 1 cut from each end
    assert iqm([np.array([0.0, 5, 6]), np.array([7.0, 8, 100])]) == pytest.approx((5 + 6 + 7 + 8) / 4)
    # task 1: A = 1, 2, 3 vs B = 2, 2, 0: wins 1 + (1 + 2 * 0.5) + 3 = 6 of 9 pairs;
    # task 2: A = 5 vs B = 5, 6: a tie and a loss = 0.5 of 2 pairs
    a, b = [np.array([1.0, 2, 3]), np.array([5.0])], [np.array([2.0, 2, 0]), np.array([5.0, 6])]
    assert probability_of_improvement(a, b) == pytest.approx((6 / 9 + 0.25) / 2)
    assert probability_of_improvement(b, a) == pytest.approx(1 - (6 / 9 + 0.25) / 2)


def test_mean_rank_averages_ties_and_tasks():
    means = pd.DataFrame({"t1": [3.0, 2.0, 1.0], "t2": [1.0, 2.0, 2.0]}, index=["x", "y", "z"])
    # t1: x 1, y 2, z 3; t2: y and z tie for 1st/2nd -> 1.5 each, x 3
    assert mean_ranks(means).to_dict() == {"x": 2.0, "y": 1.75, "z": 2.25}


def test_bootstrap_is_stratified_by_task():
    """Every seed of task 1 scores 10 and of task 2 scores 50: resampling seeds within each
    task can never change the mean over tasks (30); pooling the tasks would."""
    scores = [np.full(3, 10.0), np.full(3, 50.0)]
    replicates = stratified_replicates(scores, 2000, np.random.default_rng(0))
    assert [r.shape for r in replicates] == [(2000, 3), (2000, 3)]
    assert np.all(replicate_means(replicates) == 30.0)
    assert percentile_interval(replicate_iqms(replicates), 0.95) == (30.0, 30.0)


def test_bootstrap_on_a_fixed_seed_follows_the_documented_draws():
    """The replicates of row R: default_rng([seed, crc32(R)]), per task integers(0, n, (reps, n))."""
    runs = frame({"a": {ESC: [10.0, 20, 60], US8K: [30.0, 40]}, "b": {ESC: [1.0, 2, 3], US8K: [4.0, 5]}})
    reps = 5
    summary = cross_task(runs, [ESC, US8K], "a", reps=reps, level=0.5, random_state=7)
    rng = np.random.default_rng([7, zlib.crc32(b"a")])
    esc = [[[10.0, 20, 60][i] for i in draw] for draw in rng.integers(0, 3, size=(reps, 3)).tolist()]
    us8k = [[[30.0, 40][i] for i in draw] for draw in rng.integers(0, 2, size=(reps, 2)).tolist()]
    by_hand = sorted((sum(e) / 3 + sum(u) / 2) / 2 for e, u in zip(esc, us8k))
    # the 25th and 75th percentiles of 5 sorted values are the 2nd and the 4th
    assert summary.summary.at["a", "mean_low"] == pytest.approx(by_hand[1])
    assert summary.summary.at["a", "mean_high"] == pytest.approx(by_hand[3])
    assert summary.summary.at["a", "mean"] == pytest.approx((30 + 35) / 2)


def test_bootstrap_spread_matches_the_analytic_bootstrap_variance():
    """Resampling n seeds of a task with replacement gives its mean a variance of
    var(ddof=0) / n; the mean over T tasks: sum of those / T^2."""
    scores = [np.array([0.0, 10.0]), np.array([0.0, 10.0, 20.0, 50.0])]
    means = replicate_means(stratified_replicates(scores, 40_000, np.random.default_rng(1)))
    expected = (np.var(scores[0]) / 2 + np.var(scores[1]) / 4) / 4
    assert means.var() == pytest.approx(expected, rel=0.03)
    assert means.mean() == pytest.approx(mean_over_tasks(scores), abs=0.1)


def test_task_metrics_one_headline_score_per_task():
    metrics = ["eval/esc50/f1", "eval/esc50/acc", "eval/audioset/map", "eval/esc50/acc_std", "train/loss",
               "eval/suite/general_audio/mean", "eval/us8k/acc"]
    assert task_metrics(metrics) == ["eval/esc50/acc", "eval/audioset/map", "eval/us8k/acc"]


def test_rows_lacking_a_task_are_left_out_control_is_not_ranked():
    runs = frame({
        "small": {ESC: [50.0, 52, 54], US8K: [60.0, 61, 62], GTZAN: [40.0, 42, 41]},
        "base": {ESC: [55.0, 57, 53], US8K: [66.0, 64, 65], GTZAN: [50.0, 49, 51]},
        "huge": {ESC: [70.0, 71, 72], US8K: [None, None, None], GTZAN: [60.0, 60, 61]},
        CONTROL_ROW: {ESC: [20.0, 21, 22], US8K: [30.0, 31, 29], GTZAN: [10.0, 11, 12]},
    })
    summary = cross_task(runs, [ESC, US8K, GTZAN], "small", reps=500)
    assert list(summary.summary.index) == ["small", "base", CONTROL_ROW]
    assert summary.left_out == {"huge": [US8K]}
    ranks = summary.summary["mean_rank"]
    assert ranks["base"] == 1.0 and ranks["small"] == 2.0 and np.isnan(ranks[CONTROL_ROW])
    assert summary.summary.at["base", "p_beats_ref"] == pytest.approx((8 / 9 + 1 + 1) / 3)
    assert summary.improvement.at["small", CONTROL_ROW] == 1.0 and np.isnan(summary.improvement.at["small", "small"])
    low, high = summary.summary.loc["base", ["mean_low", "mean_high"]]
    assert low <= summary.summary.at["base", "mean"] <= high


def test_a_rows_numbers_do_not_move_when_another_row_is_added():
    two = {"a": {ESC: [50.0, 55, 52], US8K: [60.0, 63, 61]}, "b": {ESC: [51.0, 56, 50], US8K: [59.0, 64, 66]}}
    three = {**two, "c": {ESC: [10.0, 11, 12], US8K: [13.0, 14, 15]}}
    first = cross_task(frame(two), [ESC, US8K], "a", reps=300).summary
    second = cross_task(frame(three), [ESC, US8K], "a", reps=300).summary
    columns = ["mean", "mean_low", "mean_high", "iqm", "iqm_low", "iqm_high", "p_beats_ref", "p_low", "p_high"]
    pd.testing.assert_frame_equal(first.loc[["a", "b"], columns], second.loc[["a", "b"], columns])


def test_every_output_format_shows_the_summary_under_the_per_task_table():
    runs = frame({"tiny": {ESC: [50.0, 52, 54], US8K: [60.0, 61, 62]},
                  "small": {ESC: [55.0, 57, 53], US8K: [66.0, 64, 65]},
                  "base": {ESC: [58.0, 59, 60], US8K: [67.0, 66, 70]}})
    report = build_report(runs)
    markdown = render(report, "md")
    per_task, across, matrix = (markdown.index(t) for t in ("| tiny", "### Across tasks (esc50 acc, us8k acc)",
                                                           "### P(row beats column)"))
    assert per_task < across < matrix
    summary_line = next(line for line in markdown[across:].splitlines() if line.startswith("| base"))
    assert "**63.33**" in summary_line and "**1.00**" in summary_line  # best mean and rank
    latex = render(report, "latex")
    assert latex.count("\\begin{table}") == 2 and "across tasks (esc50 acc, us8k acc)" in latex
    assert "stratified bootstrap" in latex and "×" not in latex
    csv = pd.read_csv(io.StringIO(render(report, "csv"))).set_index("row")
    assert csv.at["base", "across mean"] == pytest.approx((59 + 67.6666667) / 2)
    assert csv.at["base", "across mean_rank"] == 1.0 and csv.at["tiny", "across P(> small)"] == pytest.approx((1 / 9 + 0) / 2)


def test_one_task_has_no_summary():
    runs = frame({"a": {ESC: [50.0, 52]}, "b": {ESC: [51.0, 53]}})
    report = build_report(runs)
    assert report.cross_task is None and "Across tasks" not in render(report, "md")
    assert "across mean" not in render(report, "csv")
