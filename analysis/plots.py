"""Figures for an ablation (matplotlib, Agg backend; each saved as PNG and PDF).

* :func:`plot_ablation`: one metric over the axis values: bars from 0 for categorical axes
  (masking strategy, loss), a line for numeric ones (ratio, depth), where the spacing of
  the x values means something; a line's y-axis is zoomed and the break is marked. Every
  seed is a dot, error bars are ±1 sample std over seeds, and the caption under the plot
  says so, with n.
* :func:`plot_training_curves`: ``train/loss`` (or any logged metric) against step, one
  line per row (mean over seeds, shaded ±std), to see whether a row lost by learning
  slower or by diverging.

Titles and axis labels are the paper's words ("ESC-50 accuracy (%)"), not metric keys.
The curriculum schedule p(t) is not drawn here: it is a function of the mask code
(torch) and ``ajepa-masks`` draws it.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.labels import as_number, join_labels  # noqa: E402
from analysis.runs import Axis  # noqa: E402
from analysis.tables import CONTROL_ROW, ROW, metric_display, row_labels  # noqa: E402

FORMATS = ("png", "pdf")
SEEDS_GID = "seeds"          # the per-seed dots (tests and readers of the figure find them by gid)
BREAK_GID = "axis-break"     # the mark on a y-axis that does not start at 0
CAPTION_GID = "caption"

TASK_NAMES = {"esc50": "ESC-50", "spcv2": "SPC-V2", "speechcommands": "SPC-V2", "audioset": "AudioSet",
              "as20k": "AS-20K", "as2m": "AS-2M", "synthetic": "synthetic"}
METRIC_NAMES = {"acc": "accuracy", "map": "mAP", "f1": "F1", "acc_std": "accuracy std over folds",
                "loss": "loss"}


def slug(text: str) -> str:
    """A file-name-safe version of a metric or table name ("eval/esc50/acc" -> "eval_esc50_acc")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "plot"


def is_numeric_axis(axis: Axis) -> bool:
    return bool(axis.labels) and all(as_number(label) is not None for label in axis.labels)


def metric_label(metric: str, points: bool = True) -> str:
    """"eval/esc50/acc" -> "ESC-50 accuracy (%)"; "train/loss" -> "training loss"; other keys
    as :func:`analysis.tables.metric_display` words them."""
    parts = metric.split("/")
    if parts[0] == "eval" and len(parts) >= 3:
        task = TASK_NAMES.get(parts[1].lower(), parts[1])
        name = METRIC_NAMES.get(parts[-1], parts[-1])
        fold = f" ({parts[2]})" if len(parts) > 3 else ""
        unit = " (points)" if points and parts[-1] == "acc_std" else " (%)" if points and parts[-1] in METRIC_NAMES \
            and parts[-1] != "loss" else ""
        return f"{task} {name}{fold}{unit}"
    if parts[0] == "train" and len(parts) == 2:
        return f"training {METRIC_NAMES.get(parts[1], parts[1])}"
    return metric_display(metric)


def _n_text(counts: list[int], what: str = "seeds") -> str:
    """"n = 3 seeds per row" or "n = 1-3 seeds per row (under each label)"."""
    counts = [int(c) for c in counts if c]
    if not counts:
        return "no finished seeds"
    low, high = min(counts), max(counts)
    return f"n = {low} {what} per row" if low == high else f"n = {low}-{high} {what} per row (under each label)"


def plot_ablation(table: pd.DataFrame, metric: str, stem: str | Path, title: str | None = None,
                  reference: str | None = None, runs: pd.DataFrame | None = None) -> list[Path]:
    """One metric of an :func:`analysis.tables.ablation_table`; returns the files written.

    ``runs`` (the frame the table was built from, in the table's units) adds one dot per
    seed. The control row (if any) is a dashed horizontal line at its mean: the level an
    untrained encoder of the same shape reaches.
    """
    return _save(ablation_figure(table, metric, title, reference, runs), stem)


