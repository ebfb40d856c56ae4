"""MLflow bookkeeping of a sweep: one parent run per sweep, one child run per trial.

The layout is the contract `analysis/` reads (docs/ARCHITECTURE.md, "Metric and MLflow
naming"; the names are :mod:`ajepa.contracts`). This module is the store plumbing the
driver uses: the experiment, the parent run, finding and closing child runs. Trials log
from inside the trial process through the trainer's own callback interface
(:class:`ajepa.sweep.trial_run.MlflowTrialCallback`), not through Ray's MLflow logger:
the trainer knows steps, evaluations and failures, and Ray's callback would create a
second run on every ``Tuner.restore``.

Runs are found before they are created -- the parent by the id saved in the sweep folder,
a child by its ``ajepa.trial_id`` tag under that parent -- so a retried or resumed trial
continues its own run instead of adding a duplicate. Anything a dead process left
RUNNING is closed by the driver (:func:`close_trial_run`, :func:`close_orphans`).

MlflowClient with explicit run ids is used throughout (never the fluent ``mlflow.*``
API with its process-global active run), since several trials may share a process.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from ajepa.contracts import (
    CONTROL_LABEL,
    EXPERIMENT_KIND_TRAINING,
    METRIC_BEST_PREFIX,
    METRIC_ROW_PREFIX,
    ROLE_CONTROL,
    ROLE_SWEEP,
    TAG_AXES,
    TAG_AXIS_PREFIX,
    TAG_BASE,
    TAG_BEST_ROW_PREFIX,
    TAG_CONTROL,
    TAG_ERROR,
    TAG_EXPERIMENT_KIND,
    TAG_GIT,
    TAG_METRICS,
    TAG_NOTE,
    TAG_NUM_TRIALS,
    TAG_PARENT,
    TAG_ROLE,
    TAG_SEARCH,
    TAG_SEARCH_METRIC,
    TAG_SEEDS,
    TAG_SPEC_FILE,
    TAG_SPEC_HASH,
    TAG_STOP,
    TAG_SWEEP,
    TAG_TABLE,
    TAG_TRIAL_ID,
    metric_key_part,
)
from analysis.labels import join_labels
from analysis.runs import search_all_runs

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from ajepa.sweep.trials import Sweep

log = logging.getLogger(__name__)

MAX_TAG = 5000          # MLflow tag values are capped (8000 in 3.x); keep room for UTF-8
MAX_BATCH = 100         # MLflow's per-request limit for params and tags


@dataclass(frozen=True)
class TrackingContext:
    """What a trial process needs to log into the sweep's parent run (picklable, small)."""

    uri: str
    experiment_id: str
    parent_run_id: str
    sweep: str
    spec_hash: str
    git_commit: str
    log_encoder: bool = False
    # axis name -> {value label: short label} for run names (see short_labels); missing: the label
    short_labels: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def client_for(uri: str) -> "MlflowClient":
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def git_commit(folder: Path) -> str:
    """HEAD of the repository holding ``folder`` (``+dirty`` if it has uncommitted changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def retry(action: Callable[[], Any], what: str, attempts: int = 4, delay: float = 0.5) -> bool:
    """Run an MLflow write, retrying briefly (SQLite is locked while another trial writes).

    Losing one metric point is better than failing hours of training, so after the last
    attempt the error is logged and training goes on.
    """
    for attempt in range(attempts):
        try:
            action()
            return True
        except Exception as err:
            if attempt == attempts - 1:
                log.warning("MLflow: could not %s: %s", what, err)
                return False
            time.sleep(delay * 2**attempt)
    return False


def clip_tag(text: str) -> str:
    return text if len(text) <= MAX_TAG else text[: MAX_TAG - 20] + " ... (truncated)"


# --------------------------------------------------------------------------- experiment and parent


def ensure_experiment(client: "MlflowClient", name: str, uri: str, storage: Path) -> str:
    """Experiment id, created if needed, tagged as a model-training experiment.

    With a local SQLite store MLflow would put artifacts in ``./mlruns`` of whatever
    directory the process runs in (a different one per Ray trial), so the artifact
    location is pinned next to the store; a server decides its own. The tag
    ``mlflow.experimentKind`` makes the MLflow 3 UI open the experiment on its runs table
    instead of the GenAI overview (traces, tokens: all empty here).
    """
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        experiment_id = found.experiment_id
    else:
        location = None
        if uri.startswith("sqlite:") or uri.startswith("file:"):
            location = (storage / "mlartifacts" / name).resolve().as_uri()
        try:
            experiment_id = client.create_experiment(name, artifact_location=location)
        except Exception:  # created concurrently by another driver
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            experiment_id = found.experiment_id
    if found is None or found.tags.get(TAG_EXPERIMENT_KIND) != EXPERIMENT_KIND_TRAINING:
        retry(lambda: client.set_experiment_tag(experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND_TRAINING),
              "tag the experiment kind")
    return experiment_id


# --------------------------------------------------------------------------- run names

_PARENTHESIS = re.compile(r"\s*\([^()]*\)$")


def short_labels(axes: list[dict]) -> dict[str, dict[str, str]]:
    """Per axis (``Sweep.axes_tag()``), each value label's short form for run names.

    The MLflow runs table cuts names after ~20 characters, so names start with the seed and
    carry short labels: a trailing parenthesis is dropped ("ViT-Ti (12, 192, 3)" -> "ViT-Ti")
    when the shortened labels stay distinct on the axis, and "75 %" becomes "75%". The full
    label stays in the tag ``ajepa.axis.<name>`` and the param ``axis.<name>``.
    """
    out = {}
    for axis in axes:
        labels = [str(label) for label in axis["labels"]]
        tight = {label: re.sub(r"(\d) %", r"\1%", label) for label in labels}
        cut = {label: _PARENTHESIS.sub("", text) or text for label, text in tight.items()}
        out[axis["name"]] = cut if len(set(cut.values())) == len(labels) else tight
    return out


def run_name(seed: int, labels: dict[str, str], short: dict[str, dict[str, str]] | None = None,
             control: bool = False) -> str:
    """A trial run's MLflow name: ``s0 · multi-block · 0.6`` (seed first, short labels), or
    ``s0 · control`` for a control trial."""
    short = short or {}
    parts = ["control"] if control else [short.get(name, {}).get(label, label) for name, label in labels.items()]
    return " · ".join([f"s{seed}", *parts])


# --------------------------------------------------------------------------- sweep summary


def sweep_summary(runs: list, axes: list[str], metrics: list[str], modes: dict[str, str] | None = None
                  ) -> tuple[dict[str, float], dict[str, str]]:
    """Parent-run metrics and tags from the finished child runs.

    Metrics ``rows/<row>/<metric>`` (``<metric>`` without its ``eval/``) = the mean over the
    row's finished seeds, ``<row>`` the table row label made a valid key part
    (:func:`ajepa.contracts.metric_key_part`); ``best/<metric>`` = the best row's mean (the
    control row excluded), whose label is the tag ``ajepa.best_row/<metric>``. ``modes``:
    metric -> "max" | "min" (default "max").
    """
    values: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        if run.info.status != "FINISHED":
            continue
        tags = run.data.tags
        row = CONTROL_LABEL if tags.get(TAG_ROLE) == ROLE_CONTROL else join_labels(
            tags.get(TAG_AXIS_PREFIX + name, "?") for name in axes)
        for metric in metrics:
            value = run.data.metrics.get(metric)
            if value is not None and math.isfinite(value):
                values.setdefault(metric, {}).setdefault(row, []).append(float(value))
    out, tags_out = {}, {}
    for metric, rows in values.items():
        short = metric[len("eval/"):] if metric.startswith("eval/") else metric
        keys: set[str] = set()
        means = {}
        for row, vals in rows.items():
            key = metric_key_part(row)
            while key in keys:  # two labels that read alike as keys
                key += "_"
            keys.add(key)
            means[row] = sum(vals) / len(vals)
            out[f"{METRIC_ROW_PREFIX}{key}/{short}"] = round(means[row], 6)
        ranked = {row: mean for row, mean in means.items() if row != CONTROL_LABEL}
        if ranked:
            pick = min if (modes or {}).get(metric, "max") == "min" else max
            best = pick(ranked, key=ranked.get)
            out[f"{METRIC_BEST_PREFIX}{metric}"] = round(ranked[best], 6)
            tags_out[TAG_BEST_ROW_PREFIX + metric] = best
    return out, tags_out


def summary_metrics_of(sweep: "Sweep", runs: list) -> list[str]:
    """The headline metrics the parent run summarises: the spec's ``metrics`` and search metric
    (``eval/`` may be omitted there), else every ``eval/<task>/{acc,map,f1}`` the trials logged."""
    present = {key for run in runs for key in run.data.metrics}
    wanted = [*sweep.spec.metrics, *([sweep.spec.search.metric] if sweep.spec.search.metric else [])]
    resolved = [m if m in present or f"eval/{m}" not in present else f"eval/{m}" for m in wanted]
    chosen = [m for m in dict.fromkeys(resolved) if m in present]
    if chosen:
        return chosen
    return sorted(k for k in present if len(k.split("/")) == 3 and k.startswith("eval/")
                  and k.split("/")[2] in ("acc", "map", "f1"))


def log_sweep_summary(client: "MlflowClient", parent_run_id: str, sweep: "Sweep", runs: list) -> None:
    """Give the parent run the per-row means of the headline metrics (:func:`sweep_summary`), so
    the collapsed runs table says how the sweep came out."""
    from mlflow.entities import Metric

    metrics = summary_metrics_of(sweep, runs)
    modes = {sweep.spec.search.metric: sweep.spec.search.mode} if sweep.spec.search.metric else {}
    values, tags = sweep_summary(runs, [a.name for a in sweep.spec.axes], metrics, modes)
    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, 0) for k, v in values.items()]
    for i in range(0, len(batch), 1000):
        chunk = batch[i:i + 1000]
        retry(lambda chunk=chunk: client.log_batch(parent_run_id, metrics=chunk), "log the sweep summary")
    if tags:
        set_tags(client, parent_run_id, tags)


def open_parent(client: "MlflowClient", experiment_id: str, sweep: "Sweep", commit: str,
                run_id: str | None = None) -> str:
    """Reopen the sweep's parent run (resume) or create it; tags per the naming contract."""
    tags = {
        TAG_ROLE: ROLE_SWEEP, TAG_SWEEP: sweep.name, TAG_SPEC_HASH: sweep.spec_hash, TAG_GIT: commit,
        TAG_AXES: json.dumps(sweep.axes_tag()), TAG_SEARCH: sweep.spec.search.kind,
        TAG_NUM_TRIALS: str(sweep.num_trials), TAG_SEEDS: json.dumps(sweep.spec.seeds),
        TAG_SPEC_FILE: str(sweep.path.resolve()), TAG_BASE: str(sweep.base_path),
    }
    if sweep.controls:
        tags[TAG_CONTROL] = "1"
    if sweep.spec.table:
        tags[TAG_TABLE] = sweep.spec.table
    if sweep.spec.metrics:
        tags[TAG_METRICS] = json.dumps(sweep.spec.metrics)
    if sweep.spec.search.metric:
        tags[TAG_SEARCH_METRIC] = sweep.spec.search.metric
    if sweep.spec.description:
        tags[TAG_NOTE] = sweep.spec.description
    if run_id is not None:
        run = _get_run(client, run_id)
        if run is not None:
            client.update_run(run_id, status="RUNNING")
            set_tags(client, run_id, tags)
            return run_id
    run = client.create_run(experiment_id, run_name=sweep.name, tags=tags)
    run_id = run.info.run_id
    client.log_text(run_id, sweep.path.read_text(), "sweep.yaml")
    client.log_text(run_id, yaml.safe_dump(sweep.base_tree, sort_keys=False), "base_with_overrides.yaml")
    return run_id


