"""Paired comparisons over seeds: is a row's difference to the reference row real or noise?

Trials of different rows that share a seed share their data order, initialisation and
mask stream, so seed-to-seed variation largely cancels in the per-seed difference
``row(seed) - reference(seed)``. We therefore test those differences (a paired t-test,
``scipy.stats.ttest_rel``) rather than comparing two means with unpaired error bars,
which would call many real +0.3 gains noise.

* n = number of seeds both rows finished with the metric. Below ``min_pairs`` (2) there
  is nothing to test and the verdict says so.
* A table compares several rows to one reference, so by default the p-values of one
  metric are Holm-adjusted across its rows before the verdict (``correction="none"``
  to turn that off); both raw and adjusted p are returned.
* A percentile bootstrap CI of the mean difference is added when n >= ``min_bootstrap``
  (5): with fewer seeds the bootstrap distribution has only a handful of distinct values
  and its interval is far too narrow.
* With per-clip ``predictions`` (:func:`analysis.clips.load_predictions`) every accuracy
  metric also gets the clip-level test of :mod:`analysis.clips` (``p_clips``: exact
  sign-flip test with test clips as the unit, conditional on the trained seeds; its own Holm
  adjustment across rows) and a seeds x clips bootstrap interval of the difference.
* The control row (:data:`analysis.tables.CONTROL_ROW`) is compared only when it is the
  reference (``Δ vs control``); otherwise its verdict is "control" and it stays out of
  the Holm family, so adding controls does not weaken the other comparisons.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from analysis.clips import clip_comparison, clip_pairs, task_of
from analysis.runs import FINISHED, METRIC_PREFIX, Axis
from analysis.tables import CONTROL_ROW, ROW, axes_of, find_row, latest_attempts, metric_mode, metric_names, table_rows

REFERENCE = "reference"
CONTROL = "control"
TOO_FEW = "too few pairs"
BETTER, WORSE, NOT_SIGNIFICANT = "better", "worse", "n.s."
NO_VARIANCE, IDENTICAL = "no variance", "identical"
NO_CLIPS = "no clips"

COLUMNS = ["row", "metric", "reference", "n_pairs", "diff_mean", "diff_std", "ci_low", "ci_high",
           "boot_low", "boot_high", "t_stat", "p_value", "p_adjusted", "verdict",
           "n_clips", "n_scored", "clip_diff", "clip_low", "clip_high", "clip_mde", "p_clips", "p_clips_adjusted",
           "verdict_clips"]
CLIP_TEST = "exact sign-flip test over test clips (McNemar for one seed), conditional on the seeds"


def seed_values(runs: pd.DataFrame, metric: str, axes: list[Axis] | None = None) -> pd.DataFrame:
    """Finished values of one metric as a (row label x seed) frame; NaN where none."""
    axes = axes_of(runs, axes)
    trials = latest_attempts(runs, axes)
    col = METRIC_PREFIX + metric
    rows = table_rows(runs, axes)
    if trials.empty or col not in trials:
        return pd.DataFrame(index=pd.Index(rows, name=ROW))
    done = trials[(trials["status"] == FINISHED) & trials["seed"].notna() & trials[col].notna()]
    wide = done.pivot_table(index=ROW, columns="seed", values=col, aggfunc="last")
    return wide.reindex(rows)


def paired_differences(runs: pd.DataFrame, metric: str, reference: str | None = None,
                       axes: list[Axis] | None = None) -> pd.DataFrame:
    """Per-seed differences to the reference row: columns row, seed, value, reference_value, diff."""
    values = seed_values(runs, metric, axes)
    ref = find_row(values.index, reference) if reference is not None else values.index[0]
    out = []
    reference_values = values.loc[ref]
    for row in values.index:
        for seed, v in values.loc[row].items():
            r = reference_values[seed]
            if pd.isna(v) or pd.isna(r):
                continue
            v, r = float(v), float(r)
            out.append({"row": row, "seed": int(seed), "value": v, "reference_value": r, "diff": v - r})
    return pd.DataFrame(out, columns=["row", "seed", "value", "reference_value", "diff"])


def paired_comparison(runs: pd.DataFrame, metrics: list[str] | None = None, reference: str | None = None,
                      axes: list[Axis] | None = None, alpha: float = 0.05, correction: str = "holm",
                      min_pairs: int = 2, min_bootstrap: int = 5, n_boot: int = 10_000,
                      random_state: int = 0, predictions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every row vs the reference row (default: the sweep's first row), per metric.

    Returns one line per (row, metric) with the columns in :data:`COLUMNS`; ``attrs``
    hold reference, alpha, correction, test, clip_test. ``predictions``: per-clip test
    outcomes (:func:`analysis.clips.load_predictions`) for the clip-level columns of
    ``eval/<task>/acc`` metrics; without them (or for other metrics) those columns are NaN.
    Clip differences are in the metric's unit (points for the metrics
    :func:`analysis.tables.as_points` lists in ``attrs["points"]`` / ``attrs["in_points"]``).
    """
    axes = axes_of(runs, axes)
    metrics = metric_names(runs, metrics)
    rng = np.random.default_rng(random_state)
    clip_rng = np.random.default_rng([random_state, 1])  # its own stream: the seed-level numbers stay put
    lines = []
    ref_label = None
    points = set(runs.attrs.get("points", [])) | set(runs.attrs.get("in_points", []))
    for metric in metrics:
        diffs = paired_differences(runs, metric, reference, axes)
        values = seed_values(runs, metric, axes)
        ref_label = find_row(values.index, reference) if reference is not None else values.index[0]
        task = task_of(metric)
        clip_data = None
        if predictions is not None and task is not None and not predictions.empty:
            clip_data = predictions[predictions["task"] == task]
            clip_data = clip_data if len(clip_data) else None
        block = []
        for row in values.index:
            d = diffs.loc[diffs["row"] == row, "diff"].to_numpy(dtype=float)
            excluded = row == CONTROL_ROW and ref_label != CONTROL_ROW
            line = _test(d[:0] if excluded else d, row == ref_label, min_pairs, min_bootstrap, n_boot, rng)
            if excluded:
                line["_state"] = CONTROL
            line.update(_clip_line(clip_data, task, row, ref_label, excluded, 100.0 if metric in points else 1.0,
                                   n_boot, clip_rng))
            block.append({"row": row, "metric": metric, "reference": ref_label, **line})
        _adjust(block, correction)
        _adjust(block, correction, "p_clips", "p_clips_adjusted")
        for line in block:
            line["verdict_clips"] = _clip_verdict(line, alpha, metric_mode(metric))
            line["verdict"] = _verdict(line, alpha, metric_mode(metric))
        lines += block
    frame = pd.DataFrame(lines, columns=COLUMNS)
    frame.attrs.update(reference=ref_label, alpha=alpha, correction=correction, test="paired t-test (scipy.stats.ttest_rel)",
                       clip_test=CLIP_TEST, min_pairs=min_pairs, min_bootstrap=min_bootstrap,
                       clips=predictions is not None and not predictions.empty)
    return frame