def ablation_figure(table: pd.DataFrame, metric: str, title: str | None = None, reference: str | None = None,
                    runs: pd.DataFrame | None = None):
    """The figure :func:`plot_ablation` saves (for tests and notebooks)."""
    axes: list[Axis] = list(table.attrs.get("axes", []))
    points = metric in set(table.attrs.get("points", [])) | set(table.attrs.get("in_points", []))
    control = table.loc[CONTROL_ROW] if CONTROL_ROW in table.index else None
    seeds = None
    if runs is not None:
        from analysis.stats import seed_values

        seeds = seed_values(runs, metric, axes or None)
    table = table[table.index != CONTROL_ROW]
    means, stds = table[(metric, "mean")], table[(metric, "std")]
    counts = table[(metric, "n")].astype(int)
    fig, ax = plt.subplots(figsize=(max(4.6, 0.95 * len(table) + 2.2), 4.0), layout="constrained")
    numeric = bool(axes) and is_numeric_axis(axes[0])
    unequal = counts[counts > 0].nunique() > 1
    if numeric:
        _lines(ax, table, axes, means, stds.fillna(0.0), seeds)
    else:
        _bars(ax, table, means, stds, reference, seeds, counts if unequal else None)
    notes = []
    if control is not None and pd.notna(control[(metric, "mean")]):
        level = float(control[(metric, "mean")])
        ax.axhline(level, color="tab:red", linestyle="--", linewidth=1,
                   label=f"control: encoder at initialisation (mean, n = {int(control[(metric, 'n')])})")
        low, high = ax.get_ylim()
        margin = 0.05 * max(high - low, 1e-9)
        ax.set_ylim(min(low, level - margin) if numeric else 0.0, max(high, level + margin))
    if ax.get_legend_handles_labels()[0]:
        if not numeric:  # room above the bars for the legend
            low, high = ax.get_ylim()
            ax.set_ylim(low, high * 1.18)
        group = ", ".join(a.name for a in axes[1:]) if numeric and len(axes) > 1 else None
        ax.legend(fontsize="small", loc="upper center" if not numeric else "best", ncol=2, framealpha=0.9,
                  title=group)
    broken = _mark_break(ax) if numeric else False
    ax.set_ylabel(metric_label(metric, points))
    ax.set_title(title or metric_label(metric, points), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    shape = "line markers: means" if numeric else "bars: means"
    notes.append(f"{shape} over seeds; error bars: ±1 sample standard deviation over seeds "
                 f"({_n_text(list(counts))}; none where n = 1)")
    if seeds is not None:
        notes.append("dots: individual seeds")
    if reference is not None and not numeric and reference in table.index:
        notes.append(f"grey bar: reference row {reference!r}")
    if broken:
        notes.append("the y-axis does not start at 0 (break mark at its foot)")
    return _caption(fig, "; ".join(notes) + ".")


def _caption(fig, caption: str):
    """The caption under the axes (what the error bars are, n, what the marks mean)."""
    width_chars = int(fig.get_figwidth() * 17)
    text = textwrap.fill(caption, width_chars)
    lines = text.count("\n") + 1
    fig.text(0.01, 0.005, text, fontsize=7, ha="left", va="bottom", gid=CAPTION_GID)
    height = (0.13 * lines + 0.06) / fig.get_figheight()  # inches of caption -> figure fraction
    fig.get_layout_engine().set(rect=(0, height, 1, 1 - height))
    fig.caption = caption  # read by tests and notebooks; not a matplotlib attribute
    return fig


def _seed_dots(ax, xs, rows, seeds, width: float) -> None:
    """One dot per finished seed of each row, spread a little sideways so equal values show."""
    if seeds is None:
        return
    dots_x, dots_y = [], []
    for x, row in zip(xs, rows):
        if row not in seeds.index:
            continue
        values = seeds.loc[row].dropna().to_numpy(dtype=float)
        offsets = np.linspace(-width, width, len(values)) if len(values) > 1 else np.zeros(len(values))
        dots_x += list(x + offsets)
        dots_y += list(values)
    ax.scatter(dots_x, dots_y, s=14, color="black", zorder=3, label="seeds", gid=SEEDS_GID)


def _lines(ax, table, axes: list[Axis], means, stds, seeds=None) -> None:
    """x = the first (numeric) axis; one line per combination of the other axes."""
    first = ("axis", axes[0].name)
    rest = [("axis", a.name) for a in axes[1:]]
    groups = table.groupby([table[c] for c in rest], sort=False) if rest else [((), table)]
    span = np.ptp([as_number(v) for v in axes[0].labels]) or 1.0
    for key, part in groups:
        part = part[part[(means.name[0], "n")] > 0]
        if part.empty:
            continue
        x = [as_number(v) for v in part[first]]
        label = join_labels(key if isinstance(key, tuple) else (key,)) if rest else None
        ax.errorbar(x, means[part.index], yerr=stds[part.index], marker="o", capsize=4, label=label)
        _seed_dots(ax, x, list(part.index), seeds, 0.01 * span)
    ax.set_xlabel(axes[0].name)
    ax.set_xticks([as_number(v) for v in axes[0].labels], list(axes[0].labels))
    if rest:
        ax.legend(title=", ".join(a.name for a in axes[1:]), fontsize="small")


def _bars(ax, table, means, stds, reference, seeds=None, counts=None) -> None:
    positions = list(range(len(table)))
    colors = ["tab:gray" if label == reference else "tab:blue" for label in table.index]
    ax.bar(positions, means.fillna(0.0), yerr=stds, capsize=4, color=colors, alpha=0.85,
           error_kw={"elinewidth": 1.2})
    _seed_dots(ax, positions, list(table.index), seeds, 0.12)
    labels = [str(label) for label in table.index]
    if counts is not None:
        labels = [f"{label}\n(n={int(n)})" for label, n in zip(labels, counts)]
    ax.set_xticks(positions, labels, rotation=20, ha="right")
    tops = [float((means + stds.fillna(0.0)).max())] if means.notna().any() else []
    if seeds is not None and seeds.notna().any().any():
        tops.append(float(np.nanmax(seeds.to_numpy(dtype=float))))
    top = max(tops) if tops else 1.0
    ax.set_ylim(0.0, top * 1.12 if top > 0 else 1.0)


def _mark_break(ax) -> bool:
    """A zoomed y-axis: if it does not start at 0, two slanted strokes at its foot say so
    (returns True); an axis close to 0 anyway is started there."""
    low, high = ax.get_ylim()
    if low <= 0 or low < 0.25 * (high - low):  # scores and losses are >= 0: an error bar below is cut
        ax.set_ylim(0.0, high)
        return False
    kwargs = {"transform": ax.transAxes, "color": "black", "clip_on": False, "linewidth": 1.2}
    for dy in (0.0, 0.03):
        ax.plot([-0.025, 0.025], [0.0 + dy, 0.03 + dy], gid=BREAK_GID, **kwargs)
    return True


def plot_training_curves(history: pd.DataFrame, stem: str | Path, axes: list[Axis] | None = None,
                         title: str | None = None, markers: bool = False, control: float | None = None) -> list[Path]:
    """A :func:`analysis.runs.load_history` frame -> mean ± std over seeds per row, per step.
    ``markers``: a dot at every step measured (probe learning curves: a few evaluations);
    ``control``: the control row's mean, drawn as a dashed line."""
    axes = list(axes if axes is not None else history.attrs.get("axes", []))
    key = history.attrs.get("key", "value")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    counts = []
    if not history.empty:
        history = history.assign(**{ROW: row_labels(history, axes)})
        order = list(dict.fromkeys(join_labels(c) for c in _label_order(axes))) or sorted(history[ROW].unique())
        order += [r for r in history[ROW].unique() if r not in order]
        for row in order:
            part = history[history[ROW] == row]
            if part.empty:
                continue
            counts.append(part["run_id"].nunique() if "run_id" in part else 1)
            curve = part.groupby("step")["value"].agg(["mean", "std"]).fillna({"std": 0.0})
            line, = ax.plot(curve.index, curve["mean"], label=row, marker="o" if markers else None)
            ax.fill_between(curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    if control is not None and not pd.isna(control):
        ax.axhline(control, color="tab:red", linestyle="--", linewidth=1, label=CONTROL_ROW)
    if not history.empty:
        ax.legend(fontsize="small", title=", ".join(a.name for a in axes) or None)
    ax.set_xlabel("pretraining step (optimizer steps)")
    ax.set_ylabel(metric_label(key) if key != "value" else key)
    ax.set_title(title or f"{metric_label(key)} during pretraining", fontsize=10)
    ax.grid(alpha=0.3)
    _caption(fig, f"lines: mean over seeds; bands: ±1 standard deviation over seeds ({_n_text(counts)}).")
    return _save(fig, stem)


def _label_order(axes: list[Axis]):
    import itertools

    return itertools.product(*(a.labels for a in axes)) if axes else []


def _save(fig, stem: str | Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(path, dpi=150)
        paths.append(path)
    plt.close(fig)
    return paths
