"""Sweep spec validation, trial expansion, dry run and the pre-Ray checks (no Ray started)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ajepa.cli.sweep import main
from ajepa.sweep.resources import ClusterResources, ResourceError, check_resources
from ajepa.sweep.spec import ResourcesSpec, SpecError, Trial, load_sweep

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "experiments" / "tiny.yaml")


def spec_file(tmp_path: Path, text: str | dict) -> Path:
    path = tmp_path / "sweeps" / "s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, dict):
        text = yaml.safe_dump(text, sort_keys=False)
    path.write_text(text)
    return path


def base_spec(tmp_path: Path, **fields) -> dict:
    return {"name": "s", "base": TINY, "storage": str(tmp_path / "store"),
            "overrides": {"optim.steps": 10, "optim.warmup": 1}, **fields}


MASKING_AXIS = {"name": "masking", "key": "masking", "values": [
    {"label": "random patch 75 %", "value": {"strategy": "random", "ratio": 0.75}},
    {"label": "time-frequency (tf)", "value": {"strategy": "tf", "num_blocks": 3, "scale": [0.05, 0.075]}},
]}


def errors_of(tmp_path: Path, spec: dict | str) -> str:
    with pytest.raises(SpecError) as info:
        load_sweep(spec_file(tmp_path, spec))
    return str(info.value)


# --------------------------------------------------------------------------- expansion


def test_grid_times_seeds_with_labels_and_linked_axis(tmp_path):
    spec = base_spec(tmp_path, axes=[
        MASKING_AXIS,
        {"name": "predictor", "values": [
            {"label": "2, 384", "set": {"model.predictor_depth": 2, "model.predictor_dim": 384}},
            {"label": "6, 768", "set": {"model.predictor_depth": 6, "model.predictor_dim": 768}}]},
    ], seeds=[0, 1])
    sweep = load_sweep(spec_file(tmp_path, spec))
    assert sweep.num_trials == 2 * 2 * 2 + 2  # + one control trial per seed
    assert len({t.key for t in sweep.trials}) == 10
    first = sweep.trials[0]
    assert first.labels == {"masking": "random patch 75 %", "predictor": "2, 384"} and first.seed == 0
    cfg = sweep.trials[-3].config()
    assert cfg.masking.strategy == "tf" and cfg.model.predictor_dim == 768 and cfg.seed == 1
    assert cfg.optim.steps == 10                          # overrides apply to every trial
    assert Path(cfg.out_dir) == sweep.trial_dir(sweep.trials[-3].key)
    assert cfg.data.cache_dir.is_absolute()               # trials run in other directories
    assert sweep.axes_tag()[1] == {"name": "predictor", "labels": ["2, 384", "6, 768"]}


def test_plain_values_are_labelled_and_scientific_floats_parse(tmp_path):
    text = f"""
name: s
base: {TINY}
storage: {tmp_path / 'store'}
overrides: {{optim.steps: 10, optim.warmup: 1}}
axes:
  - {{name: lr, key: optim.lr, values: [1e-4, 3e-4]}}
