"""End-to-end sweeps on one local Ray (num_cpus=2) with tiny real trials.

Covers the acceptance list of the sweep issue: a grid x 2 seeds lands as nested MLflow
runs with params and metrics; a trial that raises once is retried from its checkpoint
while one that always raises is marked FAILED and the rest goes on; an interrupted sweep
resumes with exactly one run per trial; the Optuna + ASHA path runs.

Faults are injected through the runner's extra trainer callbacks; this module is pickled
by value so Ray's worker processes can run them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("ray")
pytest.importorskip("mlflow")

import ray.cloudpickle  # noqa: E402

from ajepa.sweep.runner import RunOptions, run_sweep  # noqa: E402
from ajepa.sweep.spec import load_sweep  # noqa: E402
from ajepa.train.callbacks import Callback  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data-cache")


def tiny_overrides(cache: Path, **extra) -> dict:
    return {"optim.steps": 4, "optim.warmup": 1, "optim.batch_size": 8, "log_every": 1, "checkpoint_every": 2,
            "data.synthetic.num_clips": 120, "data.cache_dir": str(cache), "eval.tasks": [], **extra}


def write_spec(tmp_path: Path, name: str, **fields) -> Path:
    spec = {"name": name, "base": str(ROOT / "experiments" / "tiny.yaml"), "storage": str(tmp_path / "store"),
            "resources": {"cpu": 1}, **fields}
    path = tmp_path / "sweeps" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def trial_runs(sweep, parent_run_id: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(sweep.tracking_uri)
    exp = client.get_experiment_by_name(sweep.experiment)
    return [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("ajepa.role") == "trial" and r.data.tags.get("mlflow.parentRunId") == parent_run_id]


def loss_steps(sweep, run) -> list[int]:
    from mlflow.tracking import MlflowClient

    return sorted(m.step for m in MlflowClient(sweep.tracking_uri).get_metric_history(run.info.run_id, "train/loss"))


# --------------------------------------------------------------------------- fault injection


class Faults:
    """Trial callback factory: ``behaviour[trial key prefix]`` -> callback for that trial."""

    def __init__(self, folder: Path, behaviour: dict[str, str], driver_pid: int | None = None):
        self.folder, self.behaviour, self.driver_pid = Path(folder), behaviour, driver_pid

    def __call__(self, trial):
        for prefix, kind in self.behaviour.items():
            if trial.key.startswith(prefix):
                return _Fault(kind, self.folder / trial.key, self.driver_pid)
        return Callback()


class _Fault(Callback):
    def __init__(self, kind: str, marker: Path, driver_pid: int | None):
        self.kind, self.marker, self.driver_pid = kind, marker, driver_pid

    def on_start(self, trainer):
        with open(f"{self.marker}.starts", "a") as fh:
            fh.write(f"{trainer.step}\n")

    def on_log(self, step, metrics):
        if step != 3:
            return
        if self.kind == "fail_always":
            raise RuntimeError("injected permanent failure")
        if self.marker.exists():
            return
        self.marker.touch()
        if self.kind == "fail_once":
            raise RuntimeError("injected failure")
        if self.kind == "interrupt":  # what Ctrl-C does to the driver
            os.kill(self.driver_pid, signal.SIGINT)
            time.sleep(30)  # still running when Tune stops the experiment


def starts(folder: Path, key: str) -> list[int]:
    path = folder / f"{key}.starts"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


# --------------------------------------------------------------------------- tests


def test_grid_two_seeds_lands_as_nested_runs(tmp_path, data_cache):
    spec = write_spec(
        tmp_path, "grid", table="loss",
        overrides=tiny_overrides(data_cache, **{"eval.tasks": [{"task": "synthetic", "protocol": "linear"}]}),
        axes=[{"name": "loss", "key": "loss.kind", "values": [{"label": "L2", "value": "l2"},
                                                             {"label": "L1", "value": "l1"}]}],
        seeds=[0, 1], search={"metric": "eval/synthetic/acc"},
    )
    sweep = load_sweep(spec)
    outcome = run_sweep(sweep, RunOptions(verbose=0))
    assert outcome.exit_code == 0, outcome.failures
    assert outcome.counts["finished"] == 4 + 2  # + one control trial per seed

    runs = trial_runs(sweep, outcome.parent_run_id)
    assert len(runs) == 4
    assert {(r.data.tags["ajepa.axis.loss"], r.data.tags["ajepa.seed"]) for r in runs} == \
        {("L2", "0"), ("L2", "1"), ("L1", "0"), ("L1", "1")}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(sweep.tracking_uri)
    controls = [r for r in client.search_runs([outcome.experiment_id])
                if r.data.tags.get("ajepa.role") == "control"]
    assert sorted(r.data.tags["ajepa.trial_id"] for r in controls) == ["control-s0", "control-s1"]
    for run in controls:  # the encoder at initialisation, probed like the trials
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == outcome.parent_run_id
        assert not any(tag.startswith("ajepa.axis.") for tag in run.data.tags)
        assert run.data.metrics["train/steps"] == 0 and run.data.metrics["eval/step"] == 0
        assert "eval/synthetic/acc" in run.data.metrics and "train/loss" not in run.data.metrics
        assert not (sweep.trial_dir(run.data.tags["ajepa.trial_id"]) / "checkpoints").exists()
    for run in runs + controls:  # every probe's per-clip test outcome, in MLflow and in the trial folder
        assert [a.path for a in client.list_artifacts(run.info.run_id, "predictions")] == \
            ["predictions/synthetic.csv"]
        assert (sweep.trial_dir(run.data.tags["ajepa.trial_id"]) / "predictions" / "synthetic.csv").is_file()
    from analysis import build_report, load_runs, render
    from analysis.clips import load_predictions

    frame = load_runs(sweep.tracking_uri, sweep.experiment)
    report = build_report(frame, predictions=load_predictions(frame))
    assert list(report.table.index) == ["L2", "L1", "control: initialisation"]
    markdown = render(report, "md")
    assert "Δ synthetic acc vs control" in markdown and "p (clips)" in markdown
    for run in runs:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED"
        assert tags["ajepa.sweep"] == "grid" and tags["ajepa.spec_hash"] == sweep.spec_hash
        assert tags["ajepa.trial_id"] and tags["ajepa.git_commit"]
        assert params["loss.kind"] == {"L2": "l2", "L1": "l1"}[tags["ajepa.axis.loss"]]
        assert params["seed"] == tags["ajepa.seed"] and params["optim.steps"] == "4"
        assert "eval/synthetic/acc" in metrics and "train/loss" in metrics
        assert loss_steps(sweep, run) == [1, 2, 3, 4]
    parent = client.get_run(outcome.parent_run_id)
    assert parent.data.tags["ajepa.role"] == "sweep" and parent.info.status == "FINISHED"
    assert parent.data.tags["ajepa.control"] == "1" and parent.data.tags["ajepa.num_trials"] == "6"
    assert json.loads(parent.data.tags["ajepa.axes"]) == [{"name": "loss", "labels": ["L2", "L1"]}]
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"config.yaml", "metrics.jsonl", "loss_curves.png"} <= artifacts
    # Tune's own per-trial loggers are off: no progress.csv / result.json / tfevents.
    tune_files = {p.name for p in (sweep.sweep_dir / "tune").rglob("*") if p.is_file()}
    assert not tune_files & {"progress.csv", "result.json", "params.pkl"}
    assert not any(name.startswith("events.out.tfevents") for name in tune_files)


def test_failures_retry_from_checkpoint_and_fail_for_good(tmp_path, data_cache):
    spec = write_spec(
        tmp_path, "faults", overrides=tiny_overrides(data_cache),
        axes=[{"name": "loss", "key": "loss.kind", "values": ["l2", "l1"]}], seeds=[0], max_failures=1,
    )
    sweep = load_sweep(spec)
    faults = Faults(tmp_path / "faults", {"000": "fail_once", "001": "fail_always"})
    faults.folder.mkdir()
    outcome = run_sweep(sweep, RunOptions(verbose=0, callbacks=(faults,)))

    assert outcome.exit_code == 1
    assert outcome.counts["finished"] == 1 and outcome.counts["failed"] == 1
    by_key = {r.data.tags["ajepa.trial_id"]: r for r in trial_runs(sweep, outcome.parent_run_id)}
    retried, broken = by_key["000-l2-s0"], by_key["001-l1-s0"]
    assert retried.info.status == "FINISHED" and retried.data.tags["ajepa.attempts"] == "2"
    assert starts(faults.folder, "000-l2-s0") == [0, 2]  # second attempt resumed from the step-2 checkpoint
    assert loss_steps(sweep, retried) == [1, 2, 3, 4]    # no step logged twice
    assert broken.info.status == "FAILED"
    assert "injected permanent failure" in broken.data.tags["ajepa.error"]
    assert "injected permanent failure" in outcome.failures["001-l1-s0"]


def test_interrupted_sweep_resumes_with_one_run_per_trial(tmp_path, data_cache):
    spec = write_spec(
        tmp_path, "resume", overrides=tiny_overrides(data_cache),
        axes=[{"name": "loss", "key": "loss.kind", "values": ["l2", "l1"]}], seeds=[0],
        max_concurrent_trials=1,
    )
    sweep = load_sweep(spec)
    faults = Faults(tmp_path / "faults", {"000": "interrupt"}, driver_pid=os.getpid())
    faults.folder.mkdir()
    first = run_sweep(sweep, RunOptions(verbose=0, callbacks=(faults,)))
    assert first.interrupted and first.exit_code == 130
    assert first.counts["finished"] == 0 and first.counts["interrupted"] == 1
    assert all(r.info.status != "RUNNING" for r in trial_runs(sweep, first.parent_run_id))  # no orphans

    second = run_sweep(load_sweep(spec), RunOptions(verbose=0))
    assert second.exit_code == 0 and not second.interrupted
    assert second.parent_run_id == first.parent_run_id
    runs = trial_runs(sweep, second.parent_run_id)
    keys = [r.data.tags["ajepa.trial_id"] for r in runs]
    assert sorted(keys) == sorted(t.key for t in sweep.trials)  # exactly one run per trial
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        assert loss_steps(sweep, run) == [1, 2, 3, 4]
    assert starts(faults.folder, "000-l2-s0")[0] == 0


def test_optuna_with_asha(tmp_path, data_cache):
    spec = write_spec(
        tmp_path, "optuna", overrides=tiny_overrides(data_cache),
        axes=[{"name": "lr", "key": "optim.lr", "distribution": {"kind": "loguniform", "low": 1e-4, "high": 1e-2}},
              {"name": "loss", "key": "loss.kind", "values": ["l2", "smooth_l1"]}],
        seeds=[0], search={"kind": "optuna", "metric": "train/loss", "mode": "min", "num_samples": 2},
        scheduler={"kind": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    sweep = load_sweep(spec)
    outcome = run_sweep(sweep, RunOptions(verbose=0))
    assert outcome.exit_code == 0, outcome.failures
    runs = trial_runs(sweep, outcome.parent_run_id)
    assert len(runs) == 2
    assert outcome.counts["finished"] + outcome.counts["stopped"] == 2
    from mlflow.tracking import MlflowClient

    axes = json.loads(MlflowClient(sweep.tracking_uri).get_run(outcome.parent_run_id).data.tags["ajepa.axes"])
    assert axes[0]["name"] == "lr" and len(axes[0]["labels"]) == 2    # the values Optuna drew
    assert axes[1] == {"name": "loss", "labels": ["l2", "smooth_l1"]}
    for run in runs:
        assert run.info.status in ("FINISHED", "KILLED")
        assert run.data.tags["ajepa.axis.loss"] in ("l2", "smooth_l1")
        assert 1e-4 <= float(run.data.params["optim.lr"]) <= 1e-2


def test_trials_that_differ_only_in_evaluation_pretrain_once(tmp_path, data_cache):
    """The fine-tuning-masking sweep's shape (here with the quicker probe-pooling axis): the
    axis is an evaluation setting, so both trials of a seed share one pretraining (one checkpoint folder, tagged on both runs),
    and their results equal those of separate pretrainings."""
    fields = dict(
        overrides=tiny_overrides(data_cache, **{"eval.tasks": [{"task": "synthetic"}],
                                                "data.synthetic.num_classes": 3}),
        axes=[{"name": "pooling", "key": "eval.probe.pooling", "values": ["mean", "freq_concat"]}],
        seeds=[0], control=False)
    shared_spec, separate_spec = (write_spec(tmp_path / name, name, share_pretraining=share, **fields)
                                  for name, share in (("shared", True), ("separate", False)))
    results = {}
    for spec in (shared_spec, separate_spec):
        sweep = load_sweep(spec)
        outcome = run_sweep(sweep, RunOptions(verbose=0))
        assert outcome.exit_code == 0
        runs = trial_runs(sweep, outcome.parent_run_id)
        results[sweep.name] = {r.data.tags["ajepa.trial_id"]: r for r in runs}
        pretrainings = sorted((sweep.sweep_dir / "pretraining").glob("*/last.pt"))
        own = sorted((sweep.sweep_dir / "trials").glob("*/checkpoints/last.pt"))
        if sweep.name == "shared":
            assert len(pretrainings) == 1 and own == []  # one pretraining for the seed's two trials
            assert {r.data.tags["ajepa.pretraining"] for r in runs} == {pretrainings[0].parent.name}
            trained = [loss_steps(sweep, r) for r in runs]
            assert sorted(trained) == [[], [1, 2, 3, 4]]  # one trial trained, the other only evaluated
        else:
            assert pretrainings == [] and len(own) == 2
    for key, run in results["separate"].items():
        shared = results["shared"][key].data.metrics
        assert {k: v for k, v in shared.items() if k.startswith("eval/")} == \
            {k: v for k, v in run.data.metrics.items() if k.startswith("eval/")}


def test_a_finished_sweep_is_evaluated_on_a_second_task_and_at_kept_checkpoints(tmp_path, data_cache, capsys,
                                                                                monkeypatch):
    """--evaluate adds a task's metrics to the existing trial and control runs (a new
    column of ajepa-tables, and with two tasks the summary across them); running it again
    adds nothing. --at-steps all then evaluates the kept step checkpoints too -- found from
    the runs' pretraining tags after the code changed commit -- into the metric history
    that ajepa-tables --at-step and the learning-curve figures read."""
    from data_suite_fixtures import write_urbansound8k

    from ajepa.cli.tables import main as tables_main
    from ajepa.sweep import evaluate as evaluate_module
    from ajepa.sweep.evaluate import evaluate_sweep, parse_task

    spec = write_spec(
        tmp_path, "again", overrides=tiny_overrides(data_cache, **{"eval.tasks": [{"task": "synthetic"}],
                                                                 "data.synthetic.num_classes": 3,
                                                                 "keep_checkpoints": 3}),
        axes=[{"name": "loss", "key": "loss.kind", "values": ["l2", "l1"]}], seeds=[0])
    sweep = load_sweep(spec)
    outcome = run_sweep(sweep, RunOptions(verbose=0))
    assert outcome.exit_code == 0
    trained = {p: p.stat().st_mtime_ns for p in sweep.sweep_dir.glob("pretraining/*/*.pt")}
    assert sorted({p.name for p in trained}) == ["last.prev.pt", "last.pt", "step00000002.pt", "step00000004.pt"]
    task = parse_task("urbansound8k", str(write_urbansound8k(tmp_path / "UrbanSound8K")))
    overrides = ["eval.batch_size=8", "frontend.norm=none"]  # the fixture has no stats.json of its own
    first = evaluate_sweep(load_sweep(spec), task, overrides, echo=lambda line: None)
    assert sorted(first.evaluated) == sorted(t.key for t in sweep.trials) and first.skipped == {}
    again = evaluate_sweep(load_sweep(spec), task, overrides, echo=lambda line: None)
    assert again.evaluated == [] and set(again.skipped) == {t.key for t in sweep.trials}
    from mlflow.tracking import MlflowClient
    client = MlflowClient(sweep.tracking_uri)
    runs = trial_runs(sweep, outcome.parent_run_id)
    final = {r.info.run_id: r.data.metrics["eval/urbansound8k/acc"] for r in runs}
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "eval/urbansound8k/acc")
        assert len(history) == 1 and history[0].step == 4  # once, at the final pretraining step
    capsys.readouterr()
    assert tables_main([str(spec), "--no-plots"]) == 0
    table = capsys.readouterr().out
    assert "urbansound8k" in table and "synthetic" in table and "control" in table
    assert "### Across tasks (synthetic acc, urbansound8k acc)" in table

    monkeypatch.setattr("ajepa.sweep.tracking.git_commit", lambda folder: "a-later-commit")
    later = load_sweep(spec)  # today's signatures name folders that do not exist
    assert not any(Path(t.tree["checkpoint_dir"]).exists() for t in later.trials if not t.is_control)
    spec_data = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**spec_data, "reuse_pretraining_across_commits": True}, sort_keys=False))
    reusing = load_sweep(spec)  # asked: the earlier commit's pretraining of the same config
    assert {t.tree["checkpoint_dir"] for t in reusing.trials if not t.is_control} == \
        {str(p.parent) for p in trained if p.name == "last.pt"}
    spec.write_text(yaml.safe_dump(spec_data, sort_keys=False))
    curves = evaluate_sweep(later, task, overrides, echo=lambda line: None, steps="all")
    assert sorted(curves.evaluated) == sorted(r.data.tags["ajepa.trial_id"] for r in runs)  # step 2 of each
    assert all(v == [2] for v in curves.steps.values())
    assert evaluate_sweep(later, task, overrides, echo=lambda line: None, steps="all").evaluated == []
    assert {p: p.stat().st_mtime_ns for p in trained} == trained  # nothing retrained
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "eval/urbansound8k/acc")
        assert sorted(m.step for m in history) == [2, 4]
        assert client.get_run(run.info.run_id).data.metrics["eval/urbansound8k/acc"] == final[run.info.run_id]
    capsys.readouterr()
    assert tables_main([str(spec), "--at-step", "2", "--format", "csv", "--no-plots"]) == 0
    at_two = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("row")
    for run in runs:
        step_two = [m.value for m in client.get_metric_history(run.info.run_id, "eval/urbansound8k/acc") if m.step == 2]
        assert at_two.at[run.data.tags["ajepa.axis.loss"], "eval/urbansound8k/acc mean"] == pytest.approx(step_two[0])
    assert tables_main([str(spec), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "again_eval_urbansound8k_acc_curve.png").is_file()
    assert tables_main([str(spec), "--at-step", "3"]) == 2
    assert "no trial logged" in capsys.readouterr().err

    # on Ray (what --address does): one task per checkpoint, the same numbers as in the driver
    from ajepa.sweep import local_ray
    handle = local_ray.start(tmp_path / "ray", num_cpus=2)
    try:
        on_ray = evaluate_sweep(later, parse_task("{task: urbansound8k, name: us8k_ray}", str(tmp_path / "UrbanSound8K")),
                          overrides, echo=lambda line: None, on_ray=True)
    finally:
        local_ray.stop(handle)
    assert sorted(on_ray.evaluated) == sorted(t.key for t in sweep.trials) and not on_ray.failed
    for run in trial_runs(sweep, outcome.parent_run_id):
        metrics = client.get_run(run.info.run_id).data.metrics
        assert metrics["eval/us8k_ray/acc"] == pytest.approx(metrics["eval/urbansound8k/acc"], abs=1e-6)

    # a checkpoint that cannot be evaluated is reported; the others go on and a re-run does only it
    broken = next(t.key for t in sweep.trials if not t.is_control)
    real = evaluate_module._evaluate_checkpoint

    def flaky(trial, *args):
        if trial.key == broken:
            raise RuntimeError("disk on fire")
        return real(trial, *args)

    monkeypatch.setattr(evaluate_module, "_evaluate_checkpoint", flaky)
    second = parse_task("{task: urbansound8k, name: us8k_again}", str(tmp_path / "UrbanSound8K"))
    partial = evaluate_sweep(later, second, overrides, echo=lambda line: None)
    assert list(partial.failed) == [f"{broken} @ step 4"] and "disk on fire" in partial.failed[f"{broken} @ step 4"]
    assert broken not in partial.evaluated and len(partial.evaluated) == len(sweep.trials) - 1
    monkeypatch.setattr(evaluate_module, "_evaluate_checkpoint", real)
    assert evaluate_sweep(later, second, overrides, echo=lambda line: None).evaluated == [broken]
