"""analysis/ against a real (temporary) MLflow store written exactly as the sweep layer will.

One store per module (MLflow's sqlite setup costs seconds). The "masking" sweep has:
an older sweep run with a stale trial (must be ignored), then the current sweep run with
4-5 rows x seeds 0-2 including a FAILED, a RUNNING, a missing trial and a FAILED-then-
FINISHED retry. The "ratio" experiment has two numeric/categorical axes and no sweep run
(axes come from trial tags) and one trial KILLED by the scheduler. The "predictor"
experiment is a sweep with control trials (``ajepa.role=control``) and per-clip test
predictions (``predictions/synthetic.csv`` artifacts) on 200 clips, except one trial logged
without them.
"""

from __future__ import annotations

import io
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ajepa.cli.tables import main
from analysis import ablation_table, build_report, load_history, load_runs, paired_comparison, render
from analysis.runs import RunsNotFound
from analysis.tables import as_points

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy")  # inside MLflow

MASKING = ["random patch 75 %", "time-only strips", "multi-block (4 blocks)", "frequency-only strips",
           "single block 75 %"]
ACC, ESC = "eval/synthetic/acc", "eval/esc50/acc"
# (label, seed) -> (status, synthetic acc, esc50 acc); absent = never launched
TRIALS = [
    ("random patch 75 %", 0, "FINISHED", 0.70, 0.50), ("random patch 75 %", 1, "FINISHED", 0.72, 0.52),
    ("random patch 75 %", 2, "FINISHED", 0.74, 0.54),
    ("time-only strips", 0, "FINISHED", 0.705, 0.51), ("time-only strips", 1, "FINISHED", 0.735, 0.52),
    ("time-only strips", 2, "RUNNING", None, None),
    ("multi-block (4 blocks)", 0, "FINISHED", 0.80, 0.60), ("multi-block (4 blocks)", 1, "FAILED", None, None),
    ("multi-block (4 blocks)", 1, "FINISHED", 0.83, 0.61), ("multi-block (4 blocks)", 2, "FINISHED", 0.84, 0.63),
    ("frequency-only strips", 0, "FINISHED", 0.60, 0.40), ("frequency-only strips", 1, "FAILED", None, None),
    ("single block 75 %", 0, "FINISHED", 0.75, 0.55), ("single block 75 %", 1, "RUNNING", None, None),
    ("single block 75 %", 2, "FINISHED", 0.775, 0.56),
]
STRATEGY = {"random patch 75 %": "random", "time-only strips": "time", "multi-block (4 blocks)": "multiblock",
            "frequency-only strips": "freq", "single block 75 %": "block"}


# "predictor": (label, per-seed synthetic acc); the control row is the encoder at initialisation
PREDICTOR = {"2, 384": [0.50, 0.52, 0.51], "6, 768": [0.70, 0.71, 0.73], "8, 384": [0.505, 0.525, 0.50]}
CONTROL_ACC = [0.30, 0.29, 0.31]
CLIPS = 200


def predictions_csv(share: float, seed: int, salt: int) -> str:
    """A trial's predictions/synthetic.csv: exactly share * CLIPS clips right, the easy ones
    (a difficulty shared by every row and seed) more often."""
    difficulty = np.random.default_rng(99).random(CLIPS)
    score = difficulty + 0.3 * np.random.default_rng([seed, salt]).random(CLIPS)
    correct = np.zeros(CLIPS, dtype=int)
    correct[np.argsort(score)[: round(share * CLIPS)]] = 1
    lines = ["step,fold,clip,label,prediction,correct"]
    for i, ok in enumerate(correct):
        label = i % 4
        lines.append(f"400,1,wave{i},{label},{label if ok else (label + 1) % 4},{ok}")
    return "\n".join(lines) + "\n"