"""
    sweep = load_sweep(spec_file(tmp_path, text))
    assert [t.labels["lr"] for t in sweep.trials if not t.is_control] == ["0.0001", "0.0003"]
    assert sweep.trials[1].config().optim.lr == pytest.approx(3e-4)


def test_random_search_is_deterministic_and_validated(tmp_path):
    spec = base_spec(tmp_path, axes=[{"name": "lr", "key": "optim.lr",
                                      "distribution": {"kind": "loguniform", "low": 1e-4, "high": 1e-2}}],
                     seeds=[0, 1], search={"kind": "random", "num_samples": 3})
    a, b = load_sweep(spec_file(tmp_path, spec)), load_sweep(spec_file(tmp_path, spec))
    assert a.num_trials == 6 + 2
    assert [t.assignments for t in a.trials] == [t.assignments for t in b.trials]
    assert all(1e-4 <= t.config().optim.lr <= 1e-2 for t in a.trials)
    # switching the controls off changes the hash, not the combinations drawn
    c = load_sweep(spec_file(tmp_path, {**spec, "control": False}))
    assert [t.assignments for t in c.trials] == [t.assignments for t in a.trials if not t.is_control]
    assert c.spec_hash != a.spec_hash


def test_spec_hash_ignores_resources_but_not_axes(tmp_path):
    h = load_sweep(spec_file(tmp_path, base_spec(tmp_path, axes=[MASKING_AXIS]))).spec_hash
    assert load_sweep(spec_file(tmp_path, base_spec(tmp_path, axes=[MASKING_AXIS],
                                                    resources={"cpu": 2}))).spec_hash == h
    assert load_sweep(spec_file(tmp_path, base_spec(tmp_path, axes=[MASKING_AXIS], seeds=[0, 1]))).spec_hash != h


# --------------------------------------------------------------------------- errors


def test_typo_key_names_the_key_and_suggests(tmp_path):
    msg = errors_of(tmp_path, base_spec(tmp_path, seedz=[0]))
    assert "seedz" in msg and "did you mean 'seeds'" in msg
    msg = errors_of(tmp_path, base_spec(tmp_path, search={"kind": "grid", "metrik": "eval/synthetic/acc"}))
    assert "search.metrik" in msg and "'metric'" in msg


def test_bad_value_names_the_key(tmp_path):
    msg = errors_of(tmp_path, base_spec(tmp_path, search={"kind": "gird"}))
    assert "search.kind" in msg and "gird" in msg
    msg = errors_of(tmp_path, base_spec(tmp_path, axes=[{"name": "loss", "key": "loss.kind", "values": ["l2", "l7"]}]))
    assert "loss.kind" in msg and "'l7'" in msg and "trial" in msg       # the trainer's own config says no
    msg = errors_of(tmp_path, base_spec(tmp_path, resources={"gpu": 1.5}))
    assert "resources.gpu" in msg


def test_unknown_axis_path(tmp_path):
    msg = errors_of(tmp_path, base_spec(tmp_path, axes=[{"name": "lr", "key": "optim.lrr", "values": [0.1]}]))
    assert "axis 'lr'" in msg and "optim.lrr" in msg and "did you mean 'optim.lr'" in msg
    msg = errors_of(tmp_path, base_spec(tmp_path, overrides={"optim.stepz": 3}))
    assert "overrides" in msg and "optim.stepz" in msg


def test_axis_shape_errors(tmp_path):
    msg = errors_of(tmp_path, base_spec(tmp_path, axes=[{"name": "m", "key": "masking", "values": [{"strategy": "random"}]}]))
    assert "axes[0] (m)" in msg and "{label, value}" in msg
    msg = errors_of(tmp_path, base_spec(tmp_path, axes=[{"name": "p", "values": [{"set": {"model.predictor_depth": 2}}]}]))
    assert "needs a 'label'" in msg
    msg = errors_of(tmp_path, base_spec(tmp_path, axes=[{"name": "a", "key": "optim.lr", "values": [0.1]},
                                                        {"name": "b", "key": "optim.lr", "values": [0.2]}]))
    assert "both set 'optim.lr'" in msg
    msg = errors_of(tmp_path, base_spec(tmp_path, axes=[{"name": "lr", "key": "optim.lr",
                                                         "distribution": {"kind": "uniform", "low": 0.1, "high": 0.2}}]))
    assert "search.kind to random or optuna" in msg


def test_metric_must_exist_and_asha_needs_a_midrun_metric(tmp_path):
    msg = errors_of(tmp_path, base_spec(tmp_path, search={"metric": "eval/esc50/acc"}))
    assert "esc50" in msg and "synthetic" in msg
    msg = errors_of(tmp_path, base_spec(tmp_path, search={"metric": "eval/synthetic/acc"}, scheduler={"kind": "asha"}))
    assert "train/loss" in msg and "eval.every_steps" in msg


def test_cuda_base_needs_gpus_per_trial(tmp_path):
    spec = base_spec(tmp_path, overrides={"optim.steps": 10, "optim.warmup": 1, "device": "cuda"})
    assert "--gpus-per-trial" in errors_of(tmp_path, spec)
    sweep = load_sweep(spec_file(tmp_path, spec), resources={"gpu": 1, "cpu": 4})
    assert (sweep.spec.resources.gpu, sweep.spec.resources.cpu) == (1, 4)


def test_missing_base_and_yaml_errors(tmp_path):
    msg = errors_of(tmp_path, base_spec(tmp_path, base="experiments/nope.yaml"))
    assert "nope.yaml" in msg and "--base" in msg
    assert "not valid YAML" in errors_of(tmp_path, "name: [unclosed")


# --------------------------------------------------------------------------- resources and CLI


def test_gpu_request_fails_without_gpus(tmp_path, capsys):
    path = spec_file(tmp_path, base_spec(tmp_path, resources={"gpu": 1}))
    assert main([str(path), "--num-gpus", "0"]) == 2
    err = capsys.readouterr().err
    assert "resources.gpu=1" in err and "no GPUs" in err
    import ray

    assert not ray.is_initialized()


def test_resume_refuses_missing_or_changed_state(tmp_path, capsys):
    path = spec_file(tmp_path, base_spec(tmp_path, axes=[MASKING_AXIS]))
    assert main([str(path), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    sweep = load_sweep(path)
    sweep.sweep_dir.mkdir(parents=True)
    (sweep.sweep_dir / "sweep.json").write_text(
        '{"spec_hash": "0123456789ab", "parent_run_id": "x", "tracking_uri": "%s"}' % sweep.tracking_uri)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert "different spec" in err and "--fresh" in err
    from ajepa.sweep.spec import spec_hash_without_controls

    (sweep.sweep_dir / "sweep.json").write_text(  # started before control trials existed
        '{"spec_hash": "%s", "parent_run_id": "x", "tracking_uri": "%s"}'
        % (spec_hash_without_controls(sweep), sweep.tracking_uri))
    assert main([str(path)]) == 2
    assert "without control trials: add `control: false`" in capsys.readouterr().err
    import ray

    assert not ray.is_initialized()


def test_resource_check_limits():
    cluster = ClusterResources(cpus=8, gpus=2, max_node_cpus=4, max_node_gpus=1, where="test cluster")
    check_resources(ResourcesSpec(cpu=4, gpu=0.5), cluster, "s.yaml")
    with pytest.raises(ResourceError, match="largest node"):
        check_resources(ResourcesSpec(cpu=1, gpu=2), cluster, "s.yaml")
    with pytest.raises(ResourceError, match="largest node"):
        check_resources(ResourcesSpec(cpu=6), cluster, "s.yaml")
    with pytest.raises(ResourceError, match="workers=3"):
        check_resources(ResourcesSpec(cpu=1, gpu=1, workers=3), cluster, "s.yaml")


def test_dry_run_prints_rows_count_and_cost(tmp_path, capsys):
    path = spec_file(tmp_path, base_spec(tmp_path, axes=[MASKING_AXIS], seeds=[0, 1]))
    assert main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "6 trials (2 control)" in out and "random patch 75 %" in out and "time-frequency (tf)" in out
    assert "cost:" in out and "FLOP" in out and "nothing started" in out
    control_rows = [line for line in out.splitlines() if "control-s" in line]
    assert len(control_rows) == 2 and all("control: initialisation" in r and "0 (control)" in r for r in control_rows)
    assert "cost: 4 pretrainings" in out  # a control costs no training
    assert not (tmp_path / "store").exists()


def test_dry_run_counts_one_pretraining_for_trials_that_differ_only_in_evaluation(tmp_path, capsys):
    axis = {"name": "pooling", "key": "eval.probe.pooling", "values": ["mean", "freq_concat", "mean_max"]}
    path = spec_file(tmp_path, base_spec(tmp_path, axes=[axis], seeds=[0, 1]))
    assert main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "6 trials use 2 pretrainings" in out and "cost: 2 pretrainings" in out
    sweep = load_sweep(path)
    folders = {t.tree["checkpoint_dir"] for t in sweep.trials if not t.is_control}
    assert len(folders) == 2 and all(t.tree["checkpoint_dir"] is None for t in sweep.controls)


def test_every_pretraining_is_launched_before_the_trials_that_wait_for_one(tmp_path):
    """Axes (loss: pretraining, pooling: evaluation only) in sweep order put l2-mean_max,
    which waits for l2-mean's pretraining, before l1-mean, which has its own to do."""
    axes = [{"name": "loss", "key": "loss.kind", "values": ["l2", "l1"]},
            {"name": "pooling", "key": "eval.probe.pooling", "values": ["mean", "mean_max"]}]
    sweep = load_sweep(spec_file(tmp_path, base_spec(tmp_path, axes=axes, seeds=[0])))
    assert [t.key for t in sweep.trials] == ["000-l2-mean-s0", "001-l2-mean-max-s0", "002-l1-mean-s0",
                                             "003-l1-mean-max-s0", "control-s0"]
    assert [t.key for t in sweep.launch_order()] == ["000-l2-mean-s0", "002-l1-mean-s0", "001-l2-mean-max-s0",
                                                     "003-l1-mean-max-s0", "control-s0"]
    from ajepa.sweep.runner import param_space
    assert [c["key"] for c in param_space(sweep)["trial"]["grid_search"]] == [t.key for t in sweep.launch_order()]


