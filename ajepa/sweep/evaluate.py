"""Evaluate a finished sweep again, on new tasks, with new evaluation settings or at the
checkpoints kept during pretraining, without retraining:
``ajepa-sweep SPEC --evaluate TASK [--evaluate-data PATH] [--at-steps all|N,M] [eval overrides]``.

Each finished trial's final checkpoint (its own, or the pretraining it shares: the folder
its run's ``ajepa.pretraining`` tag names, so a later commit still finds it) is loaded and
evaluated with the trial's config plus the new ``eval`` settings; each control trial's
encoder is rebuilt exactly as the trainer builds it (``torch.manual_seed(seed)`` right
before ``AJEPA(cfg)``). The metrics land in the trial's existing MLflow child run, at the
step they were measured, with the per-clip predictions as artifacts, so ``ajepa-tables``
shows the new task as new columns of the same table.

``--at-steps`` also evaluates the step checkpoints kept during pretraining
(``keep_checkpoints: K`` keeps the last K-1 ``step<N>.pt`` besides ``last.pt``; one is
written every ``checkpoint_every`` steps): "all" of them, or the steps listed. Each lands
at its own step of the run's metric history, which ``ajepa-tables --at-step N`` tabulates
and ``ajepa-tables --out`` plots as probe learning curves. MLflow's latest value of a metric
is the one at the highest step, so the table's default (final) cells do not change.

Idempotent per step: a step at which the run already holds the task's metrics
(``eval/<task name>/...``, from training or an earlier ``--evaluate``) is skipped, so
running it twice adds nothing, and a re-run after a failure does only what is missing.
Without ``--address`` it runs in the driver, one checkpoint after another (evaluation is
short next to pretraining; the embedding cache makes a repeat cheap); with ``--address``
each checkpoint is a Ray task with one trial's resources on that cluster, which logs into
the store itself (so the store and the storage folder must be reachable from every node,
as for the sweep). A failing checkpoint is reported and the others go on.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ajepa.config import EvalTask, apply_overrides, build_config
from ajepa.contracts import PREDICTIONS, SpecError, logged_value
from ajepa.eval.run import task_prefix
from ajepa.sweep import tracking
from ajepa.sweep.trials import Sweep, Trial

FINAL = "final"
ALL_STEPS = "all"


@dataclass
class EvaluationOutcome:
    evaluated: list[str] = field(default_factory=list)   # trial keys (once per checkpoint evaluated)
    skipped: dict[str, str] = field(default_factory=dict)  # trial key -> why nothing was evaluated
    steps: dict[str, list[int]] = field(default_factory=dict)  # trial key -> the steps evaluated now
    failed: dict[str, str] = field(default_factory=dict)  # "trial @ step N" -> why


def parse_steps(text: str | None) -> str | list[int]:
    """``--at-steps``: None -> "final" (the final checkpoint), "all", or "200,400" -> [200, 400]."""
    if text is None:
        return FINAL
    if text.strip() == ALL_STEPS:
        return ALL_STEPS
    try:
        steps = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        steps = []
    if not steps or min(steps) < 0:
        raise SpecError(f"--at-steps {text!r}: give 'all' or pretraining steps like 200,400")
    return steps


@dataclass
class Job:
    """One checkpoint to evaluate and the run its metrics go to."""

    trial: Trial
    run_id: str
    step: int
    checkpoint: Path | None  # None: the control's initial encoder
    where: str               # artifact folder of its per-clip predictions


def evaluate_sweep(sweep: Sweep, task: EvalTask, overrides: list[str] | dict[str, Any] = (),
                   echo: Callable[[str], None] = print, steps: str | list[int] = FINAL,
                   on_ray: bool = False) -> EvaluationOutcome:
    """Evaluate every finished trial and control of ``sweep`` on ``task`` at ``steps``
    (:func:`parse_steps`; module docstring). ``on_ray``: one Ray task per checkpoint with
    the spec's per-trial resources, on the cluster Ray is connected to; else one after
    another in this process."""
    from ajepa.sweep.runner import read_state

    state = read_state(sweep)
    if not state or not state.get("parent_run_id"):
        raise SpecError(f"{sweep.sweep_dir}: the sweep has not run yet (no sweep.json); run it first")
    uri = state["tracking_uri"]
    outcome = EvaluationOutcome()
    jobs = plan_jobs(sweep, task, steps, uri, state["parent_run_id"], outcome)
    overrides = list(overrides) if not isinstance(overrides, dict) else overrides
    run = _on_ray(sweep) if on_ray else _in_process
    for job, metrics in run(jobs, task, overrides, uri):
        if isinstance(metrics, str):  # the job failed: why, in one line
            outcome.failed[f"{job.trial.key} @ step {job.step}"] = metrics
            echo(f"{job.trial.key} @ step {job.step}: FAILED {metrics}")
            continue
        outcome.evaluated.append(job.trial.key)
        outcome.steps.setdefault(job.trial.key, []).append(job.step)
        shown = ", ".join(f"{k}={logged_value(k, v, True):.4g}" for k, v in metrics.items()
                          if k.count("/") == 2 and not k.endswith("_std"))  # in points, as the table shows them
        echo(f"{job.trial.key} @ step {job.step}: {shown}")
    return outcome


def plan_jobs(sweep: Sweep, task: EvalTask, steps: str | list[int], uri: str, parent: str,
              outcome: EvaluationOutcome) -> list[Job]:
    """Every (finished run, kept checkpoint) not yet evaluated on ``task``; why a run has
    none goes to ``outcome.skipped``."""
    client = tracking.client_for(uri)
    experiment = client.get_experiment_by_name(sweep.experiment)
    prefix = f"eval/{task_prefix(task)}/"
    jobs = []
    for trial in sweep.trials:
        run = tracking.find_trial_run(client, experiment.experiment_id, parent, trial.key)
        if run is None or run.info.status != "FINISHED":
            outcome.skipped[trial.key] = "not finished"
            continue
        folder = _checkpoint_folder(sweep, trial, run)
        available = {0: None} if trial.is_control else _kept_checkpoints(folder)
        if not available:
            outcome.skipped[trial.key] = f"no checkpoint in {folder}"
            continue
        wanted = _wanted(available, steps, trial.is_control)
        done = _steps_with(client, run, prefix)
        todo = [step for step in wanted if step not in done]
        if not todo:
            missing = [s for s in (steps if isinstance(steps, list) else []) if s not in available]
            outcome.skipped[trial.key] = (f"already has {prefix}* at step {', '.join(map(str, wanted))}" if wanted
                                          else f"kept no checkpoint at step {', '.join(map(str, missing))} "
                                               f"(kept: {', '.join(map(str, sorted(available)))})")
            continue
        final = max(available)
        for step in todo:
            # the final step's per-clip predictions are the ones the clip-level test reads;
            # an earlier step's go one folder down, beside them
            where = PREDICTIONS if step == final else f"{PREDICTIONS}/step{step:08d}"
            jobs.append(Job(trial, run.info.run_id, step, available[step], where))
    return jobs


def evaluate_job(job: Job, task: EvalTask, overrides, uri: str) -> dict[str, float]:
    """Evaluate one checkpoint and log its metrics and predictions into its run: the unit of
    work, in this process or as a Ray task (it needs only the store and the checkpoint)."""
    metrics, predictions = _evaluate_checkpoint(job.trial, task, overrides, job.checkpoint, job.where)
    _log(tracking.client_for(uri), job.run_id, metrics, job.step, predictions, job.where)
    return metrics


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__


def _in_process(jobs: list[Job], task, overrides, uri):
    """Each job in turn; a failing one yields its reason and the others still run."""
    for job in jobs:
        try:
            yield job, evaluate_job(job, task, overrides, uri)
        except Exception as err:  # one bad checkpoint must not cost the other evaluations
            yield job, _one_line(err)


def _on_ray(sweep: Sweep):
    """Run the jobs as Ray tasks sized like one trial (``resources.cpu``/``gpu``), yielding
    each as it finishes (a failed one: its reason)."""
    def run(jobs: list[Job], task, overrides, uri):
        import ray

        res = sweep.spec.resources
        remote = ray.remote(num_cpus=res.cpu, num_gpus=res.gpu, max_retries=0)(evaluate_job)
        pending = {remote.remote(job, task, overrides, uri): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                yield job, ray.get(ready[0])
            except ray.exceptions.RayTaskError as err:
                yield job, _one_line(err.cause if err.cause is not None else err)
    return run


def _checkpoint_folder(sweep: Sweep, trial: Trial, run) -> Path:
    """Where the trial's checkpoints are: the shared pretraining its run was tagged with
    (not today's signature, which a new commit changes), else its own folder."""
    from ajepa.contracts import TAG_PRETRAINING
    from ajepa.train.checkpoint import checkpoint_path

    signature = run.data.tags.get(TAG_PRETRAINING)
    if signature:
        return sweep.pretraining_dir(signature)
    return checkpoint_path(Path(trial.tree["out_dir"])).parent


def _kept_checkpoints(folder: Path) -> dict[int, Path]:
    """step -> checkpoint file: every ``step<N>.pt`` and ``last.pt`` (at the step it holds)."""
    from ajepa.train.checkpoint import LAST, load_checkpoint

    kept = {}
    for path in sorted(folder.glob("step*.pt")):
        try:
            kept[int(path.stem[len("step"):])] = path
        except ValueError:
            continue
    last = folder / LAST
    if last.is_file():  # memory-mapped: only the step is read, not a ViT-B's weights
        kept[int(load_checkpoint(last, mmap=True)["step"])] = last
    return kept


def _wanted(available: dict[int, Path | None], steps: str | list[int], control: bool) -> list[int]:
    if control or steps == FINAL:
        return [max(available)]  # a control is the encoder at step 0 and has nothing else
    if steps == ALL_STEPS:
        return sorted(available)
    return [s for s in steps if s in available]


def _steps_with(client, run, prefix: str) -> set[int]:
    """The steps at which the run already logged the task's metrics."""
    keys = sorted(k for k in run.data.metrics if k.startswith(prefix))
    return {m.step for m in client.get_metric_history(run.info.run_id, keys[0])} if keys else set()


def _trial_config(trial: Trial, task: EvalTask, overrides):
    tree = apply_overrides(trial.tree, overrides)
    tree = apply_overrides(tree, {"eval.tasks": [task.model_dump(mode="json", exclude_none=True)],
                                  "eval.suite": None})
    return build_config(tree, f"trial {trial.key} + --evaluate")


def _evaluate_checkpoint(trial: Trial, task: EvalTask, overrides, path: Path | None, where: str
                         ) -> tuple[dict[str, float], Path]:
    """The task's metrics of the encoder in checkpoint ``path`` (None: the control's
    initial encoder), and the folder of its per-clip predictions (also copied to
    ``<out_dir>/<where>``)."""
    import torch

    from ajepa.eval import build_evaluator
    from ajepa.models import AJEPA
    from ajepa.train.checkpoint import load_checkpoint

    cfg = _trial_config(trial, task, overrides)
    if path is None:
        torch.manual_seed(cfg.seed)  # as the trainer does, right before building the model
        model = AJEPA(cfg)
    else:
        state = load_checkpoint(path)
        model = AJEPA(build_config(state["config"], f"{trial.key} checkpoint {path.name}"))
        model.load_state_dict(state["model"])
        step = int(state["step"])
    model.eval()
    predictions = Path(tempfile.mkdtemp(prefix=f"ajepa-eval-{trial.key}-"))
    evaluator = build_evaluator(cfg, predictions_dir=predictions)
    if evaluator is None:  # pragma: no cover - a task was given
        raise SpecError("--evaluate: nothing to evaluate")
    with torch.no_grad():
        metrics = evaluator({"target": model.target_encoder, "context": model.context_encoder},
                            0 if path is None else step)
    metrics.pop("eval/step", None)
    (Path(cfg.out_dir) / where).mkdir(parents=True, exist_ok=True)
    for csv in predictions.glob("*.csv"):  # beside the trial's own predictions, as the trainer writes them
        (Path(cfg.out_dir) / where / csv.name).write_bytes(csv.read_bytes())
    return metrics, predictions


def _log(client, run_id: str, metrics: dict[str, float], step: int, predictions: Path, where: str) -> None:
    import time

    from mlflow.entities import Metric

    from ajepa.contracts import TAG_UNITS, UNITS_POINTS

    points = client.get_run(run_id).data.tags.get(TAG_UNITS) == UNITS_POINTS  # the run's own convention
    now = int(time.time() * 1000)
    batch = [Metric(k, logged_value(k, v, points), now, step)
             for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i:i + 1000])
    if any(predictions.glob("*.csv")):
        client.log_artifacts(run_id, str(predictions), where)


def parse_task(text: str, data: str | None) -> EvalTask:
    """``esc50`` (with ``data`` as its root or manifest) or a YAML mapping ``{task: esc50, root: ...}``."""
    from ajepa.config import TASK_TYPES, ConfigError, task_location
    from ajepa.config import parse_task as parse_task_tree
    from ajepa.contracts import load_yaml

    value = load_yaml(text)
    tree = value if isinstance(value, dict) else {"task": str(value)}
    if tree.get("task") not in TASK_TYPES:
        raise SpecError(f"--evaluate {text!r}: unknown task; choose one of {sorted(TASK_TYPES)}")
    if data is not None:
        tree = {**tree, **task_location(tree["task"], data)}
    try:
        return parse_task_tree(tree)
    except (ConfigError, ValueError) as err:
        raise SpecError(f"--evaluate {text!r}: {err}") from None
