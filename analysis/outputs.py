"""Write one report to a folder: every text format, the detailed comparisons and the figures.

What ``ajepa-tables --out DIR`` writes (:mod:`ajepa.cli.tables`), kept here so that a
notebook or a script gets the same files without going through the command line: the
table in every format, the comparisons, a bar/line figure per metric, the probe learning
curves (metrics logged at several pretraining steps) and the training loss.
"""

from __future__ import annotations

import re
from pathlib import Path

from ajepa.contracts import ROLE_CONTROL
from analysis.plots import metric_label, plot_ablation, plot_training_curves, slug
from analysis.render import render
from analysis.report import Report
from analysis.runs import FINISHED, load_history
from analysis.tables import CONTROL_ROW, latest_attempts


def write_outputs(report: Report, runs, out_dir: Path, plots: bool = True, latex_env: str = "table",
                  latex_resize: bool = False) -> list[Path]:
    """Every text format, the detailed comparisons and (optionally) the figures; ``latex_*``:
    see :func:`analysis.render.to_latex`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = slug(report.title)
    written = []
    for fmt, suffix in (("md", "md"), ("latex", "tex"), ("csv", "csv")):
        path = out_dir / f"{name}.{suffix}"
        path.write_text(render(report, fmt, latex_env=latex_env, latex_resize=latex_resize))
        written.append(path)
    comparisons = out_dir / f"{name}_comparisons.csv"
    report.comparison.to_csv(comparisons, index=False)
    written.append(comparisons)
    if report.control is not None:
        comparisons = out_dir / f"{name}_control_comparisons.csv"
        report.control.to_csv(comparisons, index=False)
        written.append(comparisons)
    if plots:
        heading = figure_heading(report)
        points = set(report.table.attrs.get("points", [])) | set(report.table.attrs.get("in_points", []))
        for metric in report.metrics:
            if report.table[(metric, "n")].sum():
                written += plot_ablation(report.table, metric, out_dir / f"{name}_{slug(metric)}",
                                         title=f"{heading}: {metric_label(metric, metric in points)}",
                                         reference=report.reference, runs=report.runs)
        # one attempt per (row, seed), as in the table: a failed try and its retry are not averaged
        attempts = latest_attempts(runs, report.axes)
        written += learning_curves(report, attempts, out_dir / name, heading)
        history = load_history(attempts, "train/loss")
        if not history.empty:
            written += plot_training_curves(history, out_dir / f"{name}_train_loss",
                                            title=f"{heading}: training loss")
    return written


def learning_curves(report: Report, attempts, stem: Path, heading: str) -> list[Path]:
    """``<name>_<metric>_curve.png/pdf``: each metric against the pretraining step, per row
    (mean ± std over seeds), for the metrics logged at two or more steps (``eval.every_steps``,
    ``ajepa-sweep --evaluate TASK --at-steps all``); control trials (one step) left out."""
    trials = attempts[~attempts["role"].eq(ROLE_CONTROL)] if "role" in attempts else attempts
    trials = trials[trials["status"] == FINISHED]
    written = []
    if trials.empty:
        return written
    for metric in report.metrics:
        history = load_history(trials, metric)
        if history.empty or history["step"].nunique() < 2:
            continue
        control = report.table.at[CONTROL_ROW, (metric, "mean")] if CONTROL_ROW in report.table.index else None
        written += plot_training_curves(history, stem.with_name(f"{stem.name}_{slug(metric)}_curve"),
                                        axes=report.axes, title=f"{heading}: {metric_label(metric)} during pretraining",
                                        markers=True, control=control)
    return written


def figure_heading(report: Report) -> str:
    """What a figure is about, in the paper's words, from the sweep's description: a source
    prefix goes ("A-JEPA ablation: masking strategy (random / ...)" -> "Masking strategy"),
    so does a parenthesis at its end, and "Encoder capacity: ViT-Tiny / ..." keeps its head.
    Without a description: the sweep's name."""
    text = (report.description or report.title or "ablation").strip()
    source = re.match(r"^(A-JEPA|I-JEPA|Riou|Table|Fig)[^:]{0,30}:\s*", text)
    if source:
        text = text[source.end():]
    elif ":" in text:
        text = text.split(":", 1)[0]
    if " (" in text and text.rstrip().endswith(")"):
        text = text.split(" (", 1)[0]
    text = text.strip() or report.title
    return text[:1].upper() + text[1:]
