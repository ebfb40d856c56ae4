"""MLflow -> pandas: one row per sweep trial, following docs/ARCHITECTURE.md's naming contract.

Everything downstream (tables, stats, plots) works on the DataFrame this module returns,
so MLflow is touched in one place and the rest is testable with plain frames.

Columns of :func:`load_runs`:
    run_id, run_name, role, status, start_time, trial_id, seed, parent_run_id,
    ``axis.<name>`` (the trial's value label per axis), ``params.<dotted key>`` (typed, see
    :mod:`analysis.params`) and ``metrics.<name>`` (the last logged value).
``units`` is "points" for a run that logged its scores (acc, mAP, F1) in points (tag
``ajepa.units``), empty for a run of an older version that logged fractions.
``error`` and ``stop_reason`` hold why a trial FAILED or was KILLED; ``artifact_uri`` is
where its artifacts are (``analysis.clips`` reads the per-clip predictions there). ``role`` is "trial",
or "control" for the sweep's control trials (the encoder at initialisation, one per seed,
no axis labels; ``analysis.tables`` makes them the control row).
``frame.attrs`` carries ``axes`` (list of :class:`Axis`, in sweep order), ``uri``,
``experiment``, ``parent_run_id``, ``control`` (the sweep runs control trials) and, from
the parent run's tags when present, ``seeds``, ``table``, ``metrics`` and ``description``.
:func:`metrics_at_step` swaps the final values for those logged at one pretraining step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import pandas as pd

from ajepa.contracts import (  # the names the sweep writes (docs/ARCHITECTURE.md)
    ROLE_CONTROL,
    ROLE_SWEEP,
    ROLE_TRIAL,
    TAG_AXES,
    TAG_AXIS_PREFIX,
    TAG_CONTROL,
    TAG_ERROR,
    TAG_METRICS,
    TAG_NOTE,
    TAG_PARENT,
    TAG_ROLE,
    TAG_SEED,
    TAG_SEEDS,
    TAG_STOP,
    TAG_TABLE,
    TAG_TRIAL_ID,
    TAG_UNITS,
    UserError,
    local_store_path,
)
from analysis.params import typed_params

if TYPE_CHECKING:  # mlflow is imported lazily: `ajepa-tables --help` and `import analysis` stay fast
    from mlflow.tracking import MlflowClient

AXIS_PREFIX = "axis."
PARAM_PREFIX = "params."
METRIC_PREFIX = "metrics."

FINISHED = "FINISHED"
RUNNING_STATES = ("RUNNING", "SCHEDULED")
FAILED_STATES = ("FAILED",)
STOPPED_STATES = ("KILLED",)  # early-stopped by the scheduler, or cut off by an interrupt


@dataclass(frozen=True)
class Axis:
    """One sweep axis: display name and value labels in the spec's order."""

    name: str
    labels: tuple[str, ...]

    @property
    def column(self) -> str:
        return AXIS_PREFIX + self.name


class RunsNotFound(UserError, LookupError):
    """No store, experiment or trial where we looked; the message says where and what to run."""


