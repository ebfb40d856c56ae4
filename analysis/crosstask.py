"""Across tasks: is a row better on the whole suite, not just on one task?

A design study scores every trial on several tasks (the general-audio suite); the table
has one column per task. This module summarises each row over all of them with the
statistics Agarwal et al. 2021 ("Deep reinforcement learning at the edge of the
statistical precipice", NeurIPS; their library rliable is archived, so this is a
reimplementation) recommend when there are few seeds and several tasks:

* **mean over tasks** -- each task's mean over seeds, averaged with equal task weights
  (what EVAR and Riou et al. call the average score);
* **mean rank** -- each task ranks the sweep's rows by their mean (1 = best; tied rows
  share the average rank), averaged over tasks; one task with a wide score range cannot
  dominate it. The control row (the encoder at initialisation) is not ranked, so adding
  controls does not shift the sweep's ranks;
* **IQM** -- the interquartile mean of every (task, seed) score of the row: the mean of
  what remains after cutting floor(25 % of n) scores from each end
  (``scipy.stats.trim_mean(x, 0.25)``, rliable's definition); robust to one outlying task
  or seed, and less noisy than the median;
* **stratified bootstrap CIs** of the mean and the IQM: each replicate resamples the seeds
  with replacement *within each task* (the tasks are strata and are never mixed), rliable's
  ``StratifiedBootstrap``; percentile interval at ``level``;
* **P(A > B)**, the probability of improvement -- per task the Mann-Whitney statistic
  P(X > Y) + ½ P(X = Y) over the seeds X of row A and Y of row B, averaged over tasks; its
  CI resamples A's and B's seeds within each task, independently.

Scores are in the table's units (points). Only "higher is better" headline metrics are
tasks (one per task: acc, else mAP, else F1); a row lacking any task is left out of the
summary and named, since its mean would be over other tasks than the rest.

The bootstrap is reproducible and its numbers do not move when rows are added: the
replicates of row R come from ``numpy.random.default_rng([random_state, crc32(R)])``,
which draws, task by task in the summary's task order, one ``integers(0, n_t, (reps, n_t))``
index array (n_t = R's seeds on task t); the mean and the IQM share those replicates. P(A > B)
uses ``default_rng([random_state, crc32(A), crc32(B)])``, drawing per task A's index
array, then B's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis.runs import Axis
from analysis.stats import seed_values
from analysis.tables import CONTROL_ROW, metric_mode

TASK_METRIC_PREFERENCE = ("acc", "map", "f1")  # a task's main score, first present wins
COLUMNS = ["n_tasks", "n_scores", "mean", "mean_low", "mean_high", "mean_rank", "iqm", "iqm_low", "iqm_high",
           "p_beats_ref", "p_low", "p_high"]
IQM_CUT = 0.25


@dataclass
class CrossTask:
    """The cross-task summary of one table: ``summary`` (one line per summarised row, the
    columns of :data:`COLUMNS`), ``improvement`` (P(index row beats column row), point
    estimates), the ``tasks`` (metrics) it is over and the rows ``left_out`` (row -> the
    tasks it lacks)."""

    tasks: list[str]
    summary: pd.DataFrame
    improvement: pd.DataFrame
    reference: str
    reps: int
    level: float
    left_out: dict[str, list[str]] = field(default_factory=dict)


def task_metrics(metrics: list[str]) -> list[str]:
    """The metrics that are tasks: ``eval/<task>/<acc|map|f1>``, higher is better, one per
    task (acc before mAP before F1), in the order the tasks first appear."""
    best: dict[str, tuple[int, str]] = {}
    for metric in metrics:
        parts = metric.split("/")
        if len(parts) != 3 or parts[0] != "eval" or parts[2] not in TASK_METRIC_PREFERENCE:
            continue
        if metric_mode(metric) != "max":
            continue
        rank = TASK_METRIC_PREFERENCE.index(parts[2])
        if parts[1] not in best or rank < best[parts[1]][0]:
            best[parts[1]] = (rank, metric)
    return [metric for _, metric in best.values()]


# --------------------------------------------------------------------------- statistics on score lists
# ``scores`` is one 1-D array per task: that row's seed scores on the task (strata, ragged).


def mean_over_tasks(scores: list[np.ndarray]) -> float:
    """Each task's mean over its seeds, averaged over tasks (equal task weights)."""
    return float(np.mean([s.mean() for s in scores]))


def iqm(scores: list[np.ndarray]) -> float:
    """Interquartile mean of every (task, seed) score pooled: floor(25 % of n) cut from each end."""
    return float(stats.trim_mean(np.concatenate(scores), IQM_CUT))


