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
running it twice adds nothing. It runs in the driver, one checkpoint after another
(evaluation is short next to pretraining); the embedding cache makes a repeat cheap.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ajepa.config import EvalTask, apply_overrides, build_config
from ajepa.contracts import PREDICTIONS, SpecError
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


def evaluate_sweep(sweep: Sweep, task: EvalTask, overrides: list[str] | dict[str, Any] = (),
                   echo: Callable[[str], None] = print, steps: str | list[int] = FINAL) -> EvaluationOutcome:
    """Evaluate every finished trial and control of ``sweep`` on ``task`` at ``steps``
    (:func:`parse_steps`; module docstring)."""
    from ajepa.sweep.runner import read_state

    state = read_state(sweep)
    if not state or not state.get("parent_run_id"):
        raise SpecError(f"{sweep.sweep_dir}: the sweep has not run yet (no sweep.json); run it first")
    client = tracking.client_for(state["tracking_uri"])
    experiment = client.get_experiment_by_name(sweep.experiment)
    prefix = f"eval/{task_prefix(task)}/"
    outcome = EvaluationOutcome()
    for trial in sweep.trials:
        run = tracking.find_trial_run(client, experiment.experiment_id, state["parent_run_id"], trial.key)
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
            metrics, predictions = _evaluate_checkpoint(trial, task, overrides, available[step], where)
            _log(client, run.info.run_id, metrics, step, predictions, where)
            outcome.evaluated.append(trial.key)
            outcome.steps.setdefault(trial.key, []).append(step)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.count("/") == 2)
            echo(f"{trial.key} @ step {step}: {shown}")
    return outcome


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
    if last.is_file():
        kept[int(load_checkpoint(last)["step"])] = last
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

    from ajepa.contracts import TAG_UNITS, UNITS_POINTS, logged_value

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
