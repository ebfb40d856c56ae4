"""Write one report to a folder: every text format, the detailed comparisons and the figures.

What ``ajepa-tables --out DIR`` writes (:mod:`ajepa.cli.tables`), kept here so that a
notebook or a script gets the same files without going through the command line.
"""

from __future__ import annotations

from pathlib import Path

from analysis.plots import plot_ablation, plot_training_curves, slug
from analysis.render import render
from analysis.report import Report
from analysis.runs import load_history
from analysis.tables import latest_attempts


def write_outputs(report: Report, runs, out_dir: Path, plots: bool = True) -> list[Path]:
    """Every text format, the detailed comparisons and (optionally) the figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = slug(report.title)
    written = []
    for fmt, suffix in (("md", "md"), ("latex", "tex"), ("csv", "csv")):
        path = out_dir / f"{name}.{suffix}"
        path.write_text(render(report, fmt))
        written.append(path)
    comparisons = out_dir / f"{name}_comparisons.csv"
    report.comparison.to_csv(comparisons, index=False)
    written.append(comparisons)
    if report.control is not None:
        comparisons = out_dir / f"{name}_control_comparisons.csv"
        report.control.to_csv(comparisons, index=False)
        written.append(comparisons)
    if plots:
        for metric in report.metrics:
            if report.table[(metric, "n")].sum():
                written += plot_ablation(report.table, metric, out_dir / f"{name}_{slug(metric)}",
                                         title=f"{report.title}: {metric}", reference=report.reference)
        # one attempt per (row, seed), as in the table: a failed try and its retry are not averaged
        history = load_history(latest_attempts(runs, report.axes), "train/loss")
        if not history.empty:
            written += plot_training_curves(history, out_dir / f"{name}_train_loss", title=f"{report.title}: train/loss")
    return written