def open_client(uri: str, run_hint: str = "ajepa-sweep SPEC.yaml") -> "MlflowClient":
    """An MlflowClient on an existing store. MLflow would create an empty one; we refuse."""
    store = local_store_path(uri)
    if store is not None and not store.exists():
        raise RunsNotFound(
            f"no MLflow store at {store} (tracking URI {uri}). Run the sweep first "
            f"({run_hint}), or point --tracking-uri at the store it wrote."
        )
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def load_runs(uri: str, experiment: str, parent: str = "latest", seeds: Iterable[int] | None = None,
              axes: Iterable[Axis] | None = None, run_hint: str | None = None) -> pd.DataFrame:
    """Trials of a sweep as a DataFrame (see module docstring).

    parent: "latest" = the children of the most recent sweep run (a re-launched sweep makes
    a new parent; its predecessor's trials would otherwise mix in); "all" = every trial
    in the experiment; or a parent run id. Without any sweep run, every trial is used.
    seeds / axes: what the spec expects (used for "missing" counts and row order when
    the parent run carries no ``ajepa.axes`` tag).
    run_hint: the command that would create the runs, for error messages.
    """
    run_hint = run_hint or f"ajepa-sweep sweeps/{experiment}.yaml"
    client = open_client(uri, run_hint)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise RunsNotFound(
            f"experiment {experiment!r} not found in {uri} (it has: {', '.join(names) or 'none'}). "
            f"Run the sweep first ({run_hint}) or check tracking.experiment/--tracking-uri."
        )
    all_runs = search_all_runs(client, found.experiment_id)
    sweep_runs = [r for r in all_runs if r.data.tags.get(TAG_ROLE) == ROLE_SWEEP]
    trials = [r for r in all_runs if r.data.tags.get(TAG_ROLE) in (ROLE_TRIAL, ROLE_CONTROL)]
    chosen_parent = _choose_parent(sweep_runs, parent)
    if chosen_parent is not None:
        trials = [r for r in trials if r.data.tags.get(TAG_PARENT) == chosen_parent.info.run_id]
    if not trials and chosen_parent is None:
        raise RunsNotFound(
            f"experiment {experiment!r} in {uri} has no trial runs (tag {TAG_ROLE}={ROLE_TRIAL}); "
            "has the sweep started?"
        )
    axes_list = _axes_from_parent(chosen_parent) or list(axes or []) or _axes_from_trials(
        [r for r in trials if r.data.tags.get(TAG_ROLE) == ROLE_TRIAL])
    frame = _frame([_trial_row(r, axes_list) for r in trials], _base_columns(axes_list))
    frame = frame.sort_values("start_time", kind="stable").reset_index(drop=True)
    frame["seed"] = frame["seed"].astype("Int64")
    frame.attrs.update(
        axes=axes_list, uri=uri, experiment=experiment,
        parent_run_id=chosen_parent.info.run_id if chosen_parent is not None else None,
        **_parent_metadata(chosen_parent),
    )
    frame.attrs["control"] = bool(frame["role"].eq(ROLE_CONTROL).any()) or (
        chosen_parent is not None and chosen_parent.data.tags.get(TAG_CONTROL) == "1")
    if seeds is not None:
        frame.attrs["seeds"] = sorted(set(int(s) for s in seeds))
    return frame


def load_history(runs: pd.DataFrame, key: str = "train/loss", uri: str | None = None) -> pd.DataFrame:
    """Metric history (step, value) of every trial in ``runs``, with its axis labels and seed.

    One MLflow call per run: fine for the tens-to-hundreds of trials a sweep has.
    """
    client = open_client(uri or runs.attrs["uri"])
    axis_cols = [c for c in runs.columns if c.startswith(AXIS_PREFIX)]
    rows = []
    for trial in runs.to_dict("records"):
        for m in client.get_metric_history(trial["run_id"], key):
            rows.append({"run_id": trial["run_id"], "seed": trial["seed"], "status": trial["status"],
                         **{c: trial[c] for c in axis_cols}, "step": m.step, "value": m.value})
    history = pd.DataFrame(rows, columns=["run_id", "seed", "status", *axis_cols, "step", "value"])
    history.attrs.update(runs.attrs, key=key)
    return history


