"""Assemble one ablation report: our table, the paired comparisons, the summary across tasks
and the paper's numbers.

The renderers (markdown, LaTeX, CSV) and the plots all take a :class:`Report`, so they
agree on rows, reference and units by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.crosstask import CrossTask, cross_task
from analysis.paper import align_paper, paper_table
from analysis.runs import Axis
from analysis.stats import paired_comparison
from analysis.tables import ablation_table, as_points, axes_of, find_row, metric_display, metric_names


@dataclass
class Report:
    title: str
    table: pd.DataFrame                 # analysis.tables.ablation_table
    comparison: pd.DataFrame            # analysis.stats.paired_comparison vs the reference row
    reference: str
    paper: pd.DataFrame | None = None   # aligned to table rows (analysis.paper.align_paper)
    description: str | None = None
    source: str = ""
    alpha: float = 0.05
    notes: list[str] = field(default_factory=list)
    control: pd.DataFrame | None = None  # paired_comparison vs the control row (None: the sweep has none)
    runs: pd.DataFrame | None = None     # the trials the table was built from, in its units (per-seed dots)
    cross_task: CrossTask | None = None  # analysis.crosstask: the rows over all tasks (None: fewer than 2 tasks)

    @property
    def control_row(self) -> str | None:
        return self.table.attrs.get("control")

    @property
    def metrics(self) -> list[str]:
        return list(self.table.attrs["metrics"])

    @property
    def axes(self) -> list[Axis]:
        return list(self.table.attrs["axes"])


def build_report(runs: pd.DataFrame, metrics: list[str] | None = None, reference: str | None = None,
                 paper: str | pd.DataFrame | None = None, title: str | None = None,
                 description: str | None = None, seeds=None, alpha: float = 0.05,
                 points: bool = True, axes: list[Axis] | None = None,
                 predictions: pd.DataFrame | None = None) -> Report:
    """Everything ``ajepa-tables`` prints, from a :func:`analysis.runs.load_runs` frame.

    points: show accuracies/mAP logged as fractions in points (x100), as the paper does.
    predictions: per-clip test outcomes (:func:`analysis.clips.load_predictions`) for the
    clip-level test beside the seed-level one; None: seed level only.
    """
    if points:
        runs = as_points(runs)
    axes = axes_of(runs, axes)
    metrics = metric_names(runs, metrics)
    table = ablation_table(runs, metrics, axes, seeds)
    if table.empty:
        raise ValueError("the sweep has no rows: no axis labels and no trials")
    reference = find_row(table, reference) if reference is not None else table.index[0]
    comparison = paired_comparison(runs, metrics, reference, axes, alpha=alpha, predictions=predictions)
    control_row = table.attrs.get("control")
    control = None
    if control_row is not None and control_row != reference:
        control = paired_comparison(runs, metrics, control_row, axes, alpha=alpha, predictions=predictions)
    aligned = None
    notes = []
    if paper is not None:
        frame = paper_table(paper) if isinstance(paper, str) else paper
        aligned = align_paper(frame, list(table.index))
        if aligned.attrs.get("unmatched"):
            notes.append("paper rows with no matching row here: " + ", ".join(aligned.attrs["unmatched"]))
    summary = cross_task(runs, metrics, reference, axes)
    if summary is not None and summary.left_out:
        notes.append("left out of the summary across tasks (a task has no finished seed): " + "; ".join(
            f"{row} (lacks {', '.join(metric_display(m) for m in lacking)})" for row, lacking in summary.left_out.items()))
    missing = [m for m in metrics if table[(m, "n")].sum() == 0]
    if missing:
        notes.append("no finished trial reported: " + ", ".join(missing))
    attrs = runs.attrs
    source = f"experiment {attrs.get('experiment', '?')} @ {attrs.get('uri', '?')}"
    if attrs.get("parent_run_id"):
        source += f", sweep run {attrs['parent_run_id']}"
    return Report(title=title or str(attrs.get("experiment") or "ablation"), table=table, comparison=comparison,
                  reference=reference, paper=aligned, description=description, source=source,
                  alpha=alpha, notes=notes, control=control, runs=runs, cross_task=summary)
