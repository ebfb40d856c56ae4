"""What runs inside one Ray Tune trial: rebuild the trial, train, log, report.

The trial process needs nothing from the driver but the picklable :class:`TrialPlan`
(passed with ``tune.with_parameters``) and its Tune ``config`` (which trial, or Optuna's
suggestion). Checkpoints are the trainer's own (``out_dir/checkpoints/last.pt`` on the
sweep's storage), which it resumes from by itself: a retried trial or a resumed sweep
simply starts the trainer again. Nothing is reported to Ray as a checkpoint, so the
checkpoint is not copied a second time into Ray's experiment folder.

Reporting uses ``ray.tune.report`` only (``ray.train.report`` raises in a Tune function
under Ray Train V2).

A control trial (``Trial.kind == "control"``) builds the trainer exactly as a trial does
-- same config, same data set-up, the same ``torch.manual_seed(cfg.seed)`` right before
the model -- but never takes an optimizer step: ``Trainer.fit(pretrain=False)`` runs the trainer's
own ``setup()`` and ``evaluate()`` at step 0.

Every trial's evaluator writes its per-clip test predictions to
``<out_dir>/predictions/<task>.csv``; the MLflow callback logs that folder.
"""

from __future__ import annotations

import importlib
import json
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ajepa.contracts import METRIC_TRAIN_LOSS, METRIC_TRAIN_STEPS, PREDICTIONS  # under out_dir: <task>.csv
from ajepa.eval import build_evaluator
from ajepa.sweep.tracking import TrackingContext
from ajepa.sweep.trial_run import MlflowTrialCallback
from ajepa.sweep.trials import Sweep, Trial, record_pretraining, sample_trial
from ajepa.train.callbacks import Callback

log = logging.getLogger(__name__)

GRID_PARAM = "trial"            # Tune config key of a grid/random trial: {"key", "seed", <axis labels>}
TRIAL_INDEX = "__trial_index__"  # set by ray.tune.search.Repeater: which seed of an Optuna suggestion
FINISHED_FLAG = "ajepa/finished"  # in the final report: the trial ended normally (not stopped early)
SUMMARY_FILE = "summary.json"


@dataclass
class TrialPlan:
    """Everything a trial process needs from the driver."""

    sweep: Sweep
    ctx: TrackingContext
    trainer: str = "ajepa.train:Trainer"
    # Extra trainer callbacks: factories ``factory(trial) -> Callback`` or "module:factory" paths
    # (fault injection in tests, profiling). Factories travel to the trial pickled.
    callbacks: tuple[Any, ...] = ()

    def trial_for(self, config: dict, ray_trial_id: str) -> Trial:
        if GRID_PARAM in config:
            key = config[GRID_PARAM]["key"]
            for trial in self.sweep.trials:
                if trial.key == key:
                    return trial
            raise KeyError(f"trial {key!r} is not in sweep {self.sweep.name!r} (spec changed since the trial was made?)")
        seeds = self.sweep.spec.seeds
        seed = seeds[int(config.get(TRIAL_INDEX, 0)) % len(seeds)]
        choice = {axis.name: config[axis.name] for axis in self.sweep.spec.axes}
        return sample_trial(self.sweep, ray_trial_id, seed, choice)