def search_all_runs(client: "MlflowClient", experiment_id: str, filter_string: str = "") -> list:
    """Every run of an experiment that matches ``filter_string``, page after page (MLflow
    returns at most 1000 per call). The sweep driver lists a parent's children with it too."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _choose_parent(sweep_runs: list, parent: str):
    if parent == "all" or not sweep_runs:
        return None
    if parent == "latest":
        return max(sweep_runs, key=lambda r: r.info.start_time or 0)
    for run in sweep_runs:
        if run.info.run_id == parent:
            return run
    raise RunsNotFound(f"no sweep run with id {parent!r}; sweep runs: {[r.info.run_id for r in sweep_runs]}")


def _axes_from_parent(parent) -> list[Axis]:
    if parent is None or TAG_AXES not in parent.data.tags:
        return []
    try:
        spec = json.loads(parent.data.tags[TAG_AXES])
        return [Axis(str(a["name"]), tuple(str(label) for label in a["labels"])) for a in spec]
    except (ValueError, KeyError, TypeError):
        return []


def _parent_metadata(parent) -> dict:
    """Seeds, paper table, metrics and description the sweep run recorded from its spec."""
    tags = parent.data.tags if parent is not None else {}
    meta = {"seeds": None, "table": tags.get(TAG_TABLE), "metrics": None, "description": tags.get(TAG_NOTE)}
    for key, tag in (("seeds", TAG_SEEDS), ("metrics", TAG_METRICS)):
        try:
            value = json.loads(tags[tag]) if tag in tags else None
        except ValueError:
            value = None
        meta[key] = value if isinstance(value, list) else None
    if meta["seeds"] is not None:
        meta["seeds"] = sorted({int(s) for s in meta["seeds"]})
    return meta


def _axes_from_trials(trials: list) -> list[Axis]:
    """Axis order from trial tags when no parent says it: numbers ascending, else first seen."""
    seen: dict[str, list[str]] = {}
    for run in sorted(trials, key=lambda r: r.info.start_time or 0):
        for tag, value in run.data.tags.items():
            if tag.startswith(TAG_AXIS_PREFIX):
                labels = seen.setdefault(tag[len(TAG_AXIS_PREFIX):], [])
                if value not in labels:
                    labels.append(value)
    axes = []
    for name, labels in seen.items():
        try:
            labels = sorted(labels, key=float)
        except ValueError:
            pass
        axes.append(Axis(name, tuple(labels)))
    return axes


def _base_columns(axes: list[Axis]) -> list[str]:
    return ["run_id", "run_name", "role", "status", "start_time", "trial_id", "seed", "parent_run_id", "error",
            "stop_reason", "artifact_uri", "units", *(a.column for a in axes)]


def _frame(rows: list[dict], base: list[str]) -> pd.DataFrame:
    """Rows -> frame with the base columns first (present even with no trials), then params, metrics."""
    frame = pd.DataFrame(rows)
    extra = sorted(c for c in frame.columns if c not in base)
    return frame.reindex(columns=base + extra)


def _trial_row(run, axes: list[Axis]) -> dict:
    tags, data = run.data.tags, run.data
    params = typed_params(data.params)
    seed = tags.get(TAG_SEED, data.params.get("seed"))
    row = {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "role": tags.get(TAG_ROLE, ROLE_TRIAL),
        "status": run.info.status,
        "start_time": pd.to_datetime(run.info.start_time, unit="ms") if run.info.start_time else pd.NaT,
        "trial_id": tags.get(TAG_TRIAL_ID),
        "seed": int(float(seed)) if seed not in (None, "", "None") else None,
        "parent_run_id": tags.get(TAG_PARENT),
        "error": tags.get(TAG_ERROR),
        "stop_reason": tags.get(TAG_STOP),
        "artifact_uri": run.info.artifact_uri,
        "units": tags.get(TAG_UNITS),
    }
    row.update({a.column: tags.get(TAG_AXIS_PREFIX + a.name) for a in axes})
    row.update({PARAM_PREFIX + k: v for k, v in params.items()})
    row.update({METRIC_PREFIX + k: v for k, v in data.metrics.items()})
    return row


def metrics_at_step(runs: pd.DataFrame, step: int, metrics: Iterable[str], uri: str | None = None) -> pd.DataFrame:
    """``runs`` with the ``metrics`` (``eval/<task>/<metric>`` names) as logged at pretraining
    step ``step`` -- by training with ``eval.every_steps`` or by ``ajepa-sweep --evaluate
    --at-steps`` -- instead of their final values: the table "at step N".

    Every other eval metric column is dropped, so no final value is mixed in. A trial that
    logged nothing at that step gets NaN (the table counts it as finished without the
    metric). Control trials keep their values: they are the encoder at initialisation
    whatever the step. Raises :class:`RunsNotFound` naming the steps that do have values
    when no trial logged any metric at ``step``.
    """
    client = open_client(uri or runs.attrs["uri"])
    metrics = [m for m in metrics if METRIC_PREFIX + m in runs]
    out = runs.drop(columns=[c for c in runs.columns if c.startswith(METRIC_PREFIX + "eval/")
                             and c[len(METRIC_PREFIX):] not in metrics])
    control = out["role"].eq(ROLE_CONTROL) if "role" in out else pd.Series(False, index=out.index)
    seen: set[int] = set()
    found = False
    for metric in metrics:
        column = METRIC_PREFIX + metric
        values = out[column].copy()
        for index, run_id in out.loc[~control & out[column].notna(), "run_id"].items():
            history = client.get_metric_history(run_id, metric)
            seen.update(m.step for m in history)
            at = [m for m in history if m.step == step]
            values[index] = max(at, key=lambda m: m.timestamp).value if at else float("nan")
            found = found or bool(at)
        out[column] = values
    if not found:
        raise RunsNotFound(f"no trial logged {', '.join(metrics) or 'an eval metric'} at step {step}; steps with "
                           f"values: {sorted(seen) or 'none'} (evaluate kept checkpoints with "
                           "ajepa-sweep SPEC --evaluate TASK --at-steps all, or train with eval.every_steps)")
    out.attrs.update(runs.attrs, at_step=step)
    return out
