"""What the sweep prints: the dry-run plan with its cost, and the end-of-sweep summary.

Kept apart from the runner so ``--dry-run`` never imports Ray or MLflow.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from ajepa.contracts import CONTROL_LABEL
from ajepa.sweep.cost import device_seconds, human_flops, human_seconds, trial_cost
from ajepa.sweep.resources import ClusterResources, concurrent_trials
from ajepa.sweep.trials import Sweep
from ajepa.train.checkpoint import LAST

if TYPE_CHECKING:
    from ajepa.sweep.runner import SweepOutcome


def mlflow_ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser (MLflow server)"
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)} --host 127.0.0.1"


def print_dry_run(sweep: Sweep, console: Console, cluster: ClusterResources | None) -> None:
    spec = sweep.spec
    res = spec.resources
    console.print(f"[bold]sweep {sweep.name}[/bold] ({sweep.path}) - {spec.description or 'no description'}")
    console.print(f"base {sweep.base_path}; search {spec.search.kind}; scheduler {spec.scheduler.kind}; "
                  f"spec hash {sweep.spec_hash}")
    if spec.search.kind == "optuna":
        table = Table(title=f"{sweep.num_trials} trials = {spec.search.num_samples} Optuna samples x "
                            f"{len(spec.seeds)} seeds, optimising {spec.search.metric} ({spec.search.mode})")
        table.add_column("axis")
        table.add_column("key(s)")
        table.add_column("space")
        for axis in spec.axes:
            space = (", ".join(axis.labels()) if axis.distribution is None else
                     f"{axis.distribution.kind}({axis.distribution.low:g}, {axis.distribution.high:g})")
            table.add_row(axis.name, ", ".join(axis.keys() if axis.values is not None else [axis.key]), space)
        console.print(table)
        configs = [sweep.build_trial(0, "estimate", spec.seeds[0], {}, {}).config()] * sweep.num_trials
    else:
        controls = len(sweep.controls)
        table = Table(title=f"{sweep.num_trials} trials" + (f" ({controls} control)" if controls else ""))
        table.add_column("#", justify="right")
        table.add_column("trial id")
        for axis in spec.axes:
            table.add_column(axis.name)
        table.add_column("seed", justify="right")
        table.add_column("steps", justify="right")
        configs = [t.config() for t in sweep.trials if not t.is_control]  # a control costs no training
        for trial in sweep.trials:
            cfg = trial.config()
            if trial.is_control:
                labels = [CONTROL_LABEL] + ["–"] * (len(spec.axes) - 1) if spec.axes else []
                table.add_row(str(trial.index), trial.key, *labels, str(trial.seed), "0 (control)")
                continue
            steps = trial_cost(cfg).steps
            table.add_row(str(trial.index), trial.key, *trial.labels.values(), str(trial.seed),
                          str(steps) if steps is not None else f"{cfg.optim.epochs:g} ep")
        console.print(table)
    console.print(_control_line(sweep))
    # trials of one pretraining signature share its checkpoint folder: it is trained once
    by_folder = {str(cfg.checkpoint_dir) if cfg.checkpoint_dir is not None else f"own {i}": cfg
                 for i, cfg in enumerate(configs)}
    if len(by_folder) < len(configs):
        console.print(f"shared pretraining: {len(configs)} trials use {len(by_folder)} pretrainings (trials that "
                      "differ only in evaluation settings train once; share_pretraining: false turns it off)")
    reused = [f for f in by_folder if not f.startswith("own ") and (Path(f) / LAST).is_file()]
    if reused:
        console.print(f"already pretrained: {len(reused)} of {len(by_folder)} pretrainings have a checkpoint "
                      "(resumed or reused, not retrained)")
    configs = list(by_folder.values())
    costs = [trial_cost(cfg) for cfg in configs]
    if any(c.flops is None for c in costs):
        console.print(f"cost: {sweep.num_trials} trials; length in epochs of a non-synthetic dataset, "
                      "so no compute estimate before the data is read")
    else:
        flops = sum(c.flops for c in costs)
        seconds, unit = 0.0, "CPU"
        for c in costs:
            s, unit = device_seconds(c.flops, res.gpu, res.cpu, res.workers)
            seconds += s
        devices = res.workers * (res.gpu if res.gpu else res.cpu)
        kind = "pretrainings"
        line = (f"cost: {len(costs)} {kind}, {sum(c.steps for c in costs):,} steps, "
                f"{sum(c.samples for c in costs):,} samples, ~{human_flops(flops)} (training matmuls only); "
                f"~{human_seconds(seconds)} of trial time at {res.workers} x {res.gpu if res.gpu else res.cpu:g} "
                f"{unit} per trial, ~{seconds * devices / 3600:.2g} {unit}-hours")
        if cluster is not None:
            parallel = concurrent_trials(res, cluster, spec.max_concurrent_trials)
            line += f"; ~{human_seconds(seconds / parallel)} wall on {cluster.where} ({parallel} at a time)"
        console.print(line + " (plus start-up and evaluation)")
    console.print(f"resources per trial: cpu {res.cpu:g}, gpu {res.gpu:g}, workers {res.workers}; "
                  f"max concurrent {spec.max_concurrent_trials or 'unlimited'}; retries {spec.max_failures}")
    console.print(f"storage {sweep.sweep_dir}; MLflow {sweep.tracking_uri} experiment {sweep.experiment!r}")
    console.print("[dim]dry run: nothing started[/dim]")


def _control_line(sweep: Sweep) -> str:
    spec = sweep.spec
    if sweep.controls:
        first = next(t for t in sweep.trials if not t.is_control)
        combo = ", ".join(f"{k}={v}" for k, v in first.labels.items()) or "the base config"
        return (f"control: {len(sweep.controls)} trials ({CONTROL_LABEL}: the encoder of {combo} as initialised, "
                "one per seed, evaluated like the trials without pretraining; control: false turns them off)")
    if not spec.control:
        return "control: off (control: false)"
    if spec.search.kind == "optuna":
        return "control: none (not available with search.kind=optuna)"
    return "control: none (the trial config evaluates nothing: eval.tasks is empty)"


def ablation_markdown(outcome: "SweepOutcome") -> str | None:
    """The ablation table from MLflow via ``analysis`` (None if that package is unavailable)."""
    try:
        from analysis.clips import load_predictions
        from analysis.render import render
        from analysis.report import build_report
        from analysis.runs import load_runs
    except ImportError:
        return None
    sweep = outcome.sweep
    runs = load_runs(sweep.tracking_uri, sweep.experiment, parent=outcome.parent_run_id, seeds=sweep.spec.seeds)
    report = build_report(runs, metrics=sweep.spec.metrics or None, paper=sweep.spec.table,
                          title=sweep.name, description=sweep.spec.description or None,
                          predictions=load_predictions(runs))
    return render(report, "md")


def print_outcome(outcome: "SweepOutcome", console: Console) -> None:
    sweep, c = outcome.sweep, outcome.counts
    try:
        table = ablation_markdown(outcome)
    except Exception as err:  # the summary must not hide the counts below
        table = None
        console.print(f"[yellow]no ablation table: {type(err).__name__}: {err}[/yellow]")
    if table:
        print(table, flush=True)  # plain print: rich would re-wrap the markdown table
        try:
            from ajepa.sweep.tracking import client_for

            client_for(sweep.tracking_uri).log_text(outcome.parent_run_id, table, "ablation.md")
        except Exception:
            pass
    parts = [f"{c.get('finished', 0)} finished", f"{c.get('failed', 0)} failed"]
    parts += [f"{c[k]} {k.replace('_', ' ')}" for k in ("stopped", "interrupted", "not_started") if c.get(k)]
    style = "green" if outcome.exit_code == 0 else ("yellow" if outcome.interrupted else "red")
    console.print(f"[bold {style}]sweep {sweep.name}: {c.get('total', 0)} trials: {', '.join(parts)}[/] "
                  f"in {human_seconds(outcome.elapsed_s)}")
    for key, reason in outcome.failures.items():
        console.print(f"  [red]FAILED[/red] {key}: {reason}", highlight=False, soft_wrap=True)
    if outcome.interrupted:
        console.print(f"interrupted: re-run the same command (or add --resume) to continue from {sweep.sweep_dir}")
    elif c.get("failed"):
        console.print("failed trials stay failed on a plain re-run; add --retry-failed to retry them "
                      "from their checkpoints")
    console.print(f"MLflow: experiment {sweep.experiment!r}, sweep run {outcome.parent_run_id}")
    console.print(f"  {mlflow_ui_command(sweep.tracking_uri)}")