def import_object(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class TuneReporter(Callback):
    """Forwards the trainer's metrics to Tune (the live table, ASHA, Optuna).

    Each report carries every metric seen so far, so a scheduler or searcher always finds
    its metric once it has been measured; ``step`` is the optimizer step (ASHA's clock).
    """

    def __init__(self, report: Callable[[dict], None], first: tuple[str, ...] = ()):
        self.report = report
        self.first = ("step", METRIC_TRAIN_LOSS, *first)
        self.latest: dict[str, float] = {}
        self.stopped = False  # Tune told this trial to stop (ASHA, end of an interrupted sweep)

    def _send(self, step: int, metrics: dict[str, Any], **extra) -> None:
        self.latest.update({k: float(v) for k, v in metrics.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        merged = {"step": int(step), **self.latest, **extra}
        ordered = {k: merged[k] for k in self.first if k in merged}
        ordered.update({k: v for k, v in merged.items() if k not in ordered})
        try:
            self.report(ordered)
        except SystemExit as stop:  # tune.report's way to end a trial Tune has stopped
            self.stopped = stop.code in (0, None)
            raise

    def on_log(self, step, metrics):
        self._send(step, metrics)

    def on_eval(self, step, metrics):
        self._send(step, metrics)

    def final(self, summary: dict[str, Any]) -> None:
        step = int(summary.get(METRIC_TRAIN_STEPS, self.latest.get("step", 0)) or 0)
        self._send(step, summary, **{FINISHED_FLAG: 1})




def run_trainer(trial: Trial, trainer) -> dict[str, Any]:
    """Pretrain and evaluate (a trial) or only evaluate the initial encoder (a control)."""
    return trainer.fit(pretrain=not trial.is_control)


def train_trial(trial: Trial, plan: TrialPlan, reporter: TuneReporter | None) -> dict[str, Any]:
    """Train one trial with MLflow logging; the MLflow run ends FAILED with the reason on any error."""
    out_dir = Path(trial.tree["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    tracker = MlflowTrialCallback(plan.ctx, trial)
    if reporter is not None:
        tracker.stopped_by_tune = lambda: reporter.stopped
    tracker.open()
    try:
        cfg = trial.config()
        if cfg.checkpoint_dir is not None and not trial.is_control:
            record_pretraining(cfg, plan.ctx.git_commit)
        evaluator = build_evaluator(cfg, predictions_dir=out_dir / PREDICTIONS)  # None without eval.tasks
        trainer_cls = import_object(plan.trainer)
        extra = [(import_object(f) if isinstance(f, str) else f)(trial) for f in plan.callbacks]
        callbacks = [tracker, *([reporter] if reporter else []), *extra]
        summary = run_trainer(trial, trainer_cls(cfg, callbacks=callbacks, evaluator=evaluator))
    except BaseException as err:
        tracker.fail(f"{type(err).__name__}: {err}", traceback.format_exc())
        raise
    return summary


def tune_trainable(config: dict, plan: TrialPlan) -> None:
    """The Ray Tune function trainable (wrapped with ``tune.with_parameters(plan=...)``)."""
    from ray import tune

    trial = plan.trial_for(config, tune.get_context().get_trial_id())
    if plan.sweep.spec.resources.workers > 1:
        summary = _run_ddp(trial, plan)
        TuneReporter(tune.report).final(summary)
        return
    reporter = TuneReporter(tune.report, first=tuple(m for m in [plan.sweep.spec.search.metric] if m))
    summary = train_trial(trial, plan, reporter)
    reporter.final(summary)


# --------------------------------------------------------------------------- DDP (resources.workers > 1)


def _run_ddp(trial: Trial, plan: TrialPlan) -> dict[str, Any]:
    """Run the trial as a Ray Train TorchTrainer with ``workers`` DDP processes.

    The trainer sees an initialised process group and wraps its model in DDP; rank 0
    alone logs to MLflow (the trainer drops callbacks on other ranks) and writes the
    summary this Tune trial reports. Only final metrics reach Tune on this path.
    """
    from ray.train import RunConfig as TrainRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    res = plan.sweep.spec.resources
    out_dir = Path(trial.tree["out_dir"])
    summary_path = out_dir / SUMMARY_FILE
    summary_path.unlink(missing_ok=True)
    per_worker = {"CPU": res.cpu, **({"GPU": res.gpu} if res.gpu else {})}
    trainer = TorchTrainer(
        _ddp_worker,
        train_loop_config={"trial": trial.to_dict(), "plan": plan},
        scaling_config=ScalingConfig(num_workers=res.workers, use_gpu=res.gpu > 0, resources_per_worker=per_worker),
        run_config=TrainRunConfig(name=f"ddp-{trial.key}", storage_path=str(plan.sweep.sweep_dir / "ddp")),
    )
    trainer.fit()
    return json.loads(summary_path.read_text())


def _ddp_worker(config: dict) -> None:
    import ray.train

    trial, plan = Trial.from_dict(config["trial"]), config["plan"]
    rank = ray.train.get_context().get_world_rank()
    if rank == 0:
        summary = train_trial(trial, plan, reporter=None)
        path = Path(trial.tree["out_dir"]) / SUMMARY_FILE
        path.write_text(json.dumps({k: v for k, v in summary.items() if isinstance(v, (int, float, str))}))
    else:
        # Evaluation runs on rank 0 only; the others wait at the trainer's checkpoint barrier
        # (a control's other ranks only join the set-up, which wraps the model in DDP).
        run_trainer(trial, import_object(plan.trainer)(trial.config(), callbacks=(), evaluator=None))