def _log_run(client, exp, tags, params, metrics, status, start, history=(), artifacts=None):
    from mlflow.entities import Metric, Param

    run = client.create_run(exp, start_time=start, tags=tags, run_name=tags.get("ajepa.trial_id"))
    rid = run.info.run_id
    batch = [Metric(k, v, start, 0) for k, v in metrics.items()]
    batch += [Metric("train/loss", v, start + i, i * 10) for i, v in enumerate(history)]
    client.log_batch(rid, metrics=batch, params=[Param(k, str(v)) for k, v in params.items()])
    for path, text in (artifacts or {}).items():
        client.log_text(rid, text, path)
    if status != "RUNNING":
        client.set_terminated(rid, status, end_time=start + 1000)
    return rid


def _trial_tags(sweep, parent, trial_id, seed, axes):
    tags = {"ajepa.role": "trial", "mlflow.parentRunId": parent, "ajepa.sweep": sweep,
            "ajepa.spec_hash": "abc123", "ajepa.trial_id": trial_id, "ajepa.seed": str(seed),
            "ajepa.git_commit": "deadbeef"}
    tags.update({f"ajepa.axis.{name}": label for name, label in axes.items()})
    return tags


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    t = 1_700_000_000_000

    exp = client.create_experiment("masking", artifact_location=str(root / "artifacts"))
    old = client.create_run(exp, start_time=t, tags={"ajepa.role": "sweep"}).info.run_id
    _log_run(client, exp, _trial_tags("masking", old, "stale", 0, {"masking": "random patch 75 %"}),
             {}, {ACC: 0.01}, "FINISHED", t + 1)
    axes_tag = json.dumps([{"name": "masking", "labels": MASKING}])
    parent = client.create_run(exp, start_time=t + 100, tags={
        "ajepa.role": "sweep", "ajepa.axes": axes_tag, "ajepa.seeds": "[0, 1, 2]", "ajepa.table": "masking",
        "mlflow.note.content": "masking strategy (recorded)"})
    parent = parent.info.run_id
    for i, (label, seed, status, acc, esc) in enumerate(TRIALS):
        params = {"seed": seed, "masking.strategy": STRATEGY[label], "masking.ratio": 0.75,
                  "model.predictor_depth": 6, "model.patch_size": [16, 16], "optim.lr": 0.00015,
                  "optim.steps": 200, "optim.epochs": None, "out_dir": "runs/x"}
        if STRATEGY[label] == "time":
            params["masking.strip_width"] = [1, 4]
        metrics = {} if acc is None else {ACC: acc, ESC: esc, "eval/esc50/acc_std": 0.01,
                                          "eval/esc50/fold1/acc": esc}
        loss = [1.0 - 0.1 * k - 0.02 * seed - 0.05 * MASKING.index(label) for k in range(5)]
        _log_run(client, exp, _trial_tags("masking", parent, f"t{i:02d}", seed, {"masking": label}),
                 params, metrics, status, t + 200 + i, history=loss)

    exp2 = client.create_experiment("ratio", artifact_location=str(root / "artifacts2"))
    i = 0
    for ratio in (0.7, 0.4):
        for loss_kind in ("L2", "smooth L1"):
            for seed in (0, 1):
                acc = 0.5 + (0.1 if ratio == 0.7 else 0) + (0.05 if loss_kind == "L2" else 0) + 0.01 * seed
                _log_run(client, exp2, _trial_tags("ratio", "p0", f"r{i}", seed, {"ratio": str(ratio), "loss": loss_kind}),
                         {"masking.ratio": ratio, "seed": seed}, {ACC: acc}, "FINISHED", t + 500 + i,
                         history=[1.0, 0.8, 0.7])
                i += 1
    stopped = _trial_tags("ratio", "p0", "r-stopped", 2, {"ratio": "0.4", "loss": "L2"})
    stopped["ajepa.stop_reason"] = "stopped early by the scheduler at step 40"
    _log_run(client, exp2, stopped, {"masking.ratio": 0.4, "seed": 2, "eval.probe.l2_grid": "[true, null]"},
             {}, "KILLED", t + 600)

    exp3 = client.create_experiment("predictor", artifact_location=str(root / "artifacts3"))
    parent3 = client.create_run(exp3, start_time=t + 700, tags={
        "ajepa.role": "sweep", "ajepa.axes": json.dumps([{"name": "predictor", "labels": list(PREDICTOR)}]),
        "ajepa.seeds": "[0, 1, 2]", "ajepa.control": "1"}).info.run_id
    i = 0
    for salt, (label, accs) in enumerate(PREDICTOR.items()):
        for seed, acc in enumerate(accs):
            artifacts = {} if (label, seed) == ("8, 384", 2) else {
                "predictions/synthetic.csv": predictions_csv(acc, seed, salt)}
            _log_run(client, exp3, _trial_tags("predictor", parent3, f"p{i}", seed, {"predictor": label}),
                     {"seed": seed}, {ACC: acc}, "FINISHED", t + 800 + i, artifacts=artifacts)
            i += 1
    for seed, acc in enumerate(CONTROL_ACC):
        tags = {**_trial_tags("predictor", parent3, f"control-s{seed}", seed, {}), "ajepa.role": "control"}
        _log_run(client, exp3, tags, {"seed": seed}, {ACC: acc, "train/steps": 0}, "FINISHED", t + 900 + seed,
                 artifacts={"predictions/synthetic.csv": predictions_csv(acc, seed, 9)})
    return {"uri": uri, "root": root, "parent": parent}


