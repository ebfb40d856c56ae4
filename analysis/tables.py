"""Trials -> the ablation table: one row per axis combination, mean ± std over seeds per metric.

Rows follow the sweep's own order (axis labels as the spec lists them, first axis
slowest), never an alphabetical one, so the table reads like the paper's. Every row the
sweep promises is present even when its trials failed or have not run yet: a partly
finished sweep shows what is missing instead of quietly shrinking.

Only FINISHED trials contribute numbers. A seed tried twice (a retry) counts once: its
latest finished attempt.

Control trials (MLflow ``ajepa.role=control``: the encoder at initialisation, probed like
the trials, one per seed) form one more row, :data:`CONTROL_ROW`, after the sweep's rows.
It is never the best row and never part of the comparisons to the reference row; the
report compares every row to it instead (``Δ vs control``).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd

from ajepa.contracts import CONTROL_LABEL, POINT_METRICS, UNITS_POINTS
from analysis.labels import join_labels, label_key
from analysis.runs import (
    AXIS_PREFIX,
    FAILED_STATES,
    FINISHED,
    METRIC_PREFIX,
    ROLE_CONTROL,
    RUNNING_STATES,
    STOPPED_STATES,
    Axis,
)

ROW = "row"
TRIALS = "trials"
CONTROL_ROW = CONTROL_LABEL  # the row of the control trials (ajepa.role=control)
_SUMMARY_METRICS = ("acc", "map", "f1")          # default columns: headline metrics, not fold/std detail
_POINT_METRICS = POINT_METRICS                    # scores the paper reports in points (x100)
_LOWER_IS_BETTER = re.compile(r"(loss|err|_std$|^std$)")


def axes_of(runs: pd.DataFrame, axes: list[Axis] | None = None) -> list[Axis]:
    """The sweep's axes: given, else from load_runs' attrs, else from the frame's axis columns."""
    if axes:
        return list(axes)
    if runs.attrs.get("axes"):
        return list(runs.attrs["axes"])
    return [Axis(c[len(AXIS_PREFIX):], tuple(dict.fromkeys(runs[c].dropna().astype(str))))
            for c in runs.columns if c.startswith(AXIS_PREFIX)]


def is_control(runs: pd.DataFrame) -> pd.Series:
    """Which runs are control trials (``role`` column "control"; frames without it have none)."""
    if "role" not in runs:
        return pd.Series(False, index=runs.index)
    return runs["role"].eq(ROLE_CONTROL).fillna(False).astype(bool)


def has_control(runs: pd.DataFrame) -> bool:
    """The table gets a control row: control runs are present, or the sweep run says it has them."""
    return bool(runs.attrs.get("control")) or bool(is_control(runs).any())


def row_labels(runs: pd.DataFrame, axes: list[Axis]) -> pd.Series:
    """Each trial's row label ("0.7 / smooth L1"); a trial lacking an axis tag gets "?";
    a control trial :data:`CONTROL_ROW`."""
    if not axes:
        labels = pd.Series("all", index=runs.index, name=ROW, dtype=object)
    else:
        parts = [runs[a.column].fillna("?").astype(str) if a.column in runs else pd.Series("?", index=runs.index)
                 for a in axes]
        labels = pd.Series([join_labels(p) for p in zip(*parts)], index=runs.index, name=ROW, dtype=object)
    return labels.mask(is_control(runs), CONTROL_ROW)


def row_order(runs: pd.DataFrame, axes: list[Axis]) -> list[tuple[str, ...]]:
    """Axis combinations in sweep order, then any combination seen in runs but not in the spec
    (control trials, which have no axis labels, are not combinations)."""
    combos = list(itertools.product(*(a.labels for a in axes))) if axes else [("all",)]
    if axes:
        trials = runs[~is_control(runs)]
        seen = zip(*(trials[a.column].fillna("?").astype(str) if a.column in trials else ["?"] * len(trials)
                     for a in axes))
        combos += [c for c in dict.fromkeys(seen) if c not in set(combos)]
    return combos


def table_rows(runs: pd.DataFrame, axes: list[Axis]) -> list[str]:
    """Row labels in table order: the combinations, then :data:`CONTROL_ROW` if the sweep has one."""
    rows = [join_labels(c) for c in row_order(runs, axes)]
    return rows + ([CONTROL_ROW] if has_control(runs) else [])


def metric_names(runs: pd.DataFrame, metrics: list[str] | None = None) -> list[str]:
    """Table columns: the asked metrics (``eval/`` may be omitted), else every headline eval metric."""
    present = [c[len(METRIC_PREFIX):] for c in runs.columns if c.startswith(METRIC_PREFIX)]
    if metrics:
        resolved = []
        for m in metrics:
            m = m[len(METRIC_PREFIX):] if m.startswith(METRIC_PREFIX) else m
            if m not in present and f"eval/{m}" in present:
                m = f"eval/{m}"
            resolved.append(m)
        return resolved
    return sorted(m for m in present if _is_headline(m))


