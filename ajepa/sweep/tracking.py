"""MLflow bookkeeping of a sweep: one parent run per sweep, one child run per trial.

The layout is the contract `analysis/` reads (docs/ARCHITECTURE.md, "Metric and MLflow
naming"). Trials log from inside the trial process through the trainer's own callback
interface (:class:`MlflowTrialCallback`), not through Ray's MLflow logger: the trainer
knows steps, evaluations and failures, and Ray's callback would create a second run on
every ``Tuner.restore``.

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
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from ajepa.config import flatten
from ajepa.train.callbacks import Callback

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from ajepa.sweep.spec import Sweep, Trial

log = logging.getLogger(__name__)

TAG_ROLE = "ajepa.role"
TAG_SWEEP = "ajepa.sweep"
TAG_SPEC_HASH = "ajepa.spec_hash"
TAG_TRIAL_ID = "ajepa.trial_id"
TAG_SEED = "ajepa.seed"
TAG_GIT = "ajepa.git_commit"
TAG_AXES = "ajepa.axes"
TAG_AXIS_PREFIX = "ajepa.axis."
TAG_PARENT = "mlflow.parentRunId"
TAG_ERROR = "ajepa.error"
TAG_STOP = "ajepa.stop_reason"
TAG_ATTEMPTS = "ajepa.attempts"
TAG_CONTROL = "ajepa.control"  # parent run: "1" when the sweep runs control trials (role "control")
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


def _now_ms() -> int:
    return int(time.time() * 1000)


def _retry(action: Callable[[], Any], what: str, attempts: int = 4, delay: float = 0.5) -> bool:
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


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TAG else text[: MAX_TAG - 20] + " ... (truncated)"


# --------------------------------------------------------------------------- experiment and parent


def ensure_experiment(client: "MlflowClient", name: str, uri: str, storage: Path) -> str:
    """Experiment id, created if needed.

    With a local SQLite store MLflow would put artifacts in ``./mlruns`` of whatever
    directory the process runs in (a different one per Ray trial), so the artifact
    location is pinned next to the store; a server decides its own.
    """
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:") or uri.startswith("file:"):
        location = (storage / "mlartifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another driver
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def open_parent(client: "MlflowClient", experiment_id: str, sweep: "Sweep", commit: str,
                run_id: str | None = None) -> str:
    """Reopen the sweep's parent run (resume) or create it; tags per the naming contract."""
    tags = {
        TAG_ROLE: "sweep", TAG_SWEEP: sweep.name, TAG_SPEC_HASH: sweep.spec_hash, TAG_GIT: commit,
        TAG_AXES: json.dumps(sweep.axes_tag()), "ajepa.search": sweep.spec.search.kind,
        "ajepa.num_trials": str(sweep.num_trials), "ajepa.seeds": json.dumps(sweep.spec.seeds),
        "ajepa.spec_file": str(sweep.path.resolve()), "ajepa.base": str(sweep.base_path),
    }
    if sweep.controls:
        tags[TAG_CONTROL] = "1"
    if sweep.spec.table:
        tags["ajepa.table"] = sweep.spec.table
    if sweep.spec.metrics:
        tags["ajepa.metrics"] = json.dumps(sweep.spec.metrics)
    if sweep.spec.search.metric:
        tags["ajepa.search_metric"] = sweep.spec.search.metric
    if sweep.spec.description:
        tags["mlflow.note.content"] = sweep.spec.description
    if run_id is not None:
        run = _get_run(client, run_id)
        if run is not None:
            client.update_run(run_id, status="RUNNING")
            _set_tags(client, run_id, tags)
            return run_id
    run = client.create_run(experiment_id, run_name=sweep.name, tags=tags)
    run_id = run.info.run_id
    client.log_text(run_id, sweep.path.read_text(), "sweep.yaml")
    client.log_text(run_id, yaml.safe_dump(sweep.base_tree, sort_keys=False), "base_with_overrides.yaml")
    return run_id


def close_parent(client: "MlflowClient", run_id: str, status: str, tags: dict[str, str]) -> None:
    _set_tags(client, run_id, tags)
    client.set_terminated(run_id, status)