@pytest.fixture(scope="module")
def runs(store):
    return load_runs(store["uri"], "masking")


@pytest.fixture(scope="module")
def table(runs):
    return ablation_table(as_points(runs))


# --------------------------------------------------------------------------- runs


def test_load_runs_keeps_only_the_latest_sweeps_trials_with_typed_params(runs, store):
    assert len(runs) == len(TRIALS)
    assert set(runs["parent_run_id"]) == {store["parent"]}
    assert [a.labels for a in runs.attrs["axes"]] == [tuple(MASKING)]
    assert runs["seed"].dtype == "Int64"
    assert set(runs["status"]) == {"FINISHED", "FAILED", "RUNNING"}
    row = runs[runs["params.masking.strategy"] == "time"].iloc[0]
    assert row["params.model.predictor_depth"] == 6
    assert pd.api.types.is_integer_dtype(runs["params.model.predictor_depth"])
    assert pd.api.types.is_float_dtype(runs["params.masking.ratio"])
    assert row["params.masking.ratio"] == 0.75 and row["params.optim.lr"] == pytest.approx(1.5e-4)
    assert row["params.model.patch_size"] == (16, 16) and row["params.masking.strip_width"] == (1, 4)
    assert row["params.optim.epochs"] is None and row["params.out_dir"] == "runs/x"


def test_load_runs_all_parents(store):
    assert len(load_runs(store["uri"], "masking", parent="all")) == len(TRIALS) + 1


def test_missing_store_and_experiment_are_clear_errors(store, tmp_path):
    missing = f"sqlite:///{tmp_path}/nowhere/mlflow.db"
    with pytest.raises(RunsNotFound, match="no MLflow store.*nowhere.*ajepa-sweep"):
        load_runs(missing, "masking")
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(RunsNotFound, match=r"experiment 'nope' not found .*masking, predictor, ratio"):
        load_runs(store["uri"], "nope")


# --------------------------------------------------------------------------- table


def test_table_rows_in_sweep_order_with_mean_std_n(table):
    assert list(table.index) == MASKING
    assert table.attrs["metrics"] == [ESC, ACC]  # headline metrics only: no acc_std, no folds
    rnd = table.loc["random patch 75 %"]
    assert rnd[(ACC, "mean")] == pytest.approx(72.0)
    assert rnd[(ACC, "std")] == pytest.approx(2.0)
    assert rnd[(ACC, "n")] == 3
    multi = table.loc["multi-block (4 blocks)"]  # FAILED then FINISHED retry of seed 1 counts once
    assert multi[(ACC, "mean")] == pytest.approx(np.mean([80, 83, 84]))
    assert multi[(ACC, "std")] == pytest.approx(np.std([80, 83, 84], ddof=1))
    assert (multi[(ACC, "n")], multi[("trials", "failed")], multi[("trials", "note")]) == (3, 0, "")