def _is_headline(metric: str) -> bool:
    parts = metric.split("/")
    return len(parts) == 3 and parts[0] == "eval" and parts[2] in _SUMMARY_METRICS


def metric_mode(metric: str) -> str:
    """"max" for accuracies and mAP, "min" for losses, errors and spreads: decides the best row."""
    return "min" if _LOWER_IS_BETTER.search(metric.split("/")[-1]) else "max"


def metric_display(metric: str) -> str:
    """"eval/esc50/acc" -> "esc50 acc": the task and metric a reader cares about."""
    parts = metric.split("/")
    return " ".join(parts[1:]) if parts[0] == "eval" and len(parts) > 1 else metric


def as_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Every score (acc, mAP, F1, acc_std) in points, the paper's unit and what the sweep logs.

    Runs tagged ``ajepa.units=points`` (column ``units``) already are. Runs without the tag
    (an older version logged fractions) are scaled x100 per task when their headline values
    are all <= 1, so an ``acc_std`` is scaled exactly when its task's ``acc`` is; tasks
    already in points stay. ``attrs["points"]``: the metrics scaled here; ``attrs["in_points"]``:
    every metric now in points (scaled or logged so), which the clip-level test reads.
    """
    runs = runs.copy()
    native = runs["units"].eq(UNITS_POINTS).fillna(False).astype(bool) if "units" in runs else \
        pd.Series(False, index=runs.index)
    legacy = ~native
    by_task: dict[str, list[str]] = {}
    for col in runs.columns:
        parts = col[len(METRIC_PREFIX):].split("/") if col.startswith(METRIC_PREFIX) else []
        if len(parts) >= 3 and parts[0] == "eval" and parts[-1] in _POINT_METRICS:
            by_task.setdefault(parts[1], []).append(col)
    scaled, in_points = [], []
    for cols in by_task.values():
        if native.any():
            in_points += [c[len(METRIC_PREFIX):] for c in cols]
        headline = [c for c in cols if c.split("/")[-1] in _SUMMARY_METRICS]
        values = runs.loc[legacy, headline or cols].to_numpy(dtype=float)
        if legacy.any() and np.isfinite(values).any() and np.nanmax(np.abs(values)) <= 1.0:
            runs[cols] = runs[cols].astype(float)
            runs.loc[legacy, cols] = runs.loc[legacy, cols] * 100
            scaled += [c[len(METRIC_PREFIX):] for c in cols]
            in_points += [c[len(METRIC_PREFIX):] for c in cols]
    runs.attrs["points"] = sorted(set(runs.attrs.get("points", [])) | set(scaled))
    runs.attrs["in_points"] = sorted(set(runs.attrs.get("in_points", [])) | set(in_points) | set(scaled))
    return runs


def latest_attempts(runs: pd.DataFrame, axes: list[Axis]) -> pd.DataFrame:
    """One trial per (row, seed): the latest FINISHED attempt, else the latest attempt."""
    runs = runs.assign(**{ROW: row_labels(runs, axes)})
    if runs.empty:
        return runs
    order = runs.assign(_done=runs["status"].eq(FINISHED)).sort_values(["_done", "start_time"], kind="stable")
    keyed = order.assign(_seed=order["seed"].astype("string").fillna("<no seed>" + order["run_id"]))
    return keyed.drop_duplicates([ROW, "_seed"], keep="last").drop(columns=["_done", "_seed"]).sort_index()


def expected_seeds(runs: pd.DataFrame, seeds=None) -> list[int]:
    """The seeds every row should have: given, else load_runs' attrs, else every seed seen."""
    if seeds is None:
        seeds = runs.attrs.get("seeds")
    if seeds is None:
        seeds = runs["seed"].dropna().unique() if "seed" in runs else []
    return sorted(int(s) for s in seeds)


