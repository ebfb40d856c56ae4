"""Ablation analysis for ajepa: MLflow sweep runs -> tables, paired statistics and figures.

Never imports torch (a test checks), so tables can be built on any laptop that can
read the MLflow store. Typical use::

    from analysis import load_runs, build_report, render
    runs = load_runs("sqlite:////abs/runs/sweeps/mlflow.db", "masking")
    report = build_report(runs, paper="masking", reference="multi-block (4 blocks)")
    print(render(report, "md"))

Lower level: :func:`ablation_table`, :func:`paired_comparison`, :func:`paper_table`,
:func:`load_history`; figures in :mod:`analysis.plots` (imported on demand: matplotlib).
"""

from analysis.paper import align_paper, available_tables, paper_table
from analysis.render import render
from analysis.report import Report, build_report
from analysis.runs import Axis, RunsNotFound, load_history, load_runs
from analysis.source import SweepSource, resolve_source
from analysis.stats import paired_comparison, paired_differences
from analysis.tables import ablation_table, as_points

__all__ = [
    "Axis", "Report", "RunsNotFound", "SweepSource", "ablation_table", "align_paper", "as_points",
    "available_tables", "build_report", "load_history", "load_runs", "paired_comparison",
    "paired_differences", "paper_table", "render", "resolve_source",
]