def test_best_row_is_marked(table):
    assert table[(ACC, "best")].tolist() == [False, False, True, False, False]
    assert table[(ESC, "best")].sum() == 1 and table.loc["multi-block (4 blocks)", (ESC, "best")]


def test_failed_running_and_missing_trials_are_counted(table):
    freq = table.loc["frequency-only strips"]
    assert freq[(ACC, "n")] == 1 and np.isnan(freq[(ACC, "std")])
    assert [freq[("trials", k)] for k in ("expected", "finished", "running", "failed", "missing")] == [3, 1, 0, 1, 1]
    assert freq[("trials", "note")] == "1 failed; 1 missing"
    assert table.loc["time-only strips", ("trials", "note")] == "1 running"
    assert table.loc["single block 75 %", ("trials", "running")] == 1


# --------------------------------------------------------------------------- statistics


def test_paired_comparison_separates_real_differences_from_noise(runs):
    cmp = paired_comparison(as_points(runs), [ACC]).set_index("row")
    assert cmp.attrs["reference"] == "random patch 75 %"
    assert cmp.loc["random patch 75 %", "verdict"] == "reference"
    multi = cmp.loc["multi-block (4 blocks)"]
    raw = stats.ttest_rel([80, 83, 84], [70, 72, 74])
    assert multi["n_pairs"] == 3 and multi["diff_mean"] == pytest.approx(np.mean([10, 11, 10]))
    assert multi["p_value"] == pytest.approx(raw.pvalue)
    assert multi["verdict"] == "better"
    tested = cmp["p_value"].notna()
    assert tested.sum() == 3  # time-only (n=2), multi-block (n=3), single block (n=2)
    assert multi["p_adjusted"] == pytest.approx(min(1, 3 * raw.pvalue))  # smallest p: Holm factor m
    assert multi["ci_low"] > 0
    assert cmp.loc["time-only strips", "verdict"] == "n.s." and cmp.loc["time-only strips", "n_pairs"] == 2
    assert cmp.loc["frequency-only strips", "verdict"] == "too few pairs (n=1)"
    assert np.isnan(multi["boot_low"])  # bootstrap needs >= 5 pairs


def test_reference_label_is_matched_forgivingly(runs):
    cmp = paired_comparison(runs, [ACC], reference="Multi-Block (4 blocks)").set_index("row")
    assert cmp.loc["multi-block (4 blocks)", "verdict"] == "reference"
    assert cmp.loc["random patch 75 %", "verdict"] == "worse"
    with pytest.raises(KeyError, match="no row labelled"):
        paired_comparison(runs, [ACC], reference="nope")


# --------------------------------------------------------------------------- formats


@pytest.fixture(scope="module")
def report(runs):
    return build_report(runs, metrics=["synthetic/acc"], paper="masking", description="masking strategy")


def test_markdown_shows_cells_significance_paper_and_trials(report):
    md = render(report, "md")
    main_table = md.split("### Paired comparisons")[0]
    lines = {line.split("|")[1].strip(): line for line in main_table.splitlines() if line.startswith("| ")}
    multi = lines["multi-block (4 blocks)"]
    assert "**82.33 ± 2.08 (n=3)**" in multi and "+10.33*" in multi and "37.2" in multi and "3/3" in multi
    assert "| ref " in lines["random patch 75 %"] and "34.8" in lines["random patch 75 %"]
    freq = lines["frequency-only strips"]
    assert "60.00 (n=1)" in freq and "-10.00†" in freq and "1/3 (1 failed; 1 missing)" in freq
    assert "| +1.00 " in lines["time-only strips"] and "2/3 (1 running)" in lines["time-only strips"]
    assert "single block 75 %" in lines and "paper AS-20K mAP" in md and "Holm" in md
    assert "### Paired comparisons vs 'random patch 75 %'" in md