def ablation_table(runs: pd.DataFrame, metrics: list[str] | None = None, axes: list[Axis] | None = None,
                   seeds=None) -> pd.DataFrame:
    """The ablation table (index: row label in sweep order).

    Columns (a two-level index):
      ("axis", <axis name>)                    the row's label on each axis
      (<metric>, "mean" | "std" | "n" | "best") over finished seeds; std is the sample std
      ("trials", "expected" | "finished" | "running" | "failed" | "stopped" | "missing" | "note")
        stopped = KILLED: early-stopped by the scheduler (ASHA) or cut off by an interrupt
    The last row is :data:`CONTROL_ROW` when the sweep has control trials (its axis cells
    are None, and it is never "best").
    ``attrs``: axes, metrics, modes (metric -> "max"/"min"), control (the label of the
    control row, or None).
    """
    axes = axes_of(runs, axes)
    metrics = metric_names(runs, metrics)
    trials = latest_attempts(runs, axes)
    seeds = expected_seeds(runs, seeds)
    records = []
    combos = row_order(runs, axes) + ([None] if has_control(runs) else [])
    for combo in combos:
        label = CONTROL_ROW if combo is None else join_labels(combo) if axes else "all"
        mine = trials[trials[ROW] == label] if not trials.empty else trials
        finished = mine[mine["status"] == FINISHED] if not mine.empty else mine
        record = {("axis", a.name): (None if combo is None else value)
                  for a, value in zip(axes, combo or [None] * len(axes))}
        for metric in metrics:
            col = METRIC_PREFIX + metric
            values = finished[col].dropna().astype(float) if col in finished else pd.Series(dtype=float)
            record[(metric, "mean")] = values.mean() if len(values) else np.nan
            record[(metric, "std")] = values.std(ddof=1) if len(values) > 1 else np.nan
            record[(metric, "n")] = len(values)
        record.update(_trial_counts(mine, seeds, metrics))
        records.append((label, record))
    table = pd.DataFrame([r for _, r in records], index=pd.Index([label for label, _ in records], name=ROW))
    table.columns = pd.MultiIndex.from_tuples(table.columns) if len(table.columns) else table.columns
    for metric in metrics:
        means = table[(metric, "mean")]
        table[(metric, "best")] = _best_mask(means[means.index != CONTROL_ROW], metric_mode(metric)).reindex(
            table.index, fill_value=False)
    ordered = [("axis", a.name) for a in axes] + [(m, s) for m in metrics for s in ("mean", "std", "n", "best")] + \
              [(TRIALS, s) for s in ("expected", "finished", "running", "failed", "stopped", "missing", "note")]
    table = table.reindex(columns=pd.MultiIndex.from_tuples(ordered))
    table.attrs.update(axes=axes, metrics=metrics, modes={m: metric_mode(m) for m in metrics},
                       points=runs.attrs.get("points", []), in_points=runs.attrs.get("in_points", []),
                       control=CONTROL_ROW if has_control(runs) else None)
    return table


def find_row(table_or_labels, wanted: str) -> str:
    """The row whose label matches ``wanted`` (spacing, case and "70 %" vs "0.7" forgiven)."""
    labels = list(table_or_labels.index if isinstance(table_or_labels, pd.DataFrame) else table_or_labels)
    for label in labels:
        if label == wanted:
            return label
    matches = [label for label in labels if label_key(label) == label_key(wanted)]
    if len(matches) == 1:
        return matches[0]
    raise KeyError(f"no row labelled {wanted!r}; rows are: {labels}")


def _best_mask(means: pd.Series, mode: str) -> pd.Series:
    if means.notna().sum() < 2:
        return pd.Series(False, index=means.index)
    target = means.max() if mode == "max" else means.min()
    return means.eq(target) & means.notna()


def _trial_counts(mine: pd.DataFrame, seeds: list[int], metrics: list[str]) -> dict:
    statuses = dict(zip(mine["seed"], mine["status"])) if not mine.empty else {}
    no_seed = mine[mine["seed"].isna()]["status"].tolist() if not mine.empty else []
    all_seeds = sorted(set(seeds) | {int(s) for s in statuses if pd.notna(s)})
    states = [statuses.get(s) for s in all_seeds] + no_seed
    counts = {
        "expected": len(states),
        "finished": sum(s == FINISHED for s in states),
        "running": sum(s in RUNNING_STATES for s in states),
        "failed": sum(s in FAILED_STATES for s in states),
        "stopped": sum(s in STOPPED_STATES for s in states),
        "missing": sum(s is None for s in states),
    }
    notes = [f"{counts[k]} {k}" for k in ("failed", "stopped", "running", "missing") if counts[k]]
    other = len(states) - sum(counts[k] for k in ("finished", "running", "failed", "stopped", "missing"))
    if other:
        notes.append(f"{other} other status")
    finished = mine[mine["status"] == FINISHED] if not mine.empty else mine
    for metric in metrics:
        col = METRIC_PREFIX + metric
        lacking = int(finished[col].isna().sum()) if col in finished else len(finished)
        if lacking:
            notes.append(f"{lacking} finished without {metric}")
    counts["note"] = "; ".join(notes)
    return {(TRIALS, k): v for k, v in counts.items()}