def _clip_line(clip_data: pd.DataFrame | None, task: str | None, row: str, reference: str, excluded: bool,
               scale: float, n_boot: int, rng) -> dict:
    line = dict(n_clips=0, n_scored=0, clip_diff=np.nan, clip_low=np.nan, clip_high=np.nan, clip_mde=np.nan,
                p_clips=np.nan, p_clips_adjusted=np.nan, _clip_state=None)
    if row == reference:
        line["_clip_state"] = REFERENCE
    elif excluded:
        line["_clip_state"] = CONTROL
    elif clip_data is None:
        line["_clip_state"] = NO_CLIPS
    else:
        pairs = clip_pairs(clip_data, task, row, reference)
        if len(pairs) == 0:
            line["_clip_state"] = NO_CLIPS
        else:
            result = clip_comparison(pairs, n_boot, rng)
            line.update(n_clips=result["n_clips"], n_scored=result["n_scored"], clip_diff=scale * result["diff"],
                        clip_low=scale * result["low"], clip_high=scale * result["high"],
                        clip_mde=scale * result["mde"], p_clips=result["p"])
            if result["p"] >= 1.0 and result["diff"] == 0 and _no_discordance(pairs):
                line["_clip_state"] = IDENTICAL
    return line


def _no_discordance(pairs: pd.DataFrame) -> bool:
    return bool((pairs["a"] == pairs["b"]).all())


def _clip_verdict(line: dict, alpha: float, mode: str) -> str:
    state = line.pop("_clip_state")
    if state is not None:
        return state
    if line["p_clips_adjusted"] < alpha:
        return BETTER if (line["clip_diff"] > 0) == (mode == "max") else WORSE
    return NOT_SIGNIFICANT


def _test(d: np.ndarray, is_reference: bool, min_pairs: int, min_bootstrap: int, n_boot: int, rng) -> dict:
    n = len(d)
    line = dict(n_pairs=n, diff_mean=float(d.mean()) if n else np.nan,
                diff_std=float(d.std(ddof=1)) if n > 1 else np.nan,
                ci_low=np.nan, ci_high=np.nan, boot_low=np.nan, boot_high=np.nan,
                t_stat=np.nan, p_value=np.nan, p_adjusted=np.nan, _state=None)
    if is_reference:
        line["_state"] = REFERENCE
    elif n < max(min_pairs, 2):
        line["_state"] = TOO_FEW
    elif np.allclose(d, d[0], rtol=0, atol=1e-12):
        line["_state"] = IDENTICAL if abs(d[0]) <= 1e-12 else NO_VARIANCE
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_1samp(d, 0.0)  # == ttest_rel(row, reference) on the pairs
        half = stats.t.ppf(0.975, n - 1) * line["diff_std"] / np.sqrt(n)
        line.update(t_stat=float(result.statistic), p_value=float(result.pvalue),
                    ci_low=line["diff_mean"] - half, ci_high=line["diff_mean"] + half)
        if n >= min_bootstrap:
            means = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
            line["boot_low"], line["boot_high"] = (float(q) for q in np.quantile(means, [0.025, 0.975]))
    return line


def _adjust(block: list[dict], correction: str, key: str = "p_value", out: str = "p_adjusted") -> None:
    """Holm step-down adjustment over the tested rows of one metric (``key`` -> ``out``)."""
    tested = [line for line in block if not np.isnan(line[key])]
    if correction == "none":
        for line in tested:
            line[out] = line[key]
        return
    if correction != "holm":
        raise ValueError(f"correction must be 'holm' or 'none', got {correction!r}")
    m, running = len(tested), 0.0
    for rank, line in enumerate(sorted(tested, key=lambda row: row[key])):
        running = max(running, min(1.0, (m - rank) * line[key]))
        line[out] = running


def _verdict(line: dict, alpha: float, mode: str) -> str:
    state = line.pop("_state")
    if state == TOO_FEW:
        return f"{TOO_FEW} (n={line['n_pairs']})"
    if state is not None:
        return state
    if line["p_adjusted"] < alpha:
        return BETTER if (line["diff_mean"] > 0) == (mode == "max") else WORSE
    return NOT_SIGNIFICANT