def test_latex_is_booktabs_and_escaped(report):
    tex = render(report, "latex")
    for needle in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{lrrrrl}",
                   "\\textbf{82.33 $\\pm$ 2.08 (n=3)}", "random patch 75 \\%", "+10.33$^{*}$", "$\\Delta$"):
        assert needle in tex, needle
    body = [line for line in tex.splitlines() if line.endswith("\\\\")]
    assert len(body) == 1 + len(MASKING) and all(line.count(" & ") == 5 for line in body)


def test_csv_has_numbers_for_every_row(report, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(render(report, "csv"))
    frame = pd.read_csv(path).set_index("row")
    assert list(frame.index) == MASKING
    assert frame.loc["multi-block (4 blocks)", f"{ACC} mean"] == pytest.approx(82.3333, abs=1e-3)
    assert frame.loc["multi-block (4 blocks)", f"{ACC} verdict"] == "better"
    assert frame.loc["frequency-only strips", "trials failed"] == 1
    assert frame.loc["single block 75 %", "paper AS-20K mAP"] == 36.0
    assert frame["reference"].tolist() == [True, False, False, False, False]


# --------------------------------------------------------------------------- multi-axis, plots, CLI


def test_multi_axis_rows_are_combinations_from_trial_tags(store):
    runs = load_runs(store["uri"], "ratio")
    assert runs.attrs["parent_run_id"] is None
    assert [(a.name, a.labels) for a in runs.attrs["axes"]] == [("ratio", ("0.4", "0.7")), ("loss", ("L2", "smooth L1"))]
    table = ablation_table(runs)
    assert list(table.index) == ["0.4 / L2", "0.4 / smooth L1", "0.7 / L2", "0.7 / smooth L1"]
    assert table.loc["0.4 / L2", ("trials", "note")] == "1 stopped"  # KILLED by the scheduler: not a failure
    assert table.loc["0.7 / L2", ("trials", "note")] == "1 missing"  # seed 2 exists elsewhere in the sweep
    stopped = runs[runs["status"] == "KILLED"].iloc[0]
    assert stopped["stop_reason"].startswith("stopped early") and stopped["params.eval.probe.l2_grid"] == (True, None)
    assert table.loc["0.7 / L2", (ACC, "mean")] == pytest.approx(0.655)
    assert table.loc["0.7 / L2", (ACC, "best")]


def _pixel_variance(path):
    import matplotlib.image

    return float(np.asarray(matplotlib.image.imread(path))[..., :3].var())


def test_history_and_training_curves(runs, tmp_path):
    from analysis.plots import plot_training_curves

    history = load_history(runs, "train/loss")
    assert len(history) == 5 * len(TRIALS) and set(history["step"]) == {0, 10, 20, 30, 40}
    paths = plot_training_curves(history, tmp_path / "curves")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and _pixel_variance(paths[0]) > 1e-3


def test_cli_with_spec_prints_table_and_writes_every_output(store, tmp_path, capsys):
    spec = tmp_path / "masking.yaml"
    spec.write_text(f"name: masking\ndescription: A-JEPA masking\ntable: masking\nstorage: {store['root']}\n"
                    "seeds: [0, 1, 2]\nmetrics: [eval/synthetic/acc]\naxes:\n  - name: masking\n    key: masking\n"
                    "    values: [{label: x, value: {strategy: random}}]\n")
    out = tmp_path / "out"
    assert main([str(spec), "--out", str(out), "--reference", "multi-block (4 blocks)"]) == 0
    printed = capsys.readouterr().out
    assert "## masking — A-JEPA masking" in printed and "paper AS-20K mAP" in printed
    assert "| multi-block (4 blocks) " in printed and "-10.33*" in printed
    names = {p.name for p in out.iterdir()}
    assert {"masking.md", "masking.tex", "masking.csv", "masking_comparisons.csv",
            "masking_eval_synthetic_acc.png", "masking_eval_synthetic_acc.pdf",
            "masking_train_loss.png", "masking_train_loss.pdf"} <= names
    assert _pixel_variance(out / "masking_eval_synthetic_acc.png") > 1e-3


def test_cli_experiment_name_latex_and_numeric_axis_plot(store, tmp_path, capsys):
    out = tmp_path / "ratio"
    assert main(["ratio", "--tracking-uri", store["uri"], "--format", "latex", "--out", str(out)]) == 0
    assert "\\toprule" in capsys.readouterr().out
    assert _pixel_variance(out / "ratio_eval_synthetic_acc.png") > 1e-3


def test_cli_spec_table_without_paper_numbers_is_a_note(store, tmp_path, capsys):
    spec = tmp_path / "ratio.yaml"
    spec.write_text(f"name: ratio\ntable: curriculum\ntracking: {{uri: '{store['uri']}'}}\n")
    assert main([str(spec), "--format", "csv"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("row,axis ratio,axis loss,") and "paper" not in printed.splitlines()[0]
    assert main([str(spec), "--paper", "curriculum"]) == 2
    assert "no paper table 'curriculum'" in capsys.readouterr().err


def test_cli_experiment_name_uses_what_the_sweep_run_recorded(store, capsys):
    assert main(["masking", "--tracking-uri", store["uri"], "--metric", "synthetic/acc"]) == 0
    printed = capsys.readouterr().out
    assert "## masking — masking strategy (recorded)" in printed and "| paper AS-20K mAP" in printed
    assert "1/3 (1 failed; 1 missing)" in printed  # expected seeds from the ajepa.seeds tag


def test_cli_missing_store_names_uri_and_what_to_run(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/none/mlflow.db"
    assert main(["masking", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert uri in err and "ajepa-sweep" in err


def test_store_is_real_sqlite(store):
    with sqlite3.connect(store["root"] / "mlflow.db") as db:
        assert db.execute("select count(*) from runs").fetchone()[0] == len(TRIALS) + 2 + 1 + 8 + 1 + 1 + 9 + 3


# --------------------------------------------------------------------------- control row, clip-level test


def _markdown_rows(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Header and {first cell: {column: cell}} of the first markdown table in ``text``."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    header, body = split[0], split[2:]
    return header, {row[0]: dict(zip(header, row)) for row in body}


def test_control_runs_become_the_last_row_never_the_best(store):
    runs = load_runs(store["uri"], "predictor")
    assert runs.attrs["control"] and sorted(set(runs["role"])) == ["control", "trial"]
    table = ablation_table(as_points(runs))
    assert list(table.index) == [*PREDICTOR, "control: initialisation"]
    control = table.loc["control: initialisation"]
    assert control[(ACC, "mean")] == pytest.approx(30.0) and control[(ACC, "std")] == pytest.approx(1.0)
    assert (control[(ACC, "n")], control[("trials", "expected")], control[("trials", "note")]) == (3, 3, "")
    assert not control[(ACC, "best")] and table.loc["6, 768", (ACC, "best")]
    assert pd.isna(control[("axis", "predictor")])
    # a sweep without control trials has no control row (the masking fixture)
    assert "control: initialisation" not in ablation_table(load_runs(store["uri"], "masking")).index


def test_clip_level_test_from_the_logged_predictions(store, tmp_path):
    from analysis.clips import load_predictions
    from analysis.plots import plot_ablation

    runs = as_points(load_runs(store["uri"], "predictor"))
    predictions = load_predictions(runs)
    assert len(predictions) == (3 * 3 - 1 + 3) * CLIPS  # "8, 384" seed 2 logged none
    assert set(predictions["row"]) == {*PREDICTOR, "control: initialisation"}
    cmp = paired_comparison(runs, [ACC], predictions=predictions).set_index("row")
    big, tiny = cmp.loc["6, 768"], cmp.loc["8, 384"]
    assert big["clip_diff"] == pytest.approx(np.mean([20, 19, 22])) and big["n_clips"] == CLIPS
    assert big["p_clips"] < 1e-6 and big["verdict_clips"] == "better" and big["verdict"] == "better"
    assert tiny["n_scored"] == 2 * CLIPS and tiny["p_clips"] > 0.05 and tiny["verdict_clips"] == "n.s."
    assert cmp.loc["control: initialisation", "verdict"] == "control"  # outside the family vs the reference
    assert big["p_adjusted"] == pytest.approx(min(1, 2 * big["p_value"]))  # Holm over 2 rows, not 3
    vs_control = paired_comparison(runs, [ACC], reference="control: initialisation",
                                   predictions=predictions).set_index("row")
    assert vs_control.loc["control: initialisation", "verdict"] == "reference"
    assert (vs_control.loc[list(PREDICTOR), "verdict_clips"] == "better").all()
    assert vs_control.loc["6, 768", "diff_mean"] == pytest.approx(np.mean([40, 42, 42]))
    assert load_predictions(load_runs(store["uri"], "masking")).empty  # runs from before predictions existed

    report = build_report(load_runs(store["uri"], "predictor"), predictions=predictions)
    tex = render(report, "latex")
    assert "control: initialisation" in tex and "+20.33$^{*}$$^{\\circ}$" in tex
    frame = pd.read_csv(io.StringIO(render(report, "csv"))).set_index("row")
    assert frame["control"].tolist() == [False, False, False, True]
    assert frame.loc["6, 768", f"{ACC} control verdict_clips"] == "better"
    assert frame.loc["8, 384", f"{ACC} p_clips"] > 0.05
    figure = plot_ablation(report.table, ACC, tmp_path / "acc")[0]  # the control as a dashed line
    assert _pixel_variance(figure) > 1e-3


def test_cli_shows_the_control_row_delta_vs_control_and_p_clips_beside_p_seeds(store, capsys):
    assert main(["predictor", "--tracking-uri", store["uri"]]) == 0
    printed = capsys.readouterr().out
    main_table, rest = printed.split("### Paired comparisons vs '2, 384'")
    header, rows = _markdown_rows(main_table)
    assert header[-3:] == ["Δ synthetic acc", "Δ synthetic acc vs control", "trials"]
    assert list(rows)[-1] == "control: initialisation"
    control = rows["control: initialisation"]
    assert (control["synthetic acc"], control["Δ synthetic acc"], control["Δ synthetic acc vs control"],
            control["trials"]) == ("30.00 ± 1.00 (n=3)", "–", "ref", "3/3")
    assert rows["6, 768"]["Δ synthetic acc"] == "+20.33*°"
    assert rows["6, 768"]["Δ synthetic acc vs control"] == "+41.33*°"
    assert rows["8, 384"]["Δ synthetic acc"] == "+0.00"
    assert rows["8, 384"]["Δ synthetic acc vs control"] == "+21.00*°"
    assert rows["2, 384"]["Δ synthetic acc"] == "ref"
    assert "° p < 0.05 (clip-level" in main_table and "control row 'control: initialisation'" in main_table
    versus_reference, versus_control = rest.split("### Paired comparisons vs control 'control: initialisation'")
    header, rows = _markdown_rows(versus_reference)
    assert header.index("p (clips)") == header.index("p (seeds)") + 6
    assert rows["8, 384"]["clips (scored)"] == f"{CLIPS} ({2 * CLIPS})" and rows["6, 768"]["p (clips)"] == "<0.001"
    assert "control: initialisation" not in rows
    header, rows = _markdown_rows(versus_control)
    assert set(rows) == set(PREDICTOR) and all(r["verdict (clips)"] == "better" for r in rows.values())

    assert main(["predictor", "--tracking-uri", store["uri"], "--no-clips"]) == 0
    header, rows = _markdown_rows(capsys.readouterr().out.split("### Paired")[0])
    assert rows["6, 768"]["Δ synthetic acc"] == "+20.33*"  # seed level only


def test_masking_markdown_without_predictions_has_empty_clip_columns(report):
    md = render(report, "md")
    header, rows = _markdown_rows(md.split("### Paired comparisons")[1])
    assert "p (clips)" in header and all(r["p (clips)"] == "–" for r in rows.values())
    assert "°" not in md.split("### Paired comparisons")[0]
