"""What a researcher sees in the MLflow UI of a sweep (issue 12), checked on a tmp SQLite store.

The trial callback and the driver's bookkeeping are driven by hand (no Ray, no training):
the experiment kind tag, run names, axis params, scores in points, system metrics and the
parent run's per-row summary; then ``analysis`` reads the same store back without scaling
the points again.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from ajepa.contracts import EXPERIMENT_KIND_TRAINING, TAG_EXPERIMENT_KIND, metric_key_part, to_points
from ajepa.sweep import tracking
from ajepa.sweep.spec import load_sweep
from ajepa.sweep.trial_run import MlflowTrialCallback

ROOT = Path(__file__).resolve().parents[1]
ACC = "eval/synthetic/acc"
SPEC = """name: view
description: masking strategy (view test)
base: {base}
storage: {storage}
metrics: [eval/synthetic/acc]
overrides: {{optim.steps: 4, optim.warmup: 1, data.synthetic.num_clips: 120}}
axes:
  - name: masking
    key: masking
    values:
      - {{label: "random patch 75 %", value: {{strategy: random, ratio: 0.75}}}}
      - {{label: "multi-block (4 blocks)", value: {{strategy: multiblock, num_blocks: 4, scale: [0.15, 0.2]}}}}
seeds: [0, 1]
"""
# per (label or "control", seed): the fraction the evaluator returns
SCORES = {("random patch 75 %", 0): 0.24444444, ("random patch 75 %", 1): 0.26,
          ("multi-block (4 blocks)", 0): 0.31, ("multi-block (4 blocks)", 1): 0.33,
          ("control", 0): 0.11, ("control", 1): 0.12}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.1")
    root = tmp_path_factory.mktemp("view")
    spec = root / "view.yaml"
    spec.write_text(SPEC.format(base=ROOT / "experiments" / "tiny.yaml", storage=root / "runs"))
    sweep = load_sweep(spec)
    client = tracking.client_for(sweep.tracking_uri)
    experiment_id = tracking.ensure_experiment(client, sweep.experiment, sweep.tracking_uri, sweep.storage)
    parent = tracking.open_parent(client, experiment_id, sweep, "abc")
    ctx = tracking.TrackingContext(uri=sweep.tracking_uri, experiment_id=experiment_id, parent_run_id=parent,
                                   sweep=sweep.name, spec_hash=sweep.spec_hash, git_commit="abc",
                                   short_labels=tracking.short_labels(sweep.axes_tag()))
    for trial in sweep.trials:
        callback = MlflowTrialCallback(ctx, trial)
        callback._log_mask_figure = lambda: None  # drawing masks is tested elsewhere
        callback.open()
        label = "control" if trial.is_control else trial.labels["masking"]
        callback.on_log(1, {"train/loss": 1.5, "train/lr": 1e-3})
        time.sleep(0.35)  # a few system-metric samples
        score = SCORES[(label, trial.seed)]
        callback.on_eval(4, {ACC: score, "eval/synthetic/acc_std": 0.01, "eval/step": 4})
        callback.on_end("FINISHED", {ACC: score, "eval/step": 4, "train/steps": 4})
    runs = tracking.child_runs(client, experiment_id, parent)
    tracking.log_sweep_summary(client, parent, sweep, runs)
    yield {"sweep": sweep, "client": client, "experiment_id": experiment_id, "parent": parent}
    monkeypatch.undo()


def children(store):
    return {r.data.tags["ajepa.trial_id"]: r for r in tracking.child_runs(store["client"], store["experiment_id"],
                                                                           store["parent"])}


def test_experiment_opens_as_model_training(store):
    experiment = store["client"].get_experiment(store["experiment_id"])
    assert experiment.tags[TAG_EXPERIMENT_KIND] == EXPERIMENT_KIND_TRAINING == "custom_model_development"


def test_run_names_start_with_the_seed_and_use_short_labels(store):
    names = sorted(r.info.run_name for r in children(store).values())
    assert names == ["s0 · control", "s0 · multi-block", "s0 · random patch 75%",
                     "s1 · control", "s1 · multi-block", "s1 · random patch 75%"]
    # a parenthesis is kept when dropping it would make two labels alike
    short = tracking.short_labels([{"name": "k", "labels": ["power (k=3)", "power (k=5)", "cosine"]}])
    assert short["k"] == {"power (k=3)": "power (k=3)", "power (k=5)": "power (k=5)", "cosine": "cosine"}


def test_axis_labels_are_params_and_absent_fields_are_not(store):
    runs = children(store)
    random = next(r for r in runs.values() if r.data.tags.get("ajepa.axis.masking") == "random patch 75 %")
    block = next(r for r in runs.values() if r.data.tags.get("ajepa.axis.masking") == "multi-block (4 blocks)")
    assert random.data.params["axis.masking"] == "random patch 75 %"
    assert block.data.params["axis.masking"] == "multi-block (4 blocks)"
    assert "masking.aspect_ratio" not in random.data.params and "masking.num_blocks" not in random.data.params
    assert block.data.params["masking.num_blocks"] == "4"
    control = next(r for r in runs.values() if r.data.tags["ajepa.role"] == "control")
    assert not any(k.startswith("axis.") for k in control.data.params)


def test_scores_are_logged_in_points_rounded(store):
    for run in children(store).values():
        assert run.data.tags["ajepa.units"] == "points"
        assert run.data.metrics["train/loss"] == 1.5 and run.data.metrics["eval/step"] == 4  # not scores
        assert run.data.metrics["eval/synthetic/acc_std"] == 1.0
    values = sorted(r.data.metrics[ACC] for r in children(store).values())
    assert values == [11.0, 12.0, 24.444, 26.0, 31.0, 33.0]
    assert to_points(0.24444444) == 24.444


@pytest.mark.skipif(importlib.util.find_spec("psutil") is None, reason="system metrics need psutil")
def test_trial_runs_have_system_metrics(store):
    for run in children(store).values():
        system = [k for k in run.data.metrics if k.startswith("system/")]
        assert "system/cpu_utilization_percentage" in system and "system/system_memory_usage_megabytes" in system


def test_parent_run_carries_per_row_means(store):
    parent = store["client"].get_run(store["parent"])
    metrics = parent.data.metrics
    key = f"rows/{metric_key_part('random patch 75 %')}/synthetic/acc"
    assert key == "rows/random patch 75pct/synthetic/acc"
    assert metrics[key] == pytest.approx((24.444 + 26.0) / 2)
    assert metrics["rows/multi-block 4 blocks/synthetic/acc"] == pytest.approx(32.0)
    assert metrics["rows/control initialisation/synthetic/acc"] == pytest.approx(11.5)
    assert metrics["best/eval/synthetic/acc"] == pytest.approx(32.0)  # the control row never wins
    assert parent.data.tags["ajepa.best_row/eval/synthetic/acc"] == "multi-block (4 blocks)"


def test_analysis_reads_points_back_unscaled(store):
    from analysis import build_report, load_runs, render

    runs = load_runs(store["sweep"].tracking_uri, "view")
    report = build_report(runs)
    table = report.table
    assert table.loc["multi-block (4 blocks)", (ACC, "mean")] == pytest.approx(32.0)
    assert table.loc["control: initialisation", (ACC, "mean")] == pytest.approx(11.5)
    assert table.attrs["in_points"] == [ACC, "eval/synthetic/acc_std"] and table.attrs["points"] == []
    assert "32.00 ± 1.41 (n=2)" in render(report, "md")


def test_runner_finish_logs_the_summary(store, monkeypatch):
    """The driver's _finish (what every sweep ends with) gives the parent its summary."""
    from ajepa.sweep import runner

    calls = []
    real = tracking.log_sweep_summary
    monkeypatch.setattr(tracking, "log_sweep_summary", lambda *a: calls.append(a[1]) or real(*a))

    sweep, client = store["sweep"], store["client"]
    ctx = tracking.TrackingContext(uri=sweep.tracking_uri, experiment_id=store["experiment_id"],
                                   parent_run_id=store["parent"], sweep=sweep.name, spec_hash=sweep.spec_hash,
                                   git_commit="abc")
    outcome = runner.SweepOutcome(sweep, store["parent"], store["experiment_id"])
    runner._finish(outcome, client, ctx, time.time())
    assert outcome.counts["finished"] == 6 and calls == [store["parent"]]
    assert client.get_run(store["parent"]).data.metrics["best/eval/synthetic/acc"] == pytest.approx(32.0)