# --------------------------------------------------------------------------- control trials


def test_control_trials_are_the_first_combination_at_initialisation_one_per_seed(tmp_path):
    sweep = load_sweep(spec_file(tmp_path, base_spec(tmp_path, axes=[MASKING_AXIS], seeds=[3, 5])))
    controls = sweep.controls
    assert [t.key for t in controls] == ["control-s3", "control-s5"] and [t.seed for t in controls] == [3, 5]
    assert all(t.kind == "control" and t.is_control and t.labels == {} for t in controls)
    assert [t.index for t in sweep.trials] == list(range(6)) and sweep.trials[-2:] == controls
    assert controls[0].run_name == "control: initialisation | seed 3"
    first = sweep.trials[0]  # random patch 75 %, seed 3: the control's config but for its folders and name
    assert controls[0].assignments == first.assignments
    differ = {k for k in first.tree if first.tree[k] != controls[0].tree[k]}
    assert differ == {"out_dir", "name", "checkpoint_dir"}  # a control never shares a pretraining
    assert Path(controls[0].config().out_dir) == sweep.trial_dir("control-s3")
    assert Trial.from_dict(controls[0].to_dict()) == controls[0]  # travels to DDP workers intact
    assert sweep.axes_tag() == [{"name": "masking", "labels": ["random patch 75 %", "time-frequency (tf)"]}]


