"""Ablation analysis for ajepa: MLflow sweep runs -> tables, paired statistics and figures.

Never imports torch (a test checks), so tables can be built on any laptop that can
read the MLflow store. Typical use::

    from analysis import load_runs, load_predictions, build_report, render
    runs = load_runs("sqlite:////abs/runs/sweeps/mlflow.db", "masking")
    report = build_report(runs, paper="masking", reference="multi-block (4 blocks)",
                          predictions=load_predictions(runs))   # None: seed-level tests only
    print(render(report, "md"))

Lower level: :func:`ablation_table`, :func:`paired_comparison`, :func:`paper_table`,
:func:`load_history`; the clip-level test in :mod:`analysis.clips`; figures in
:mod:`analysis.plots` (imported on demand: matplotlib). Control trials
(``ajepa.role=control``) form the row :data:`CONTROL_ROW`.
"""

from analysis.clips import load_predictions
from analysis.paper import align_paper, available_tables, paper_table
from analysis.render import render
from analysis.report import Report, build_report
from analysis.runs import Axis, RunsNotFound, load_history, load_runs
from analysis.source import SweepSource, resolve_source
from analysis.stats import paired_comparison, paired_differences
from analysis.tables import CONTROL_ROW, ablation_table, as_points

__all__ = [
    "CONTROL_ROW", "Axis", "Report", "RunsNotFound", "SweepSource", "ablation_table", "align_paper", "as_points",
    "available_tables", "build_report", "load_history", "load_predictions", "load_runs", "paired_comparison",
    "paired_differences", "paper_table", "render", "resolve_source",
]
