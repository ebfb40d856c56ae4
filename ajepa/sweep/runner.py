"""Run a validated sweep on Ray Tune, tracked in MLflow, resumable by re-running it.

Folder layout under ``<storage>/<name>/``:
  sweep.json          spec hash, MLflow parent run id and tracking URI (what resume needs)
  tune/               Ray Tune's experiment state (Tuner.restore reads it)
  trials/<key>/       each trial's out_dir: metrics.jsonl, predictions/ (checkpoints/ when not shared)
  pretraining/<sig>/  the checkpoints of every trial with pretraining signature <sig> (share_pretraining)
``<storage>/mlflow.db`` and ``<storage>/mlartifacts/`` hold the default MLflow store.

Resume: when ``tune/`` holds an experiment and the spec hash matches, the Tuner is
restored: finished trials are kept, unfinished ones restart and their trainer resumes
from ``last.pt``; failed ones stay failed unless ``retry_failed``. The parent MLflow run
is reopened and every trial finds its own child run by ``ajepa.trial_id``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ray import tune

from ajepa.contracts import METRIC_TRAIN_LOSS, TAG_AXES, TAG_AXIS_PREFIX, TAG_ERROR, TAG_STOP, TAG_TRIAL_ID
from ajepa.io_utils import atomic_write_text
from ajepa.sweep import local_ray, tracking
from ajepa.sweep.cost import trial_cost
from ajepa.sweep.errors import SpecError
from ajepa.sweep.resources import (
    DDP_DRIVER_CPU,
    ClusterResources,
    check_resources,
    connected_resources,
    local_resources,
)
from ajepa.sweep.trial import FINISHED_FLAG, GRID_PARAM, TrialPlan, tune_trainable
from ajepa.sweep.trials import CONTROL, Sweep, spec_hash_without_controls

log = logging.getLogger(__name__)

STATE_FILE = "sweep.json"
TUNE_DIR = "tune"
# Tune's own per-trial loggers (progress.csv, result.json, params.pkl, tfevents) duplicate
# what MLflow records; strict metric checking would reject reports made before the first
# evaluation (the eval metric only exists from then on).
# RAY_AIR_NEW_OUTPUT=0 selects the classic CLIReporter, whose columns we can name (axis
# labels, step, loss, the search metric) instead of Ray's guessed ones.
TUNE_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
            "RAY_AIR_NEW_OUTPUT": "0"}


@dataclass
class RunOptions:
    address: str | None = None          # existing Ray cluster ("auto", "ray://host:10001", "host:6379")
    num_cpus: float | None = None       # local cluster only
    num_gpus: float | None = None       # local cluster only
    max_concurrent: int | None = None   # overrides spec.max_concurrent_trials (new sweeps only)
    resume: bool = False                # require saved state
    fresh: bool = False                 # discard saved Ray state and trial folders first
    retry_failed: bool = False          # on resume, retry trials that failed for good
    check_resources: bool = True
    trainer: str = "ajepa.train:Trainer"
    callbacks: tuple = ()               # extra trainer callback factories (see TrialPlan.callbacks)
    verbose: int = 1
    prepare: bool = True                # compute shared data stats once before Ray starts
    echo: Callable[[str], None] = print


@dataclass
class SweepOutcome:
    sweep: Sweep
    parent_run_id: str
    experiment_id: str
    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)   # trial id -> reason
    interrupted: bool = False
    error: str | None = None                                  # the sweep itself crashed
    elapsed_s: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.counts.get("failed", 0) else 0


# --------------------------------------------------------------------------- state


def read_state(sweep: Sweep) -> dict | None:
    path = sweep.sweep_dir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_state(sweep: Sweep, state: dict) -> None:
    sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep.sweep_dir / STATE_FILE, json.dumps(state, indent=2))


def check_state(sweep: Sweep, state: dict | None, opts: RunOptions) -> None:
    """Refuse to resume a different experiment into the same folder and parent run."""
    where = sweep.sweep_dir
    if state is None:
        if opts.resume:
            raise SpecError(f"--resume: nothing to resume in {where} (no {STATE_FILE}); run without --resume")
        return
    if state.get("spec_hash") != sweep.spec_hash:
        without_controls = sweep.controls and state.get("spec_hash") == spec_hash_without_controls(sweep)
        raise SpecError(
            f"{where} holds sweep {sweep.name!r} started from a different spec or base config "
            f"(hash {state.get('spec_hash')} there, {sweep.spec_hash} now).\n"
            + ("  It was started without control trials: add `control: false` to the spec to resume it as it "
               "was, or pass --fresh to rerun it with them (its MLflow runs stay).\n" if without_controls else
               "  Fix: restore the original values to resume it, pass --fresh to start over in that folder "
               "(its MLflow runs stay), or give the sweep another name.")
        )
    if state.get("tracking_uri") != sweep.tracking_uri:
        raise SpecError(
            f"{where} was tracked in {state.get('tracking_uri')}, now {sweep.tracking_uri}: pass "
            f"--tracking-uri {state.get('tracking_uri')} to resume, or --fresh to start over."
        )


def discard_state(sweep: Sweep, state: dict | None) -> None:
    """--fresh: close the old parent run if it is open and remove Ray state and checkpoints."""
    if state and state.get("parent_run_id"):
        try:
            client = tracking.client_for(state["tracking_uri"])
            run = client.get_run(state["parent_run_id"])
            if run.info.status == "RUNNING":
                tracking.close_parent(client, run.info.run_id, "KILLED", {TAG_STOP: "replaced by --fresh"})
        except Exception as err:  # an unreachable old store must not block a fresh start
            log.warning("could not close the previous parent run: %s", err)
    for sub in (TUNE_DIR, "trials", "pretraining", "ddp", STATE_FILE):
        path = sweep.sweep_dir / sub
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# --------------------------------------------------------------------------- Ray pieces


class TrialRunCloser(tune.Callback):
    """Driver-side safety net: close MLflow runs a trial process could not close itself.

    A trial killed by the OS (OOM), by a lost node, or stopped early by ASHA never reaches
    the trainer's ``on_end``; its run would stay RUNNING forever.
    """

    def __init__(self, ctx: tracking.TrackingContext):
        self.ctx = ctx

    def on_trial_error(self, iteration, trials, trial, **info):
        reason = _trial_error(trial)
        self._close(trial, "FAILED", reason)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        if result.get(FINISHED_FLAG):
            self._close(trial, "FINISHED", None)  # normally closed by the trial already
        else:
            self._close(trial, "KILLED", f"stopped early by the scheduler at step {result.get('step', '?')}")

    def _close(self, trial, status: str, reason: str | None) -> None:
        try:
            tracking.close_trial_run(self.ctx, trial_key(trial), status, reason)
        except Exception as err:  # tracking trouble must not stop the sweep
            log.warning("could not close the MLflow run of %s: %s", trial, err)


def trial_key(trial) -> str:
    """The id a trial's MLflow run is tagged with (grid/random: spec-derived; Optuna: Ray's id)."""
    config = trial.config or {}
    return config[GRID_PARAM]["key"] if GRID_PARAM in config else trial.trial_id


def trial_name(trial) -> str:
    return trial_key(trial)


def _trial_error(trial) -> str:
    try:
        error = trial.get_error()
        text = str(error) if error is not None else ""
    except Exception:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "trial process failed") + " (see the trial's error.txt or Ray logs)"


def param_space(sweep: Sweep) -> dict:
    if sweep.spec.search.kind != "optuna":
        # axis labels are only shown in the live table; a control trial shows "control" there
        return {GRID_PARAM: tune.grid_search([
            {"key": t.key, "seed": t.seed, **({a.name: CONTROL for a in sweep.spec.axes} if t.is_control else t.labels)}
            for t in sweep.launch_order()])}
    space = {}
    for axis in sweep.spec.axes:
        dist = axis.distribution
        if dist is None:
            space[axis.name] = tune.choice(axis.labels())
        elif dist.kind == "uniform":
            space[axis.name] = tune.uniform(dist.low, dist.high)
        elif dist.kind == "loguniform":
            space[axis.name] = tune.loguniform(dist.low, dist.high)
        else:
            space[axis.name] = tune.randint(int(dist.low), int(dist.high) + 1)
    return space


def search_alg(sweep: Sweep):
    if sweep.spec.search.kind != "optuna":
        return None
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    s = sweep.spec.search
    searcher = OptunaSearch(metric=s.metric, mode=s.mode, seed=s.seed)
    # Repeater gives each suggestion to every seed and tells Optuna the mean over seeds.
    return Repeater(searcher, repeat=len(sweep.spec.seeds))


def scheduler(sweep: Sweep):
    spec = sweep.spec
    if spec.scheduler.kind == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    max_t = spec.scheduler.max_t or max((trial_cost(t.config()).steps or 0 for t in sweep.trials), default=0)
    if not max_t:
        if sweep.trials:
            raise SpecError(f"{sweep.path}: scheduler.max_t is needed when trials run for epochs")
        max_t = trial_cost(sweep.build_trial(0, "probe", spec.seeds[0], {}, {}).config()).steps or 0
        if not max_t:
            raise SpecError(f"{sweep.path}: scheduler.max_t is needed when trials run for epochs")
    return ASHAScheduler(time_attr="step", metric=spec.scheduler_metric, mode=spec.scheduler_mode, max_t=max_t,
                         grace_period=min(spec.scheduler.grace_period, max_t),
                         reduction_factor=spec.scheduler.reduction_factor, brackets=spec.scheduler.brackets,
                         # a trial reaching max_t still needs its final evaluation: never cut it there
                         stop_last_trials=False)


def progress_reporter(sweep: Sweep) -> tune.CLIReporter:
    """The live trial table: one row per trial with its axis labels, seed, step and metrics."""
    spec = sweep.spec
    if spec.search.kind == "optuna":
        params = {a.name: a.name for a in spec.axes}
    else:
        params = {f"{GRID_PARAM}/{a.name}": a.name for a in spec.axes} | {f"{GRID_PARAM}/seed": "seed"}
    metrics = {"step": "step", METRIC_TRAIN_LOSS: "loss"}
    for name in [spec.search.metric, spec.scheduler.metric]:
        if name:
            metrics[name] = name.split("/", 1)[1] if name.startswith("eval/") else name
    return tune.CLIReporter(parameter_columns=params, metric_columns=metrics, max_report_frequency=30,
                            max_progress_rows=100, max_column_length=28)


def build_tuner(sweep: Sweep, plan: TrialPlan, opts: RunOptions) -> tune.Tuner:
    spec = sweep.spec
    res = spec.resources
    trainable = tune.with_parameters(tune_trainable, plan=plan)
    # DDP trials: the Tune trial only drives a TorchTrainer, whose workers reserve the resources.
    request = {"cpu": DDP_DRIVER_CPU} if res.workers > 1 else {"cpu": res.cpu, "gpu": res.gpu}
    trainable = tune.with_resources(trainable, request)
    exp_dir = sweep.sweep_dir / TUNE_DIR
    if tune.Tuner.can_restore(str(exp_dir)):
        log.info("resuming the Ray experiment in %s", exp_dir)
        return tune.Tuner.restore(str(exp_dir), trainable, resume_unfinished=True,
                                  resume_errored=opts.retry_failed, restart_errored=False)
    num_samples = 1 if spec.search.kind != "optuna" else spec.search.num_samples * len(spec.seeds)
    grid = spec.search.kind != "optuna"
    return tune.Tuner(
        trainable,
        param_space=param_space(sweep),
        tune_config=tune.TuneConfig(
            search_alg=search_alg(sweep), scheduler=scheduler(sweep), num_samples=num_samples,
            max_concurrent_trials=opts.max_concurrent or spec.max_concurrent_trials,
            trial_name_creator=trial_name if grid else None,
            trial_dirname_creator=trial_name if grid else None,
            # A trial process imports torch, the model code and MLflow (seconds); reusing it
            # for the next trial of the same resources skips that. Failed actors are not reused.
            reuse_actors=res.workers == 1,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=str(sweep.sweep_dir),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[TrialRunCloser(plan.ctx)], verbose=opts.verbose,
            progress_reporter=progress_reporter(sweep),
        ),
    )


def connect(sweep: Sweep, opts: RunOptions) -> ClusterResources:
    """What the cluster offers, checked against one trial's request.

    The local cluster is only described here (Ray starts later, in :func:`start_local_ray`),
    so a request it cannot meet fails before anything starts; an existing cluster has to be
    joined to be asked.
    """
    import ray

    if ray.is_initialized():
        cluster = connected_resources()
    elif opts.address:
        ray.init(address=opts.address)
        cluster = connected_resources(opts.address)
    else:
        cluster = local_resources(opts.num_cpus, opts.num_gpus)
    if opts.check_resources:
        check_resources(sweep.spec.resources, cluster, str(sweep.path))
    return cluster


def start_local_ray(opts: RunOptions, sweep: Sweep) -> local_ray.LocalRay | None:
    """A local Ray on 127.0.0.1 that ends with this process (:mod:`ajepa.sweep.local_ray`);
    ``None`` when Ray is already initialised (joined with ``--address``, or by the caller)."""
    return local_ray.start(sweep.sweep_dir, num_cpus=opts.num_cpus, num_gpus=opts.num_gpus)


# --------------------------------------------------------------------------- the run


def run_sweep(sweep: Sweep, opts: RunOptions | None = None) -> SweepOutcome:
    """Run (or resume) the sweep; returns counts. Spec, state and resource errors raise SpecError."""
    opts = opts or RunOptions()
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    started = time.time()

    state = read_state(sweep)
    previous = local_ray.check_driver(sweep.sweep_dir)  # refused while another live driver runs this sweep
    if previous is not None:  # it was killed: close what it left RUNNING, whatever this run does next
        local_ray.close_dead_driver_runs(state, previous)
    if not opts.fresh:
        check_state(sweep, state, opts)
    connect(sweep, opts)
    if opts.fresh:  # only once the request is known to be runnable
        discard_state(sweep, state)
        state = None
    local_ray.claim_driver(sweep.sweep_dir)
    if opts.prepare:
        from ajepa.sweep.prepare import prepare_data

        prepare_data(sweep, echo=opts.echo)

    client = tracking.client_for(sweep.tracking_uri)
    experiment_id = tracking.ensure_experiment(client, sweep.experiment, sweep.tracking_uri, sweep.storage)
    commit = tracking.git_commit(Path(__file__).resolve().parent)
    parent = tracking.open_parent(client, experiment_id, sweep, commit,
                                  run_id=state.get("parent_run_id") if state else None)
    write_state(sweep, {"spec_hash": sweep.spec_hash, "parent_run_id": parent, "tracking_uri": sweep.tracking_uri,
                        "experiment": sweep.experiment, "experiment_id": experiment_id,
                        "spec_file": str(sweep.path.resolve()), "started": state.get("started") if state else started})
    ctx = tracking.TrackingContext(uri=sweep.tracking_uri, experiment_id=experiment_id, parent_run_id=parent,
                                   sweep=sweep.name, spec_hash=sweep.spec_hash, git_commit=commit,
                                   log_encoder=sweep.spec.tracking.log_encoder,
                                   short_labels=tracking.short_labels(sweep.axes_tag()))
    ray_handle = start_local_ray(opts, sweep)
    plan = TrialPlan(sweep=sweep, ctx=ctx, trainer=opts.trainer, callbacks=tuple(opts.callbacks))
    outcome = SweepOutcome(sweep, parent, experiment_id)
    try:
        build_tuner(sweep, plan, opts).fit()
        # Tune returns normally after Ctrl-C too (its trial statuses are already reset by
        # then), so ask MLflow: a run still RUNNING was cut off, a missing one never started.
        runs = tracking.child_runs(client, experiment_id, parent)
        outcome.interrupted = len(runs) < sweep.num_trials or any(r.info.status == "RUNNING" for r in runs)
    except KeyboardInterrupt:
        outcome.interrupted = True
    except BaseException as err:  # close the runs with the reason, then let it surface
        outcome.error = f"{type(err).__name__}: {err}"
        _finish(outcome, client, ctx, started)
        raise
    finally:
        local_ray.stop(ray_handle)
        local_ray.release_driver(sweep.sweep_dir)
    _finish(outcome, client, ctx, started)
    return outcome


def _finish(outcome: SweepOutcome, client, ctx: tracking.TrackingContext, started: float) -> None:
    """Close what the run left open, count trials from MLflow, close the parent run."""
    sweep = outcome.sweep
    reason = ("sweep interrupted; re-run the same command to resume" if outcome.interrupted
              else f"the sweep crashed: {outcome.error}" if outcome.error
              else "the sweep ended without this trial finishing")
    tracking.close_orphans(ctx, reason)
    runs = tracking.child_runs(client, ctx.experiment_id, ctx.parent_run_id)
    counts = {"total": sweep.num_trials, "finished": 0, "failed": 0, "stopped": 0, "interrupted": 0}
    for run in runs:
        status = run.info.status
        if status == "FINISHED":
            counts["finished"] += 1
        elif status == "FAILED":
            counts["failed"] += 1
            outcome.failures[run.data.tags.get(TAG_TRIAL_ID, run.info.run_id)] = \
                run.data.tags.get(TAG_ERROR, "unknown")
        elif "stopped early" in run.data.tags.get(TAG_STOP, ""):
            counts["stopped"] += 1
        else:
            counts["interrupted"] += 1
    counts["not_started"] = max(0, sweep.num_trials - len(runs))
    outcome.counts = counts
    outcome.elapsed_s = time.time() - started
    status = "KILLED" if outcome.interrupted else ("FAILED" if counts["failed"] or outcome.error else "FINISHED")
    tags = {f"ajepa.trials_{k}": str(v) for k, v in counts.items()}
    tags["ajepa.status"] = "interrupted" if outcome.interrupted else ("crashed" if outcome.error else "done")
    if outcome.error:
        tags[TAG_ERROR] = outcome.error
    if sweep.spec.search.kind == "optuna":  # the values Optuna drew are only known now
        seen: dict[str, list[str]] = {}
        for run in runs:
            for axis in sweep.spec.axes:
                label = run.data.tags.get(TAG_AXIS_PREFIX + axis.name)
                if label is not None:
                    seen.setdefault(axis.name, []).append(label)
        tags[TAG_AXES] = json.dumps(sweep.axes_tag(seen))
    try:  # per-row means on the parent run: the collapsed runs table says how the sweep came out
        tracking.log_sweep_summary(client, ctx.parent_run_id, sweep, runs)
    except Exception as err:  # a summary must not keep the parent run open
        log.warning("could not log the sweep summary: %s", err)
    tracking.close_parent(client, ctx.parent_run_id, status, tags)