def close_parent(client: "MlflowClient", run_id: str, status: str, tags: dict[str, str]) -> None:
    set_tags(client, run_id, tags)
    client.set_terminated(run_id, status)


def _get_run(client: "MlflowClient", run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return run if run.info.lifecycle_stage == "active" else None


def set_tags(client: "MlflowClient", run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, clip_tag(str(v))) for k, v in tags.items()]
    for i in range(0, len(items), MAX_BATCH):
        client.log_batch(run_id, tags=items[i:i + MAX_BATCH])


# --------------------------------------------------------------------------- children


def find_trial_run(client: "MlflowClient", experiment_id: str, parent_run_id: str, trial_key: str):
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_PARENT}` = '{parent_run_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_key}'",
        order_by=["attributes.start_time ASC"],
    )
    return runs[0] if runs else None


def child_runs(client: "MlflowClient", experiment_id: str, parent_run_id: str) -> list:
    return search_all_runs(client, experiment_id, f"tags.`{TAG_PARENT}` = '{parent_run_id}'")


def close_trial_run(ctx: TrackingContext, trial_key: str, status: str, reason: str | None) -> bool:
    """Close a trial's run that its process could not close (killed, OOM, early-stopped).

    Only a run still RUNNING is touched, so a run the trial closed itself keeps its status.
    """
    client = client_for(ctx.uri)
    run = find_trial_run(client, ctx.experiment_id, ctx.parent_run_id, trial_key)
    if run is None or run.info.status != "RUNNING":
        return False
    if reason:
        set_tags(client, run.info.run_id, {TAG_ERROR if status == "FAILED" else TAG_STOP: reason})
    client.set_terminated(run.info.run_id, status)
    return True


def close_orphans(ctx: TrackingContext, reason: str) -> int:
    """After Ray returns, no trial runs: anything still RUNNING was cut off (interrupt)."""
    client = client_for(ctx.uri)
    n = 0
    for run in child_runs(client, ctx.experiment_id, ctx.parent_run_id):
        if run.info.status == "RUNNING":
            set_tags(client, run.info.run_id, {TAG_STOP: reason})
            client.set_terminated(run.info.run_id, "KILLED")
            n += 1
    return n