def _get_run(client: "MlflowClient", run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return run if run.info.lifecycle_stage == "active" else None


def _set_tags(client: "MlflowClient", run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, _clip(str(v))) for k, v in tags.items()]
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
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_PARENT}` = '{parent_run_id}'",
                                  max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def close_trial_run(ctx: TrackingContext, trial_key: str, status: str, reason: str | None) -> bool:
    """Close a trial's run that its process could not close (killed, OOM, early-stopped).

    Only a run still RUNNING is touched, so a run the trial closed itself keeps its status.
    """
    client = client_for(ctx.uri)
    run = find_trial_run(client, ctx.experiment_id, ctx.parent_run_id, trial_key)
    if run is None or run.info.status != "RUNNING":
        return False
    if reason:
        _set_tags(client, run.info.run_id, {TAG_ERROR if status == "FAILED" else TAG_STOP: reason})
    client.set_terminated(run.info.run_id, status)
    return True


def close_orphans(ctx: TrackingContext, reason: str) -> int:
    """After Ray returns, no trial runs: anything still RUNNING was cut off (interrupt)."""
    client = client_for(ctx.uri)
    n = 0
    for run in child_runs(client, ctx.experiment_id, ctx.parent_run_id):
        if run.info.status == "RUNNING":
            _set_tags(client, run.info.run_id, {TAG_STOP: reason})
            client.set_terminated(run.info.run_id, "KILLED")
            n += 1
    return n


class MlflowTrialCallback(Callback):
    """Trainer callback that records one trial in its MLflow child run.

    ``open()`` before training finds or creates the run; the trainer's hooks then log
    metrics per step and evaluation, and ``on_end`` closes the run FINISHED or FAILED
    (with the reason). Steps already in the run from an earlier attempt are not logged
    again after a resume (the trainer resumes exactly, so the values would repeat).
    """

    def __init__(self, ctx: TrackingContext, trial: "Trial"):
        self.ctx = ctx
        self.trial = trial
        self.client = client_for(ctx.uri)
        self.run_id: str | None = None
        self.closed = False
        self.floor: dict[str, int] = {"train": -1, "eval": -1}
        self.last_logged: dict[str, int] = {}
        self.out_dir = Path(trial.tree["out_dir"])
        # When Tune stops a trial (ASHA, interrupted sweep) the trainer sees SystemExit and
        # reports FAILED; the driver, which knows why it stopped the trial, closes the run.
        self.stopped_by_tune: Callable[[], bool] = lambda: False

    # ------------------------------------------------------------------ run lifecycle
    def open(self) -> str:
        ctx, trial = self.ctx, self.trial
        tags = {
            TAG_ROLE: trial.kind, TAG_PARENT: ctx.parent_run_id, TAG_SWEEP: ctx.sweep, TAG_SPEC_HASH: ctx.spec_hash,
            TAG_TRIAL_ID: trial.key, TAG_SEED: str(trial.seed), TAG_GIT: ctx.git_commit,
            **{TAG_AXIS_PREFIX + name: label for name, label in trial.labels.items()},
        }
        run = find_trial_run(self.client, ctx.experiment_id, ctx.parent_run_id, trial.key)
        if run is None:
            run = self.client.create_run(ctx.experiment_id, run_name=trial.run_name, tags={**tags, TAG_ATTEMPTS: "1"})
            self.run_id = run.info.run_id
            self._log_params()
            self.client.log_text(self.run_id, yaml.safe_dump(trial.tree, sort_keys=False), "config.yaml")
            self.client.log_dict(self.run_id, {k: v for k, v in trial.to_dict().items() if k != "tree"}, "trial.json")
            if not trial.is_control:  # a control never samples a mask
                self._log_mask_figure()
        else:
            self.run_id = run.info.run_id
            attempts = int(run.data.tags.get(TAG_ATTEMPTS, "1")) + 1
            self.client.update_run(self.run_id, status="RUNNING")
            _set_tags(self.client, self.run_id, {**tags, TAG_ATTEMPTS: str(attempts)})
            self.client.delete_tag(self.run_id, TAG_ERROR) if TAG_ERROR in run.data.tags else None
            self.client.delete_tag(self.run_id, TAG_STOP) if TAG_STOP in run.data.tags else None
            self.floor["train"] = self._max_step("train/loss")
            self.floor["eval"] = self._max_step("eval/step")
        return self.run_id

    def _max_step(self, key: str) -> int:
        history = self.client.get_metric_history(self.run_id, key)
        return max((m.step for m in history), default=-1)

    def _log_params(self) -> None:
        from mlflow.entities import Param

        flat = flatten(self.trial.tree)
        params = [Param(k, _clip(json.dumps(v) if isinstance(v, (list, dict)) else str(v))) for k, v in flat.items()]
        for i in range(0, len(params), MAX_BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_BATCH])

    def _log_metrics(self, step: int, metrics: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = _now_ms()
        batch = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and self.last_logged.get(k) != step]
        for m in batch:
            self.last_logged[m.key] = step
            if not math.isfinite(m.value):  # MLflow stores NaN, but keep it visible as a tag too
                log.warning("trial %s: %s is %s at step %s", self.trial.key, m.key, m.value, step)
        for i in range(0, len(batch), 1000):
            chunk = batch[i:i + 1000]
            _retry(lambda: self.client.log_batch(self.run_id, metrics=chunk), f"log metrics at step {step}")

    # ------------------------------------------------------------------ trainer hooks
    def on_log(self, step, metrics):
        if step > self.floor["train"]:
            self._log_metrics(step, metrics)

    def on_eval(self, step, metrics):
        if step > self.floor["eval"]:
            self._log_metrics(step, metrics)

    def on_end(self, status, summary):
        if self.closed or self.run_id is None:
            return
        if self.stopped_by_tune():
            self.closed = True
            return
        if status == "FINISHED":
            step = int(summary.get("train/steps", summary.get("eval/step", 0)) or 0)
            self._log_metrics(step, summary)
            self._log_artifacts()
            # if this fails for good, the driver closes the run (it sees the trial finish)
            _retry(lambda: self.client.set_terminated(self.run_id, "FINISHED"), "close the run")
        else:
            self.fail(str(summary.get("error", "unknown error")))
        self.closed = True

    def fail(self, reason: str, details: str | None = None) -> None:
        """Mark the run FAILED with its reason (idempotent; a later traceback is still attached)."""
        if self.run_id is None:
            return
        if details:
            try:
                self.client.log_text(self.run_id, details, "error.txt")
            except Exception as err:  # the reason tag below matters more than the artifact
                log.warning("could not attach error.txt: %s", err)
        if self.closed or self.stopped_by_tune():
            self.closed = True
            return
        _set_tags(self.client, self.run_id, {TAG_ERROR: reason})
        self._log_artifacts(final=False)
        self.client.set_terminated(self.run_id, "FAILED")
        self.closed = True

    # ------------------------------------------------------------------ artifacts
    def _log_artifacts(self, final: bool = True) -> None:
        """Loss curves, metrics.jsonl and the per-clip test predictions (``predictions/<task>.csv``)
        always; the encoder when asked. Never fails the trial."""
        try:
            predictions = self.out_dir / "predictions"
            if final and predictions.is_dir() and any(predictions.glob("*.csv")):
                for path in sorted(predictions.glob("*.csv")):
                    self.client.log_artifact(self.run_id, str(path), "predictions")
            metrics_file = self.out_dir / "metrics.jsonl"
            if metrics_file.exists():
                self.client.log_artifact(self.run_id, str(metrics_file))
                figure = plot_loss_curves(metrics_file, self.trial.run_name)
                if figure is not None:
                    self.client.log_figure(self.run_id, figure, "loss_curves.png")
                    import matplotlib.pyplot as plt

                    plt.close(figure)
            if final and self.ctx.log_encoder and not self.trial.is_control:  # a control saves no checkpoint
                self._log_encoder()
        except Exception as err:
            log.warning("trial %s: could not log artifacts: %s", self.trial.key, err)

    def _log_encoder(self) -> None:
        import torch

        from ajepa.train import load_encoder

        ckpt = self.out_dir / "checkpoints" / "last.pt"
        encoder, cfg = load_encoder(ckpt, which="target")
        path = self.out_dir / "target_encoder.pt"
        torch.save({"state_dict": encoder.state_dict(), "config": self.trial.tree}, path)
        self.client.log_artifact(self.run_id, str(path), "encoder")

    def _log_mask_figure(self) -> None:
        """A few sampled masks of this trial's strategy, if ajepa.masks.figures offers them."""
        try:
            from ajepa.masks.figures import draw_mask_examples
        except ImportError:
            return
        try:
            cfg = self.trial.config()
            label = " | ".join(self.trial.labels.values()) or cfg.masking.strategy
            path = draw_mask_examples(None, cfg.grid, cfg.model.patch_size, {label: cfg.masking},
                                      self.out_dir / "masks.png", seed=self.trial.seed)
            self.client.log_artifact(self.run_id, str(path))
        except Exception as err:
            log.warning("trial %s: no mask figure: %s", self.trial.key, err)


def plot_loss_curves(metrics_file: Path, title: str):
    """train/loss (and lr) against step from the trainer's metrics.jsonl, or None if empty."""
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    points = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps, losses = zip(*points)
    ax.plot(steps, losses, label="train/loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    lrs = [(r["step"], r["train/lr"]) for r in records if "train/lr" in r]
    if lrs:
        twin = ax.twinx()
        twin.plot(*zip(*lrs), color="tab:gray", alpha=0.5, linewidth=1)
        twin.set_ylabel("lr", color="tab:gray")
    fig.tight_layout()
    return fig
