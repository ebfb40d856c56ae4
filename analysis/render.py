"""Report -> text: markdown (terminal and file), LaTeX (booktabs) and CSV.

Markdown and LaTeX show what a reader needs at a glance: mean ± std (n) per metric with
the best row in bold, the paired difference to the reference row and to the control row
(the encoder at initialisation) with significance marks -- ``*`` from the seed-level test,
``°`` from the clip-level one -- the paper's number beside ours, and how many trials each
row still lacks. Under it, when the table has two or more tasks, the summary across tasks
(:mod:`analysis.crosstask`: mean, mean rank, IQM with stratified bootstrap CIs, and P(row
beats row)). CSV is the same content as plain numbers, for anyone who wants to
recompute or replot.
"""

from __future__ import annotations

import io
import math

import pandas as pd
from tabulate import tabulate

from analysis import stats
from analysis.crosstask import COLUMNS as CROSS_COLUMNS
from analysis.crosstask import method_note
from analysis.report import Report
from analysis.tables import CONTROL_ROW, TRIALS, metric_display

DASH = "–"
SIGNIFICANT, UNTESTED, NO_VARIANCE = "*", "†", "‡"
CLIP_SIGNIFICANT = "°"


LATEX_ENVS = ("table", "table*")


def render(report: Report, fmt: str = "md", latex_env: str = "table", latex_resize: bool = False) -> str:
    """``fmt``: "md" | "markdown" | "latex" | "tex" | "csv". ``latex_env``/``latex_resize``: see
    :func:`to_latex`."""
    if fmt in ("md", "markdown"):
        return to_markdown(report)
    if fmt in ("latex", "tex"):
        return to_latex(report, env=latex_env, resize=latex_resize)
    if fmt == "csv":
        return to_csv(report)
    raise ValueError(f"unknown format {fmt!r}: use md, latex or csv")


# --------------------------------------------------------------------------- cells


def display_table(report: Report, bold=lambda s: f"**{s}**", show_n: bool = True,
                  show_trials: bool = True) -> pd.DataFrame:
    """Strings for every cell of the main table; ``bold`` marks the best row per metric.
    ``show_n=False`` leaves "(n=...)" out of the cells (the caption says it);
    ``show_trials=False`` drops the trials column."""
    table, cmp = report.table, report.comparison
    out = pd.DataFrame(index=table.index)
    control = table.index == CONTROL_ROW
    for position, axis in enumerate(report.axes):
        cells = table[("axis", axis.name)].astype(str)
        out[axis.name] = cells.mask(control, CONTROL_ROW if position == 0 else DASH)
    if not report.axes:
        out["row"] = table.index
    multi_row = len(table) > 1
    for metric in report.metrics:
        digits = _digits(table[(metric, "mean")])
        name = metric_display(metric)
        cells = []
        for label in table.index:
            cell = _mean_cell(table.at[label, (metric, "mean")], table.at[label, (metric, "std")],
                              table.at[label, (metric, "n")], digits, show_n)
            cells.append(bold(cell) if table.at[label, (metric, "best")] else cell)
        out[name] = cells
        if multi_row:
            lines = cmp[cmp["metric"] == metric].set_index("row")
            out[f"Δ {name}"] = [_delta_cell(lines.loc[label], digits) if label in lines.index else DASH
                                for label in table.index]
        if report.control is not None:
            lines = report.control[report.control["metric"] == metric].set_index("row")
            out[f"Δ {name} vs control"] = [_delta_cell(lines.loc[label], digits) if label in lines.index else DASH
                                           for label in table.index]
    if report.paper is not None:
        for col in report.paper.columns:
            out[f"paper {col}"] = [_number(v, 1) for v in report.paper[col]]
    if show_trials:
        out["trials"] = [_trials_cell(table.loc[label]) for label in table.index]
    return out


def common_n(report: Report) -> int | None:
    """The number of finished seeds when every cell of every metric has the same one, else None."""
    counts = {int(report.table.at[label, (m, "n")]) for m in report.metrics for label in report.table.index}
    return counts.pop() if len(counts) == 1 and 0 not in counts else None


