"""analysis/ pieces that need no MLflow store: params typing, labels, paper data, statistics
on hand-made frames, spec reading, and the no-torch guarantee."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import ablation_table, as_points, build_report, paired_comparison, paper_table, render
from analysis.labels import as_number, label_key
from analysis.paper import align_paper, available_tables
from analysis.params import typed_params
from analysis.runs import Axis, local_store_path
from analysis.source import read_spec, resolve_source

ACC = "eval/synthetic/acc"


def frame(values: dict[str, list[float | None]], axis="loss", status=None, seeds=None) -> pd.DataFrame:
    """A load_runs-shaped frame: one FINISHED trial per (label, seed) unless the value is None."""
    rows, t = [], 0
    for label, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            t += 1
            rows.append({"run_id": f"r{t}", "status": (status or {}).get((label, seed), "FINISHED"),
                         "start_time": pd.Timestamp(t, unit="s"), "seed": seed, f"axis.{axis}": label,
                         f"metrics.{ACC}": value})
    runs = pd.DataFrame(rows)
    runs["seed"] = runs["seed"].astype("Int64")
    runs.attrs.update(axes=[Axis(axis, tuple(values))], seeds=seeds, experiment="x", uri="sqlite:///x")
    return runs


def test_no_torch_is_imported():
    code = "import analysis, ajepa.cli.tables, analysis.plots, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help(capsys):
    from ajepa.cli.tables import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "SPEC_OR_EXPERIMENT" in out and "--reference" in out and "masking" in out


def test_params_typed_by_config_fields_and_strategy():
    typed = typed_params({"optim.lr": "0.00015", "model.patch_size": "[16, 16]", "optim.steps": "None",
                          "masking.strategy": "freq", "masking.strip_width": "[1, 2]", "masking.ratio": "0.75",
                          "optim.compile": "False", "loss.kind": "smooth_l1", "out_dir": "runs/x",
                          "model.predictor_depth": "6", "optim.epochs": "300", "unknown.key": "3",
                          "masking.easy.num_blocks": "4"})
    assert typed["optim.lr"] == 1.5e-4 and typed["model.patch_size"] == (16, 16) and typed["optim.steps"] is None
    assert typed["masking.strip_width"] == (1, 2) and typed["optim.compile"] is False
    assert typed["loss.kind"] == "smooth_l1" and typed["out_dir"] == "runs/x"
    assert type(typed["model.predictor_depth"]) is int and type(typed["optim.epochs"]) is float
    assert typed["unknown.key"] == 3 and typed["masking.easy.num_blocks"] == 4


def test_labels_match_across_spellings():
    assert label_key("random patch 75 %") == label_key("Random patch 75%")
    assert label_key("70 %") == label_key("0.7") == label_key("0.70")
    assert label_key("0.7 / L2") == label_key("70% / l2") != label_key("0.7 / L1")
    assert as_number("70 %") == 0.7 and as_number("6") == 6.0 and as_number("2, 384") is None


PAPER = {
    "main": {"Supervised ViT-B": [35.0, 83.9, 96.8], "SSAST": [31.0, 88.8, 98.0], "Audio-MAE": [37.0, 90.0, 98.0],
             "MaskSpec": [32.3, 89.6, None], "BEATs iter3": [38.9, 90.4, 98.1], "A-JEPA": [37.2, 90.2, 98.2]},
    "finetune": {"Audio-MAE": [47.3, 94.1], "BEATs iter3": [48.6, 95.6], "A-JEPA": [47.6, 94.5]},
    "masking": {"random patch 75 %": [34.8, 87.5], "time-only strips": [35.9, 88.8],
                "frequency-only strips": [34.2, 87.1], "single block 75 %": [36.0, 89.3],
                "multi-block (4 blocks)": [37.2, 90.2]},
    "ratio": {"40 %": [35.1], "50 %": [36.0], "60 %": [36.8], "70 %": [37.2], "80 %": [36.5], "90 %": [34.9]},
    "predictor": {"2, 384": [35.4], "4, 384": [36.5], "6, 384": [37.2], "8, 384": [36.9], "6, 768": [36.1]},
    "loss": {"L2": [36.4], "smooth L1": [37.2], "L1": [36.8], "cosine": [36.0]},
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_tables_hold_the_published_numbers(name):
    table = paper_table(name)
    assert list(table.index) == list(PAPER[name])
    got = table.to_numpy(dtype=float)
    want = np.array([[np.nan if v is None else v for v in row] for row in PAPER[name].values()])
    np.testing.assert_array_equal(got, want)
    assert table.attrs["source"].startswith("A-JEPA (arXiv:2311.15830)")


def test_paper_alignment_and_unknown_table():
    aligned = align_paper(paper_table("ratio"), ["0.4", "0.7", "0.95"])
    assert aligned["AS-20K mAP"].tolist()[:2] == [35.1, 37.2] and np.isnan(aligned.iloc[2, 0])
    assert aligned.attrs["unmatched"] == ["50 %", "60 %", "80 %", "90 %"]
    assert set(available_tables()) == set(PAPER) | {"riou2024_duration"}  # numbers: tests/test_design_study.py
    with pytest.raises(KeyError, match="available: finetune, loss"):
        paper_table("nope")


def test_bootstrap_with_enough_seeds_and_holm():
    rng = np.random.default_rng(1)
    base = rng.normal(0.70, 0.02, 6)
    runs = frame({"L2": list(base), "smooth L1": list(base + 0.01 + rng.normal(0, 0.002, 6)),
                  "cosine": list(base + rng.normal(0, 0.01, 6))})
    cmp = paired_comparison(runs, [ACC]).set_index("row")
    good = cmp.loc["smooth L1"]
    assert good["n_pairs"] == 6 and good["boot_low"] > 0 and good["boot_low"] < good["diff_mean"] < good["boot_high"]
    raw = stats.ttest_rel(runs[runs["axis.loss"] == "smooth L1"][f"metrics.{ACC}"],
                          runs[runs["axis.loss"] == "L2"][f"metrics.{ACC}"]).pvalue
    assert good["p_value"] == pytest.approx(raw) and good["verdict"] == "better"
    ps = cmp.loc[["smooth L1", "cosine"], "p_value"].sort_values()
    assert cmp.loc[ps.index[0], "p_adjusted"] == pytest.approx(min(1, 2 * ps.iloc[0]))
    assert cmp.loc[ps.index[1], "p_adjusted"] == pytest.approx(max(min(1, 2 * ps.iloc[0]), ps.iloc[1]))
    none = paired_comparison(runs, [ACC], correction="none").set_index("row")
    assert none.loc["cosine", "p_adjusted"] == none.loc["cosine", "p_value"]


def test_pairs_use_only_shared_seeds_and_degenerate_cases():
    runs = frame({"a": [0.5, 0.6, None], "b": [0.6, 0.7, 0.9], "c": [0.5, 0.6, 0.7], "d": [0.7, None, None]})
    cmp = paired_comparison(runs, [ACC]).set_index("row")
    assert cmp.loc["b", "n_pairs"] == 2 and cmp.loc["b", "verdict"] == "no variance"  # +0.1 on both seeds
    assert cmp.loc["c", "verdict"] == "identical"
    assert cmp.loc["d", "verdict"] == "too few pairs (n=1)"
    md = render(build_report(runs, metrics=[ACC], points=False), "md")
    assert "+0.1000‡" in md and "‡ the same difference" in md


def test_unstarted_rows_and_wholly_failed_rows_are_listed(tmp_path):
    runs = frame({"L2": [0.5, 0.6], "L1": [None, None]}, status={("L1", 0): "FAILED", ("L1", 1): "KILLED"},
                 seeds=[0, 1, 2])
    runs.attrs["axes"] = [Axis("loss", ("L2", "L1", "cosine"))]
    table = ablation_table(runs)
    assert list(table.index) == ["L2", "L1", "cosine"]
    assert table.loc["L2", ("trials", "note")] == "1 missing"
    assert table.loc["L1", ("trials", "note")] == "1 failed; 1 stopped; 1 missing"
    assert table.loc["cosine", ("trials", "note")] == "3 missing" and table.loc["cosine", (ACC, "n")] == 0
    md = render(build_report(runs), "md")
    assert "| cosine " in md and "0/3 (3 missing)" in md


def test_points_scaling_only_for_fractions():
    runs = frame({"a": [0.5, 0.6]})
    runs["metrics.eval/esc50/acc"] = [85.0, 86.0]
    scaled = as_points(runs)
    assert scaled[f"metrics.{ACC}"].tolist() == [50.0, 60.0]
    assert scaled["metrics.eval/esc50/acc"].tolist() == [85.0, 86.0]
    assert scaled.attrs["points"] == [ACC]


def test_spec_reading_and_default_uri(tmp_path, monkeypatch):
    spec = tmp_path / "sweeps" / "loss.yaml"
    spec.parent.mkdir()
    spec.write_text("name: loss\ntable: loss\nmetrics: [eval/synthetic/acc]\nseeds: [0, 1]\n"
                    "axes:\n  - name: loss\n    key: loss.kind\n    values: [l2, {label: smooth L1, value: smooth_l1}]\n"
                    "  - name: ratio\n    key: masking.ratio\n    values: [0.4, 0.5]\n")
    monkeypatch.chdir(tmp_path / "sweeps")
    source = resolve_source(str(spec))
    assert (source.experiment, source.table, source.metrics, source.seeds) == ("loss", "loss", [ACC], [0, 1])
    assert [a.labels for a in source.axes] == [("l2", "smooth L1"), ("0.4", "0.5")]
    assert source.uri == f"sqlite:///{tmp_path}/sweeps/runs/sweeps/mlflow.db"  # cwd-relative when nothing exists
    (tmp_path / "runs" / "sweeps").mkdir(parents=True)
    (tmp_path / "runs" / "sweeps" / "mlflow.db").touch()
    assert read_spec(spec).uri == f"sqlite:///{tmp_path}/runs/sweeps/mlflow.db"  # beside the spec folder
    assert read_spec(spec, "sqlite:////elsewhere.db").uri == "sqlite:////elsewhere.db"
    assert resolve_source("masking").experiment == "masking"
    assert local_store_path("sqlite:////a/b.db").as_posix() == "/a/b.db"
    assert local_store_path("http://host:5000") is None
