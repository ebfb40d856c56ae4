"""The trial's side of MLflow: a trainer callback that records one trial in its child run.

It runs inside the trial process (Ray worker), where the trainer's hooks say what
happened; the driver's side (parent run, closing runs a dead process left open) is
:mod:`ajepa.sweep.tracking`, the pictures it attaches are :mod:`ajepa.sweep.figures`.

What a person sees in the MLflow UI is decided here: the run name (seed first, short axis
labels), the params (the trial's config as it exists for its strategy, plus
``axis.<name>`` = the value label), scores in points (docs/ARCHITECTURE.md, "Metric and
MLflow naming") and MLflow's system metrics (CPU, memory; GPU with ``nvidia-ml-py``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from ajepa.config import flatten
from ajepa.contracts import (
    METRIC_EVAL_STEP,
    METRIC_TRAIN_LOSS,
    METRIC_TRAIN_STEPS,
    PARAM_AXIS_PREFIX,
    PREDICTIONS,
    TAG_ATTEMPTS,
    TAG_AXIS_PREFIX,
    TAG_ERROR,
    TAG_GIT,
    TAG_PARENT,
    TAG_PRETRAINING,
    TAG_ROLE,
    TAG_SEED,
    TAG_SPEC_HASH,
    TAG_STOP,
    TAG_SWEEP,
    TAG_TRIAL_ID,
    TAG_UNITS,
    UNITS_POINTS,
    logged_value,
)
from ajepa.sweep.figures import draw_trial_masks, plot_loss_curves
from ajepa.sweep.tracking import (
    MAX_BATCH,
    TrackingContext,
    client_for,
    clip_tag,
    find_trial_run,
    retry,
    run_name,
    set_tags,
)
from ajepa.train.callbacks import Callback

if TYPE_CHECKING:
    from ajepa.sweep.trials import Trial

log = logging.getLogger(__name__)


#: Seconds between system-metric samples (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides).
SYSTEM_METRICS_INTERVAL_S = 5.0
#: Set to "false" (or "0") to turn the system metrics of trial runs off.
SYSTEM_METRICS_ENV = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"


def now_ms() -> int:
    return int(time.time() * 1000)


def system_metrics_monitor(run_id: str, uri: str, resume: bool):
    """MLflow's sampler of CPU, memory, disk and network (and GPU when ``nvidia-ml-py`` finds
    one) for ``run_id``, started; None when psutil is missing or it is turned off."""
    if os.environ.get(SYSTEM_METRICS_ENV, "").strip().lower() in ("false", "0", "no"):
        return None
    try:
        import psutil  # noqa: F401 - MLflow's CPU monitor needs it
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # its INFO lines ("Started monitoring", "Skip logging GPU metrics") would repeat per trial
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                                       resume_logging=resume, tracking_uri=uri)
        monitor.start()
        return monitor
    except Exception as err:  # system metrics are a nicety: never a reason to fail a trial
        log.info("no system metrics for run %s: %s", run_id, err)
        return None


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
        self.points = True  # eval scores in points; False for a run an older version began in fractions
        self.monitor = None
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
        if trial.tree.get("checkpoint_dir"):  # runs of one pretraining signature share its checkpoint
            tags[TAG_PRETRAINING] = Path(trial.tree["checkpoint_dir"]).name
        run = find_trial_run(self.client, ctx.experiment_id, ctx.parent_run_id, trial.key)
        resumed = run is not None
        if run is None:
            name = run_name(trial.seed, trial.labels, ctx.short_labels, trial.is_control)
            run = self.client.create_run(ctx.experiment_id, run_name=name,
                                         tags={**tags, TAG_ATTEMPTS: "1", TAG_UNITS: UNITS_POINTS})
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
            set_tags(self.client, self.run_id, {**tags, TAG_ATTEMPTS: str(attempts)})
            self.client.delete_tag(self.run_id, TAG_ERROR) if TAG_ERROR in run.data.tags else None
            self.client.delete_tag(self.run_id, TAG_STOP) if TAG_STOP in run.data.tags else None
            self.floor["train"] = self._max_step(METRIC_TRAIN_LOSS)
            self.floor["eval"] = self._max_step(METRIC_EVAL_STEP)
            self.points = run.data.tags.get(TAG_UNITS) == UNITS_POINTS
        self.monitor = system_metrics_monitor(self.run_id, ctx.uri, resume=resumed)
        return self.run_id

    def _stop_monitor(self) -> None:
        if self.monitor is not None:
            try:
                self.monitor.finish()
            except Exception as err:
                log.info("system metrics did not stop cleanly: %s", err)
            self.monitor = None

    def _max_step(self, key: str) -> int:
        history = self.client.get_metric_history(self.run_id, key)
        return max((m.step for m in history), default=-1)

    def _log_params(self) -> None:
        from mlflow.entities import Param

        # the tree holds only the fields of the trial's own strategy (an axis value replaces the
        # whole subtree), so a random-masking trial has no masking.aspect_ratio param
        flat = {**flatten(self.trial.tree),
                **{PARAM_AXIS_PREFIX + name: label for name, label in self.trial.labels.items()}}
        params = [Param(k, clip_tag(json.dumps(v) if isinstance(v, (list, dict)) else str(v))) for k, v in flat.items()]
        for i in range(0, len(params), MAX_BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_BATCH])

    def _log_metrics(self, step: int, metrics: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = now_ms()
        batch = [Metric(k, self._display_value(k, v), now, int(step)) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and self.last_logged.get(k) != step]
        for m in batch:
            self.last_logged[m.key] = step
            if not math.isfinite(m.value):  # MLflow stores NaN, but keep it visible as a tag too
                log.warning("trial %s: %s is %s at step %s", self.trial.key, m.key, m.value, step)
        for i in range(0, len(batch), 1000):
            chunk = batch[i:i + 1000]
            retry(lambda chunk=chunk: self.client.log_batch(self.run_id, metrics=chunk), f"log metrics at step {step}")

    def _display_value(self, key: str, value: float) -> float:
        """Scores (``eval/<task>/…/acc``, map, f1, acc_std) in points, rounded; the rest as given."""
        return logged_value(key, value, self.points)

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
        self._stop_monitor()
        if self.stopped_by_tune():
            self.closed = True
            return
        if status == "FINISHED":
            step = int(summary.get(METRIC_TRAIN_STEPS, summary.get(METRIC_EVAL_STEP, 0)) or 0)
            self._log_metrics(step, summary)
            self._log_artifacts()
            # if this fails for good, the driver closes the run (it sees the trial finish)
            retry(lambda: self.client.set_terminated(self.run_id, "FINISHED"), "close the run")
        else:
            self.fail(str(summary.get("error", "unknown error")))
        self.closed = True

    def fail(self, reason: str, details: str | None = None) -> None:
        """Mark the run FAILED with its reason (idempotent; a later traceback is still attached)."""
        if self.run_id is None:
            return
        self._stop_monitor()
        if details:
            try:
                self.client.log_text(self.run_id, details, "error.txt")
            except Exception as err:  # the reason tag below matters more than the artifact
                log.warning("could not attach error.txt: %s", err)
        if self.closed or self.stopped_by_tune():
            self.closed = True
            return
        set_tags(self.client, self.run_id, {TAG_ERROR: reason})
        self._log_artifacts(final=False)
        self.client.set_terminated(self.run_id, "FAILED")
        self.closed = True

    # ------------------------------------------------------------------ artifacts
    def _log_artifacts(self, final: bool = True) -> None:
        """Loss curves, metrics.jsonl and the per-clip test predictions (``predictions/<task>.csv``)
        always; the encoder when asked. Never fails the trial."""
        try:
            predictions = self.out_dir / PREDICTIONS
            if final and predictions.is_dir() and any(predictions.glob("*.csv")):
                for path in sorted(predictions.glob("*.csv")):
                    self.client.log_artifact(self.run_id, str(path), PREDICTIONS)
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
        from ajepa.train.checkpoint import checkpoint_path

        ckpt = checkpoint_path(self.out_dir, folder=self.trial.tree.get("checkpoint_dir"))  # maybe shared
        encoder, cfg = load_encoder(ckpt, which="target")
        path = self.out_dir / "target_encoder.pt"
        torch.save({"state_dict": encoder.state_dict(), "config": self.trial.tree}, path)
        self.client.log_artifact(self.run_id, str(path), "encoder")

    def _log_mask_figure(self) -> None:
        """A few sampled masks of this trial's strategy (a failure only costs the picture)."""
        try:
            path = draw_trial_masks(self.trial, self.out_dir / "masks.png")
            self.client.log_artifact(self.run_id, str(path))
        except Exception as err:
            log.warning("trial %s: no mask figure: %s", self.trial.key, err)
