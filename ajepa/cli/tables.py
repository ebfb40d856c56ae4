"""``ajepa-tables``: a sweep's MLflow runs -> the paper's table with our numbers beside it.

    ajepa-tables sweeps/masking.yaml
    ajepa-tables masking --tracking-uri sqlite:////abs/runs/sweeps/mlflow.db --format latex
    ajepa-tables sweeps/ratio.yaml --reference "70 %" --out reports/ratio

Prints the table in ``--format`` to stdout; with ``--out DIR`` also writes it in every
format (``<name>.md``, ``.tex``, ``.csv``, ``<name>_comparisons.csv`` and, with a control
row, ``<name>_control_comparisons.csv``) and the figures (PNG + PDF) there.

The per-clip test predictions the trials logged (``predictions/<task>.csv`` artifacts) are
read for the clip-level test (``p (clips)``); ``--no-clips`` skips them (seed level only).
``--at-step N`` tabulates the values logged at pretraining step N instead of the final ones;
``--out`` also plots each metric against the pretraining step when it was logged at several
(probe learning curves).

Arguments and error reporting only; the work is the :mod:`analysis` package. Like it,
this command never imports torch, so tables build on any machine that reads the store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ajepa.cli.common import fail, guarded
from analysis.clips import load_predictions
from analysis.outputs import write_outputs
from analysis.paper import available_tables, find_paper
from analysis.render import render
from analysis.report import build_report
from analysis.runs import RunsNotFound, load_runs, metrics_at_step
from analysis.source import SpecError, resolve_source
from analysis.tables import metric_names

FORMATS = ("md", "latex", "csv")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ajepa-tables",
        description="Tabulate a sweep's MLflow runs: mean ± std over seeds, paired tests against a "
                    "reference row, and the paper's numbers beside ours.")
    parser.add_argument("source", metavar="SPEC_OR_EXPERIMENT",
                        help="a sweep YAML (sweeps/masking.yaml) or an MLflow experiment name")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the spec's tracking.uri, "
                        "else sqlite:///<abs storage>/mlflow.db with storage runs/sweeps)")
    parser.add_argument("--format", choices=FORMATS, default="md", help="what to print (default md)")
    parser.add_argument("--out", type=Path, help="also write every format and the figures to this folder")
    parser.add_argument("--reference", metavar="LABEL", help="row the others are compared to (default: first row)")
    parser.add_argument("--metric", dest="metrics", nargs="+", action="extend", metavar="M",
                        help="metrics to show, e.g. eval/esc50/acc (default: the spec's metrics, else every "
                             "eval/<task>/{acc,map,f1})")
    parser.add_argument("--paper", metavar="TABLE", help=f"paper table to show beside ours "
                        f"({', '.join(available_tables())} or a CSV; default: the spec's table)")
    parser.add_argument("--parent", default="latest", metavar="RUN_ID",
                        help="sweep run whose trials to use: latest (default), all, or a run id")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    parser.add_argument("--raw", action="store_true",
                        help="show metrics as stored: runs of older versions that logged fractions stay fractions "
                             "(runs tagged ajepa.units=points are in points either way)")
    parser.add_argument("--latex-env", choices=("table", "table*"), default="table",
                        help="LaTeX float: table (one column, default) or table* (spanning both columns)")
    parser.add_argument("--latex-resize", action="store_true",
                        help="LaTeX: scale the tabular to \\linewidth with \\resizebox (needs graphicx)")
    parser.add_argument("--no-plots", action="store_true", help="with --out: skip the figures")
    parser.add_argument("--at-step", type=int, metavar="N",
                        help="cells as logged at pretraining step N (eval.every_steps, or ajepa-sweep --evaluate TASK "
                             "--at-steps all) instead of the final values; the clip-level test is left out")
    parser.add_argument("--no-clips", action="store_true",
                        help="skip the clip-level test (no per-clip predictions are downloaded)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``ajepa-tables``; errors a user can fix end in one line and exit code 2 (ajepa.cli.common)."""
    return guarded("ajepa-tables", lambda: run(argv))


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        source = resolve_source(args.source, args.tracking_uri)
        hint = f"ajepa-sweep {source.spec_path}" if source.spec_path else None
        runs = load_runs(source.uri, source.experiment, parent=args.parent, seeds=source.seeds, axes=source.axes,
                         run_hint=hint)
        # the spec file wins; without one, what the sweep run recorded from its spec
        recorded = runs.attrs
        table_name = source.table or recorded.get("table")
        # an explicit --paper must exist; a spec's `table:` without shipped numbers is only noted
        spec_paper = table_name if table_name and find_paper(table_name) else None
        metrics = args.metrics or source.metrics or recorded.get("metrics") or None
        title = source.name or source.experiment
        if args.at_step is not None:
            runs = metrics_at_step(runs, args.at_step, metric_names(runs, metrics))
            title += f" at step {args.at_step}"
        predictions = None if args.no_clips or args.at_step is not None else load_predictions(runs)
        report = build_report(runs, predictions=predictions, metrics=metrics,
                              reference=args.reference, paper=args.paper or spec_paper, title=title,
                              description=source.description or recorded.get("description"),
                              alpha=args.alpha, points=not args.raw)
        if args.at_step is not None:
            report.notes.append(f"values logged at pretraining step {args.at_step} (the control row: the encoder at "
                                "initialisation); clip-level test left out (it reads the final predictions).")
        if table_name and not args.paper and spec_paper is None:
            report.notes.append(f"no paper numbers for table {table_name!r} "
                                f"(shipped: {', '.join(available_tables())})")
    except (RunsNotFound, SpecError, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        return fail("ajepa-tables", f"error: {message}")
    latex = {"latex_env": args.latex_env, "latex_resize": args.latex_resize}
    print(render(report, args.format, **latex), end="")
    if args.out is not None:
        written = write_outputs(report, runs, args.out, plots=not args.no_plots, **latex)
        print(f"\nwrote {len(written)} files to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