def test_control_off_no_eval_tasks_or_optuna_means_no_control_trials(tmp_path):
    on = load_sweep(spec_file(tmp_path, base_spec(tmp_path, axes=[MASKING_AXIS])))
    off = load_sweep(spec_file(tmp_path, base_spec(tmp_path, axes=[MASKING_AXIS], control=False)))
    assert len(on.controls) == 1 and off.controls == [] and off.num_trials == 2
    assert off.spec_hash != on.spec_hash
    nothing = base_spec(tmp_path, axes=[MASKING_AXIS])
    nothing["overrides"] = {**nothing["overrides"], "eval.tasks": []}
    assert load_sweep(spec_file(tmp_path, nothing)).controls == []  # nothing to probe
    optuna = base_spec(tmp_path, axes=[{"name": "lr", "key": "optim.lr",
                                        "distribution": {"kind": "loguniform", "low": 1e-4, "high": 1e-2}}],
                       search={"kind": "optuna", "metric": "eval/synthetic/acc", "num_samples": 2})
    assert load_sweep(spec_file(tmp_path, optuna)).controls == []


def test_help_exits_cleanly(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--dry-run" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "sweeps").glob("*.yaml")))
def test_shipped_sweeps_validate(name, tmp_path):
    sweep = load_sweep(ROOT / "sweeps" / name, storage=tmp_path)
    assert sweep.num_trials >= 1
    if sweep.spec.table:
        from analysis.labels import label_key
        from analysis.paper import paper_table

        paper = {label_key(label) for label in paper_table(sweep.spec.table).index}
        ours = {label_key(label) for axis in sweep.axes_tag() for label in axis["labels"]}
        assert paper <= ours, f"{name}: paper rows without a matching axis label: {paper - ours}"


def test_the_shipped_finetune_masking_sweep_pretrains_once_per_seed(tmp_path):
    """sweeps/finetune_masking.yaml as shipped: its axis is a fine-tuning setting, so its 3
    modes x 2 seeds share 2 pretrainings (one per seed); the controls train nothing."""
    sweep = load_sweep(ROOT / "sweeps" / "finetune_masking.yaml", storage=tmp_path)
    trials = [t for t in sweep.trials if not t.is_control]
    folders = {seed: {t.tree["checkpoint_dir"] for t in trials if t.seed == seed} for seed in (0, 1)}
    assert len(trials) == 6 and all(len(f) == 1 for f in folders.values())
    assert folders[0] != folders[1]
    assert all(Path(next(iter(f))).parent == sweep.sweep_dir / "pretraining" for f in folders.values())