def probability_of_improvement(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """P(A > B): per task P(X > Y) + ½ P(X = Y) over all seed pairs, averaged over tasks."""
    return float(np.mean([_mann_whitney(x[None, :], y[None, :])[0] for x, y in zip(a, b)]))


def mean_ranks(means: pd.DataFrame) -> pd.Series:
    """``means``: rows x tasks. Per task rank 1 = highest mean, ties averaged; mean over tasks."""
    ranks = means.apply(lambda column: pd.Series(stats.rankdata(-column.to_numpy(float), method="average"),
                                                  index=column.index))
    return ranks.mean(axis=1)


def stratified_replicates(scores: list[np.ndarray], reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``reps`` stratified bootstrap replicates: per task (in order) a (reps, n_t) array of
    that task's scores resampled with replacement; tasks are never mixed."""
    return [s[rng.integers(0, len(s), size=(reps, len(s)))] for s in scores]


def replicate_means(replicates: list[np.ndarray]) -> np.ndarray:
    return np.mean([r.mean(axis=1) for r in replicates], axis=0)


def replicate_iqms(replicates: list[np.ndarray]) -> np.ndarray:
    return stats.trim_mean(np.concatenate(replicates, axis=1), IQM_CUT, axis=1)


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def improvement_interval(a: list[np.ndarray], b: list[np.ndarray], reps: int, level: float,
                         rng: np.random.Generator) -> tuple[float, float]:
    """Stratified bootstrap CI of P(A > B): per task, A's seeds then B's, resampled independently."""
    per_task = []
    for x, y in zip(a, b):
        xs = x[rng.integers(0, len(x), size=(reps, len(x)))]
        ys = y[rng.integers(0, len(y), size=(reps, len(y)))]
        per_task.append(_mann_whitney(xs, ys))
    return percentile_interval(np.mean(per_task, axis=0), level)


def _mann_whitney(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise P(X > Y) + ½ P(X = Y) for (k, nx) and (k, ny) samples."""
    diff = x[:, :, None] - y[:, None, :]
    return (diff > 0).mean(axis=(1, 2)) + 0.5 * (diff == 0).mean(axis=(1, 2))


def _rng(random_state: int, *rows: str) -> np.random.Generator:
    return np.random.default_rng([random_state, *(zlib.crc32(r.encode()) for r in rows)])


# --------------------------------------------------------------------------- the summary of a table


def row_scores(runs: pd.DataFrame, tasks: list[str], axes: list[Axis] | None = None
               ) -> tuple[dict[str, list[np.ndarray]], dict[str, list[str]], list[str]]:
    """Per row, its finished seed scores on every task; rows lacking a task go to ``left_out``
    (row -> lacking tasks). Also returns every row label in table order."""
    per_task = {metric: seed_values(runs, metric, axes) for metric in tasks}
    rows = list(next(iter(per_task.values())).index)
    scores, left_out = {}, {}
    for row in rows:
        values = {m: frame.loc[row].dropna().to_numpy(float) if row in frame.index else np.array([])
                  for m, frame in per_task.items()}
        lacking = [m for m, v in values.items() if v.size == 0]
        if lacking:
            left_out[row] = lacking
        else:
            scores[row] = [values[m] for m in tasks]
    return scores, left_out, rows


def cross_task(runs: pd.DataFrame, metrics: list[str], reference: str, axes: list[Axis] | None = None,
               reps: int = 10_000, level: float = 0.95, random_state: int = 0) -> CrossTask | None:
    """The cross-task summary of the table built from ``runs`` over ``metrics`` (the table's
    columns; the tasks are :func:`task_metrics` of them). None when fewer than two tasks or
    no row has them all."""
    tasks = task_metrics(metrics)
    if len(tasks) < 2:
        return None
    scores, left_out, _ = row_scores(runs, tasks, axes)
    if not scores:
        return None
    rows = list(scores)
    means = pd.DataFrame({m: [scores[r][i].mean() for r in rows] for i, m in enumerate(tasks)}, index=rows)
    ranked = [r for r in rows if r != CONTROL_ROW]
    ranks = mean_ranks(means.loc[ranked]) if ranked else pd.Series(dtype=float)
    lines = []
    for row in rows:
        replicates = stratified_replicates(scores[row], reps, _rng(random_state, row))
        line = {"n_tasks": len(tasks), "n_scores": int(sum(len(s) for s in scores[row])),
                "mean": mean_over_tasks(scores[row]), "mean_rank": ranks.get(row, np.nan),
                "iqm": iqm(scores[row])}
        line["mean_low"], line["mean_high"] = percentile_interval(replicate_means(replicates), level)
        line["iqm_low"], line["iqm_high"] = percentile_interval(replicate_iqms(replicates), level)
        if reference in scores and row != reference:
            line["p_beats_ref"] = probability_of_improvement(scores[row], scores[reference])
            line["p_low"], line["p_high"] = improvement_interval(scores[row], scores[reference], reps, level,
                                                                 _rng(random_state, row, reference))
        else:
            line["p_beats_ref"] = line["p_low"] = line["p_high"] = np.nan
        lines.append(line)
    summary = pd.DataFrame(lines, index=pd.Index(rows, name="row"), columns=COLUMNS)
    improvement = pd.DataFrame(
        [[np.nan if a == b else probability_of_improvement(scores[a], scores[b]) for b in rows] for a in rows],
        index=pd.Index(rows, name="row"), columns=rows)
    return CrossTask(tasks=tasks, summary=summary, improvement=improvement, reference=reference, reps=reps,
                     level=level, left_out=left_out)


def method_note(summary: CrossTask) -> str:
    """One sentence saying how the cross-task numbers were computed (every output format ends with it)."""
    level = f"{summary.level:.0%}"
    return (f"across {len(summary.tasks)} tasks (scores = the row's task × seed scores): mean = each task's "
            f"mean over seeds, averaged over tasks; "
            f"rank = mean over tasks of the row's rank by mean (1 = best; control not ranked); IQM = "
            f"interquartile mean of all task × seed scores; {level} CIs: stratified bootstrap (seeds resampled "
            f"within each task, {summary.reps} replicates, percentile); P(> ref) = probability of improvement "
            f"over the reference row {summary.reference!r} (Mann-Whitney over seed pairs, mean over tasks), "
            f"Agarwal et al. 2021.")
