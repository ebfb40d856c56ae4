"""Evaluate a finished sweep again, on new tasks or with new evaluation settings, without
retraining: ``ajepa-sweep SPEC --evaluate TASK [--evaluate-data PATH] [eval overrides]``.

Each finished trial's final checkpoint (its own, or the pretraining it shares) is loaded
and evaluated with the trial's config plus the new ``eval`` settings; each control trial's
encoder is rebuilt exactly as the trainer builds it (``torch.manual_seed(seed)`` right
before ``AJEPA(cfg)``). The metrics land in the trial's existing MLflow child run, at the
step they were measured (the final pretraining step), with the per-clip predictions as
artifacts, so ``ajepa-tables`` shows the new task as new columns of the same table.

Idempotent: a run that already holds metrics of the task (``eval/<task name>/...``) is
skipped, so running it twice adds nothing. It runs in the driver, one trial after another
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


@dataclass
class EvaluationOutcome:
    evaluated: list[str] = field(default_factory=list)   # trial keys
    skipped: dict[str, str] = field(default_factory=dict)  # trial key -> why


def evaluate_sweep(sweep: Sweep, task: EvalTask, overrides: list[str] | dict[str, Any] = (),
                   echo: Callable[[str], None] = print) -> EvaluationOutcome:
    """Evaluate every finished trial and control of ``sweep`` on ``task`` (module docstring)."""
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
        if any(key.startswith(prefix) for key in run.data.metrics):
            outcome.skipped[trial.key] = f"already has {prefix}*"
            continue
        metrics, step, predictions = _evaluate_trial(trial, task, overrides)
        _log(client, run.info.run_id, metrics, step, predictions)
        outcome.evaluated.append(trial.key)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.count("/") == 2)
        echo(f"{trial.key}: {shown}")
    return outcome


def _trial_config(trial: Trial, task: EvalTask, overrides):
    tree = apply_overrides(trial.tree, overrides)
    tree = apply_overrides(tree, {"eval.tasks": [task.model_dump(mode="json", exclude_none=True)],
                                  "eval.suite": None})
    return build_config(tree, f"trial {trial.key} + --evaluate")


def _evaluate_trial(trial: Trial, task: EvalTask, overrides) -> tuple[dict[str, float], int, Path]:
    import torch

    from ajepa.eval import build_evaluator
    from ajepa.models import AJEPA
    from ajepa.train.checkpoint import checkpoint_path, load_checkpoint

    cfg = _trial_config(trial, task, overrides)
    if trial.is_control:
        torch.manual_seed(cfg.seed)  # as the trainer does, right before building the model
        model, step = AJEPA(cfg), 0
    else:
        state = load_checkpoint(checkpoint_path(cfg.out_dir, folder=cfg.checkpoint_dir))
        model, step = AJEPA(build_config(state["config"], f"{trial.key} checkpoint")), int(state["step"])
        model.load_state_dict(state["model"])
    model.eval()
    predictions = Path(tempfile.mkdtemp(prefix=f"ajepa-eval-{trial.key}-"))
    evaluator = build_evaluator(cfg, predictions_dir=predictions)
    if evaluator is None:  # pragma: no cover - a task was given
        raise SpecError("--evaluate: nothing to evaluate")
    with torch.no_grad():
        metrics = evaluator({"target": model.target_encoder, "context": model.context_encoder}, step)
    metrics.pop("eval/step", None)
    (Path(cfg.out_dir) / PREDICTIONS).mkdir(parents=True, exist_ok=True)
    for csv in predictions.glob("*.csv"):  # beside the trial's own predictions, as the trainer writes them
        (Path(cfg.out_dir) / PREDICTIONS / csv.name).write_bytes(csv.read_bytes())
    return metrics, step, predictions


def _log(client, run_id: str, metrics: dict[str, float], step: int, predictions: Path) -> None:
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
        client.log_artifacts(run_id, str(predictions), PREDICTIONS)


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