def all_finished(report: Report) -> bool:
    """Every row has all its expected trials finished, with no note."""
    table = report.table
    return bool((table[(TRIALS, "finished")] == table[(TRIALS, "expected")]).all()
                and not table[(TRIALS, "note")].astype(str).str.len().any())


def footnotes(report: Report) -> list[str]:
    notes = ["mean ± std over seeds (n = finished seeds); bold = best row per metric."]
    if len(report.table) > 1:
        correction = report.comparison.attrs.get("correction", "holm")
        holm = ", Holm-adjusted across rows" if correction == "holm" else ""
        families = [report.comparison] + ([report.control] if report.control is not None else [])
        verdicts = set().union(*(set(f["verdict"].astype(str)) for f in families))
        marks = [f"{SIGNIFICANT} p < {report.alpha:g} (paired t-test over seeds{holm})"]
        if any(f.attrs.get("clips") for f in families):
            marks.append(f"{CLIP_SIGNIFICANT} p < {report.alpha:g} (clip-level exact sign-flip test over the "
                         f"test clips of the shared seeds{holm}; accuracy only)")
        marks.append("unmarked: not significant")
        if any(v.startswith(stats.TOO_FEW) for v in verdicts):
            marks.append(f"{UNTESTED} fewer than 2 seed pairs: not testable over seeds")
        if stats.NO_VARIANCE in verdicts:
            marks.append(f"{NO_VARIANCE} the same difference on every seed: no t-test possible")
        target = f"the reference row {report.reference!r}"
        if report.control is not None:
            target += f" (and, in Δ … vs control, the control row {report.control_row!r}: the same encoder " \
                      "at initialisation, probed like the trials)"
        notes.append(f"Δ = mean paired difference to {target} on shared seeds; " + "; ".join(marks) + ".")
    if report.table.attrs.get("points"):
        notes.append("accuracies/mAP logged as fractions are shown in points (x100), like the paper.")
    elif report.table.attrs.get("in_points"):
        notes.append("accuracy, mAP and F1 in points (%), as logged and as the paper reports them.")
    if report.paper is not None:
        notes.append(f"paper: {report.paper.attrs.get('source', report.paper.attrs.get('name', ''))}.")
    return notes + list(report.notes)


