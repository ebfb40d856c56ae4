"""Figures a researcher reads (issue 12): every type is rendered and checked for what makes it
honest -- the y-axis from 0 (or a marked break), one dot per seed, a caption that says what
the error bars are and n, words instead of metric keys, legends that name every line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))
from test_analysis_units import ACC, frame  # noqa: E402

from analysis import build_report, render  # noqa: E402
from analysis.plots import BREAK_GID, CAPTION_GID, SEEDS_GID, ablation_figure, metric_label  # noqa: E402

MASKING = {"random patch 75 %": [0.162, 0.171, 0.168], "time-only strips": [0.18, 0.175, None],
           "multi-block (4 blocks)": [0.19, 0.185, 0.2]}


def with_control(runs: pd.DataFrame, values=(0.11, 0.12, 0.115)) -> pd.DataFrame:
    control = pd.DataFrame([{"run_id": f"c{s}", "status": "FINISHED", "start_time": pd.Timestamp(100 + s, unit="s"),
                             "seed": s, "role": "control", f"metrics.{ACC}": v} for s, v in enumerate(values)])
    out = pd.concat([runs.assign(role="trial"), control], ignore_index=True)
    out["seed"] = out["seed"].astype("Int64")
    out.attrs = runs.attrs
    return out


def seed_dots(fig) -> np.ndarray:
    found = [c for c in fig.axes[0].collections if c.get_gid() == SEEDS_GID]
    assert len(found) == 1
    return found[0].get_offsets()


def caption(fig) -> str:
    texts = [t.get_text() for t in fig.texts if t.get_gid() == CAPTION_GID]
    assert len(texts) == 1
    return texts[0].replace("\n", " ")


def test_bars_start_at_zero_with_seed_dots_and_a_caption():
    report = build_report(with_control(frame(MASKING, axis="masking")), description="A-JEPA ablation: masking")
    fig = ablation_figure(report.table, ACC, "Masking strategy", report.reference, report.runs)
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0.0
    dots = seed_dots(fig)
    assert len(dots) == 3 + 2 + 3  # every finished seed, the control's as a line
    assert sorted(np.round(dots[:, 1], 3)) == sorted(np.round([v * 100 for vs in MASKING.values()
                                                               for v in vs if v is not None], 3))
    text = caption(fig)
    assert "error bars: ±1 sample standard deviation over seeds" in text and "n = 2-3 seeds per row" in text
    assert "dots: individual seeds" in text
    assert ax.get_ylabel() == "synthetic accuracy (%)" and "eval/" not in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()][1] == "time-only strips\n(n=2)"
    assert any("control" in t.get_text() for t in ax.get_legend().get_texts())
    matplotlib.pyplot.close(fig)


def test_lines_mark_the_axis_break_and_equal_n_is_said_once():
    runs = frame({"0.4": [0.30, 0.31], "0.5": [0.33, 0.335], "0.7": [0.345, 0.36]}, axis="ratio")
    report = build_report(runs)
    fig = ablation_figure(report.table, ACC, runs=report.runs)
    ax = fig.axes[0]
    low = ax.get_ylim()[0]
    breaks = [line for line in ax.lines if line.get_gid() == BREAK_GID]
    assert low > 0 and len(breaks) == 2  # zoomed: marked
    assert "does not start at 0" in caption(fig) and "n = 2 seeds per row" in caption(fig)
    assert len(seed_dots(fig)) == 6
    matplotlib.pyplot.close(fig)
    # a line whose values sit near 0 starts at 0 and needs no mark
    near = build_report(frame({"1": [0.01, 0.02], "2": [0.3, 0.31]}, axis="depth"))
    fig = ablation_figure(near.table, ACC)
    assert fig.axes[0].get_ylim()[0] == 0.0 and not any(line.get_gid() == BREAK_GID for line in fig.axes[0].lines)
    matplotlib.pyplot.close(fig)


def test_metric_labels_are_words_with_units():
    assert metric_label("eval/esc50/acc") == "ESC-50 accuracy (%)"
    assert metric_label("eval/audioset/map") == "AudioSet mAP (%)"
    assert metric_label("eval/esc50/acc_std") == "ESC-50 accuracy std over folds (points)"
    assert metric_label("eval/esc50/acc", points=False) == "ESC-50 accuracy"
    assert metric_label("train/loss") == "training loss"


def test_written_figures_have_paper_titles(tmp_path, monkeypatch):
    import analysis.outputs as outputs

    runs = with_control(frame(MASKING, axis="masking"))
    report = build_report(runs, title="masking",
                          description="A-JEPA ablation: masking strategy (random / time / freq)")
    assert outputs.figure_heading(report) == "Masking strategy"
    monkeypatch.setattr(outputs, "load_history", lambda runs, key: pd.DataFrame())  # no MLflow store here
    paths = outputs.write_outputs(report, runs, tmp_path)
    png = tmp_path / "masking_eval_synthetic_acc.png"
    assert png in paths and png.stat().st_size > 10_000


def test_loss_curves_name_both_lines(tmp_path):
    from ajepa.sweep.figures import plot_loss_curves

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps({"step": s, "train/loss": 2.0 / (s + 1), "train/lr": 1e-3 * min(1, s / 3)})
                                 for s in range(10)))
    fig = plot_loss_curves(metrics, "s0 · multi-block")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["training loss (train/loss, left axis)", "learning rate (train/lr, right axis)"]
    assert fig.axes[0].get_ylabel() == "training loss" and fig.axes[1].get_ylabel() == "learning rate"
    matplotlib.pyplot.close(fig)


def test_latex_is_compact_n_in_caption_and_options():
    runs = frame({"a": [0.5, 0.6, 0.55], "b": [0.6, 0.7, 0.65]}, axis="masking")
    report = build_report(runs, description="masking strategy")
    tex = render(report, "latex")
    assert "(n=" not in tex and "over n = 3 seeds" in tex
    assert "\\begin{table}[t]" in tex and "resizebox" not in tex
    assert "trials" not in tex.split("\\midrule")[0]  # every trial finished: no trials column
    wide = render(report, "latex", latex_env="table*", latex_resize=True)
    assert "\\begin{table*}[t]" in wide and "\\end{table*}" in wide
    assert "\\resizebox{\\linewidth}{!}{%" in wide
    with pytest.raises(ValueError):
        render(report, "latex", latex_env="figure")


def test_csv_has_the_row_label_once():
    report = build_report(frame({"a": [0.5, 0.6], "b": [0.6, 0.7]}, axis="masking"))
    header = render(report, "csv").splitlines()[0].split(",")
    assert header[0] == "row" and "axis masking" not in header


def test_mask_figure_has_a_legend_and_overlaps_keep_block_colours(tmp_path, monkeypatch):
    from matplotlib.colors import to_rgba

    from ajepa.config import MultiBlockMask
    from ajepa.masks import figures

    image = figures.mask_overlay(np.array([0]), [np.array([1, 2]), np.array([2, 3])], (1, 5))
    assert np.allclose(image[0, 2], to_rgba(figures.BLOCK_COLOURS[1], figures.TARGET_ALPHA))  # the later block
    assert np.allclose(image[0, 1], to_rgba(figures.BLOCK_COLOURS[0], figures.TARGET_ALPHA))  # not a blend
    legends = []
    real = figures.Figure.legend
    monkeypatch.setattr(figures.Figure, "legend", lambda self, **kw: legends.append(kw) or real(self, **kw))
    path = figures.draw_mask_examples(None, (4, 16), (16, 16), {"multi-block": MultiBlockMask()}, tmp_path / "m.png",
                                      examples=1)
    labels = [h.get_label() for h in legends[0]["handles"]]
    assert labels[:2] == ["context (encoder input)", "removed (neither context nor target)"]
    assert "target block 1" in labels and path.stat().st_size > 5_000