def cross_task_display(report: Report, bold=lambda s: f"**{s}**") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Strings for the summary across tasks (one line per summarised row; ``bold`` marks the
    best mean, rank and IQM among the sweep's rows) and for the P(row beats column) matrix."""
    cross = report.cross_task
    summary = cross.summary
    digits = _digits(summary["mean"])
    ranked = summary.drop(index=CONTROL_ROW, errors="ignore")
    best = {"mean": ranked["mean"].max(), "mean_rank": ranked["mean_rank"].min(), "iqm": ranked["iqm"].max()}

    def cell(row: str, column: str, text: str) -> str:
        is_best = row != CONTROL_ROW and len(ranked) > 1 and summary.at[row, column] == best[column]
        return bold(text) if is_best else text

    lines = []
    for row, line in summary.iterrows():
        lines.append({
            "row": row, "scores": str(int(line["n_scores"])),
            "mean": cell(row, "mean", _number(line["mean"], digits)),
            f"{cross.level:.0%} CI (mean)": _interval(line["mean_low"], line["mean_high"], digits, signed=False),
            "mean rank": DASH if pd.isna(line["mean_rank"]) else cell(row, "mean_rank", f"{line['mean_rank']:.2f}"),
            "IQM": cell(row, "iqm", _number(line["iqm"], digits)),
            f"{cross.level:.0%} CI (IQM)": _interval(line["iqm_low"], line["iqm_high"], digits, signed=False),
            "P(> ref)": "ref" if row == cross.reference else _number(line["p_beats_ref"], 2),
            f"{cross.level:.0%} CI (P)": _interval(line["p_low"], line["p_high"], 2, signed=False),
        })
    matrix = cross.improvement.map(lambda p: _number(p, 2))
    matrix.insert(0, "P(row > column)", list(matrix.index))
    return pd.DataFrame(lines), matrix.reset_index(drop=True)


COMPARISON_COLUMNS = ["row", "metric", "n", "Δ", "95% CI (t)", "95% CI (bootstrap)", "p (seeds)", "p adj. (seeds)",
                      "verdict (seeds)", "clips (scored)", "Δ (clips)", "95% CI (seeds × clips)", "p (clips)",
                      "p adj. (clips)", "verdict (clips)", "detectable Δ (clips)"]


def comparison_display(report: Report, comparison: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paired comparisons in full, seed level then clip level: n, Δ, 95% CIs (t and
    bootstrap over seeds), p (seeds), then the clip count, the pooled clip-level Δ, its
    seeds x clips bootstrap interval and p (clips). ``comparison`` defaults to the one
    against the reference row (``report.control`` gives the one against the control)."""
    comparison = report.comparison if comparison is None else comparison
    reference = comparison.attrs.get("reference", report.reference)
    cmp = comparison[(comparison["row"] != reference) & (comparison["verdict"] != stats.CONTROL)]
    digits = {m: _digits(report.table[(m, "mean")]) for m in report.metrics}
    rows = []
    for line in cmp.to_dict("records"):
        d = digits.get(line["metric"], 3)
        clipped = bool(line.get("n_clips"))
        rows.append({
            "row": line["row"], "metric": metric_display(line["metric"]), "n": line["n_pairs"],
            "Δ": _number(line["diff_mean"], d, signed=True),
            "95% CI (t)": _interval(line["ci_low"], line["ci_high"], d),
            "95% CI (bootstrap)": _interval(line["boot_low"], line["boot_high"], d),
            "p (seeds)": _p(line["p_value"]), "p adj. (seeds)": _p(line["p_adjusted"]),
            "verdict (seeds)": line["verdict"],
            "clips (scored)": f"{int(line['n_clips'])} ({int(line['n_scored'])})" if clipped else DASH,
            "Δ (clips)": _number(line.get("clip_diff"), d, signed=True),
            "95% CI (seeds × clips)": _interval(line.get("clip_low"), line.get("clip_high"), d),
            "p (clips)": _p(line.get("p_clips")), "p adj. (clips)": _p(line.get("p_clips_adjusted")),
            "verdict (clips)": line["verdict_clips"] if clipped else DASH,
            "detectable Δ (clips)": _number(line.get("clip_mde"), d),
        })
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


# --------------------------------------------------------------------------- formats


def to_markdown(report: Report) -> str:
    frame = display_table(report)
    lines = [f"## {report.title}" + (f" — {report.description}" if report.description else ""), "",
             f"_{report.source}_", "", _markdown(frame), ""]
    lines += [f"- {note}" for note in footnotes(report)]
    if report.cross_task is not None:
        summary, matrix = cross_task_display(report)
        tasks = ", ".join(metric_display(m) for m in report.cross_task.tasks)
        lines += ["", f"### Across tasks ({tasks})", "", _markdown(summary), "",
                  f"- {method_note(report.cross_task)}"]
        if len(matrix) > 2:
            lines += ["", "### P(row beats column) across tasks", "", _markdown(matrix)]
    cmp = comparison_display(report)
    if not cmp.empty:
        lines += ["", f"### Paired comparisons vs {report.reference!r}", "", _markdown(cmp)]
    if report.control is not None:
        ctrl = comparison_display(report, report.control)
        if not ctrl.empty:
            lines += ["", f"### Paired comparisons vs control {report.control_row!r}", "", _markdown(ctrl)]
    return "\n".join(lines) + "\n"


def to_latex(report: Report, env: str = "table", resize: bool = False) -> str:
    """A booktabs table for a paper, compact by default: "(n=...)" leaves the cells for the
    caption when every cell has the same n, and the trials column goes when every trial
    finished. ``env="table*"`` spans both columns of a two-column paper; ``resize=True``
    scales the tabular to ``\\linewidth`` (needs ``\\usepackage{graphicx}``)."""
    if env not in LATEX_ENVS:
        raise ValueError(f"latex env must be one of {LATEX_ENVS}, got {env!r}")
    n = common_n(report)
    complete = all_finished(report)
    frame = display_table(report, bold=lambda s: f"\\textbf{{{s}}}", show_n=n is None, show_trials=not complete)
    frame = frame.map(_latex_cell)
    columns = [_latex_escape(c) for c in frame.columns]
    n_label_cols = max(1, len(report.axes))
    spec = "l" * n_label_cols + "r" * (len(columns) - n_label_cols - (0 if complete else 1)) + ("" if complete else "l")
    caption = report.title + (f": {report.description}" if report.description else "")
    if n is not None:
        caption += f" (mean ± std over n = {n} seeds" + ("; every trial finished)" if complete else ")")
    needs = "booktabs" + (" and graphicx" if resize else "")
    tabular = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
               " & ".join(columns) + " \\\\", "\\midrule",
               *(" & ".join(row) + " \\\\" for row in frame.itertuples(index=False)),
               "\\bottomrule", "\\end{tabular}"]
    if resize:
        tabular = ["\\resizebox{\\linewidth}{!}{%", *tabular, "}"]
    lines = [
        f"% generated by ajepa-tables; needs \\usepackage{{{needs}}}",
        f"\\begin{{{env}}}[t]", "\\centering", "\\small",
        f"\\caption{{{_latex_escape(caption)}}}",
        *tabular,
        "\\par\\smallskip\\footnotesize " + _latex_escape(" ".join(footnotes(report))),
        f"\\end{{{env}}}",
    ]
    if report.cross_task is not None:
        lines += _latex_cross_task(report, env, resize)
    return "\n".join(lines) + "\n"


def _latex_cross_task(report: Report, env: str, resize: bool) -> list[str]:
    """The summary across tasks as a second float: the summary tabular, then P(row beats column)."""
    summary, matrix = cross_task_display(report, bold=lambda s: f"\\textbf{{{s}}}")
    tabulars = []
    for frame in (summary, matrix) if len(matrix) > 2 else (summary,):
        cells = frame.map(_latex_cell)
        tabular = [f"\\begin{{tabular}}{{l{'r' * (len(frame.columns) - 1)}}}", "\\toprule",
                   " & ".join(_latex_escape(c) for c in frame.columns) + " \\\\", "\\midrule",
                   *(" & ".join(row) + " \\\\" for row in cells.itertuples(index=False)),
                   "\\bottomrule", "\\end{tabular}"]
        if resize:
            tabular = ["\\resizebox{\\linewidth}{!}{%", *tabular, "}"]
        tabulars += tabular + ["\\par\\medskip"]
    tasks = ", ".join(metric_display(m) for m in report.cross_task.tasks)
    return [f"\\begin{{{env}}}[t]", "\\centering", "\\small",
            f"\\caption{{{_latex_escape(f'{report.title}: across tasks ({tasks})')}}}",
            *tabulars[:-1],
            "\\par\\smallskip\\footnotesize " + _latex_escape(method_note(report.cross_task)),
            f"\\end{{{env}}}"]


def to_csv(report: Report) -> str:
    buffer = io.StringIO()
    numeric_table(report).to_csv(buffer, index=False)
    return buffer.getvalue()


def numeric_table(report: Report) -> pd.DataFrame:
    """One row per table row, plain numbers: means, stds, n, best, Δ, CIs, p, verdicts, paper, trials,
    and the summary across tasks (``across <stat>``, ``across P(> <row>)``: NaN for rows left out).
    ``row`` is the row label; a sweep of several axes also gets one ``axis <name>`` column each."""
    table, cmp = report.table, report.comparison
    out = {"row": table.index.to_numpy()}  # columns, joined once at the end
    if len(report.axes) > 1:  # one axis: its label is the row label, said once
        for axis in report.axes:
            out[f"axis {axis.name}"] = table[("axis", axis.name)].to_numpy()
    for metric in report.metrics:
        for stat in ("mean", "std", "n", "best"):
            out[f"{metric} {stat}"] = table[(metric, stat)].to_numpy()
        lines = cmp[cmp["metric"] == metric].set_index("row").reindex(table.index)
        for col in NUMERIC_COLUMNS:
            out[f"{metric} {col}"] = lines[col].to_numpy()
        if report.control is not None:
            lines = report.control[report.control["metric"] == metric].set_index("row").reindex(table.index)
            for col in NUMERIC_COLUMNS:
                out[f"{metric} control {col}"] = lines[col].to_numpy()
    if report.paper is not None:
        for col in report.paper.columns:
            out[f"paper {col}"] = report.paper[col].to_numpy()
    for stat in ("expected", "finished", "running", "failed", "stopped", "missing", "note"):
        out[f"trials {stat}"] = table[(TRIALS, stat)].to_numpy()
    if report.cross_task is not None:
        summary = report.cross_task.summary.reindex(table.index)
        for col in CROSS_COLUMNS:
            out[f"across {col}"] = summary[col].to_numpy()
        improvement = report.cross_task.improvement.reindex(index=table.index)
        for row in report.cross_task.improvement.columns:
            out[f"across P(> {row})"] = improvement[row].to_numpy()
    out["reference"] = out["row"] == report.reference
    out["control"] = out["row"] == CONTROL_ROW
    return pd.DataFrame(out)


NUMERIC_COLUMNS = ("n_pairs", "diff_mean", "ci_low", "ci_high", "boot_low", "boot_high", "p_value", "p_adjusted",
                   "verdict", "n_clips", "n_scored", "clip_diff", "clip_low", "clip_high", "clip_mde", "p_clips",
                   "p_clips_adjusted", "verdict_clips")


# --------------------------------------------------------------------------- helpers


def _markdown(frame: pd.DataFrame) -> str:
    return tabulate(frame.values.tolist(), headers=list(frame.columns), tablefmt="pipe",
                    disable_numparse=True, stralign="left")


def _digits(means: pd.Series) -> int:
    finite = means.dropna().abs()
    return 2 if finite.empty or finite.max() >= 1 else 4


def _number(value, digits: int, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _mean_cell(mean, std, n, digits: int, show_n: bool = True) -> str:
    if not n:
        return DASH
    if n == 1 or pd.isna(std):
        return f"{mean:.{digits}f}" + (" (n=1)" if show_n else "")
    return f"{mean:.{digits}f} ± {std:.{digits}f}" + (f" (n={int(n)})" if show_n else "")


def _delta_cell(line: pd.Series, digits: int) -> str:
    verdict = str(line["verdict"])
    if verdict == stats.REFERENCE:
        return "ref"
    if verdict == stats.CONTROL or pd.isna(line["diff_mean"]):
        return DASH
    value = _number(line["diff_mean"], digits, signed=True)
    if verdict in (stats.BETTER, stats.WORSE):
        value += SIGNIFICANT
    elif verdict.startswith(stats.TOO_FEW):
        value += UNTESTED
    elif verdict == stats.NO_VARIANCE:
        value += NO_VARIANCE
    if str(line.get("verdict_clips", "")) in (stats.BETTER, stats.WORSE):
        value += CLIP_SIGNIFICANT
    return value


def _trials_cell(row: pd.Series) -> str:
    done, expected, note = row[(TRIALS, "finished")], row[(TRIALS, "expected")], row[(TRIALS, "note")]
    text = f"{int(done)}/{int(expected)}"
    return f"{text} ({note})" if note else text


def _interval(low, high, digits: int, signed: bool = True) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return DASH
    sign = "+" if signed else ""
    return f"[{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def _p(value) -> str:
    if value is None or pd.isna(value):
        return DASH
    return "<0.001" if value < 0.001 else f"{value:.3f}"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: str) -> str:
    text = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    return (text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("–", "--")
            .replace(SIGNIFICANT, r"$^{*}$").replace(UNTESTED, r"$^{\dagger}$").replace(NO_VARIANCE, r"$^{\ddagger}$")
            .replace(CLIP_SIGNIFICANT, r"$^{\circ}$").replace("…", r"\ldots{}").replace("×", r"$\times$"))


def _latex_cell(cell: str) -> str:
    if cell.startswith("\\textbf{") and cell.endswith("}"):
        return "\\textbf{" + _latex_escape(cell[len("\\textbf{"):-1]) + "}"
    return _latex_escape(cell)
