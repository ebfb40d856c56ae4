"""Figures for an ablation (matplotlib, Agg backend; each saved as PNG and PDF).

* :func:`plot_ablation`: one metric over the axis values with ±std error bars; bars for
  categorical axes (masking strategy, loss), lines for numeric ones (ratio, depth), where
  the spacing of the x values means something.
* :func:`plot_training_curves`: ``train/loss`` (or any logged metric) against step, one
  line per row (mean over seeds, shaded ±std), to see whether a row lost by learning
  slower or by diverging.

The curriculum schedule p(t) is not drawn here: it is a function of the mask code
(torch) and ``ajepa-masks`` draws it.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.labels import as_number, join_labels  # noqa: E402
from analysis.runs import Axis  # noqa: E402
from analysis.tables import CONTROL_ROW, ROW, metric_display, row_labels  # noqa: E402

FORMATS = ("png", "pdf")


def slug(text: str) -> str:
    """A file-name-safe version of a metric or table name ("eval/esc50/acc" -> "eval_esc50_acc")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "plot"


def is_numeric_axis(axis: Axis) -> bool:
    return bool(axis.labels) and all(as_number(label) is not None for label in axis.labels)


def plot_ablation(table: pd.DataFrame, metric: str, stem: str | Path, title: str | None = None,
                  reference: str | None = None) -> list[Path]:
    """One metric of an :func:`analysis.tables.ablation_table`; returns the files written.

    The control row (if any) is a dashed horizontal line at its mean: the level an
    untrained encoder of the same shape reaches.
    """
    axes: list[Axis] = list(table.attrs.get("axes", []))
    control = table.loc[CONTROL_ROW] if CONTROL_ROW in table.index else None
    table = table[table.index != CONTROL_ROW]
    means, stds = table[(metric, "mean")], table[(metric, "std")].fillna(0.0)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(table) + 2), 3.4), layout="constrained")
    if axes and is_numeric_axis(axes[0]):
        _lines(ax, table, axes, means, stds)
    else:
        _bars(ax, table, means, stds, reference)
    if control is not None and pd.notna(control[(metric, "mean")]):
        level = float(control[(metric, "mean")])
        ax.axhline(level, color="tab:red", linestyle="--", linewidth=1, label=CONTROL_ROW)
        low, high = ax.get_ylim()
        margin = 0.05 * max(high - low, 1e-9)
        ax.set_ylim(min(low, level - margin), max(high, level + margin))
        ax.legend(fontsize="small")
    ax.set_ylabel(metric_display(metric))
    ax.set_title(title or metric_display(metric))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, stem)


def _lines(ax, table, axes: list[Axis], means, stds) -> None:
    """x = the first (numeric) axis; one line per combination of the other axes."""
    first = ("axis", axes[0].name)
    rest = [("axis", a.name) for a in axes[1:]]
    groups = table.groupby([table[c] for c in rest], sort=False) if rest else [((), table)]
    for key, part in groups:
        part = part[part[(means.name[0], "n")] > 0]
        if part.empty:
            continue
        x = [as_number(v) for v in part[first]]
        label = join_labels(key if isinstance(key, tuple) else (key,)) if rest else None
        ax.errorbar(x, means[part.index], yerr=stds[part.index], marker="o", capsize=4, label=label)
    ax.set_xlabel(axes[0].name)
    ax.set_xticks([as_number(v) for v in axes[0].labels], list(axes[0].labels))
    if rest:
        ax.legend(title=", ".join(a.name for a in axes[1:]), fontsize="small")


def _bars(ax, table, means, stds, reference) -> None:
    positions = range(len(table))
    colors = ["tab:gray" if label == reference else "tab:blue" for label in table.index]
    ax.bar(positions, means.fillna(0.0), yerr=stds, capsize=4, color=colors)
    ax.set_xticks(list(positions), [str(label) for label in table.index], rotation=20, ha="right")
    finite = means.dropna()
    if not finite.empty:
        spread = max(float((finite + stds[finite.index]).max() - (finite - stds[finite.index]).min()), 1e-9)
        ax.set_ylim(max(0.0, float((finite - stds[finite.index]).min()) - 0.5 * spread),
                    float((finite + stds[finite.index]).max()) + 0.3 * spread)


def plot_training_curves(history: pd.DataFrame, stem: str | Path, axes: list[Axis] | None = None,
                         title: str | None = None) -> list[Path]:
    """A :func:`analysis.runs.load_history` frame -> mean ± std over seeds per row, per step."""
    axes = list(axes if axes is not None else history.attrs.get("axes", []))
    key = history.attrs.get("key", "value")
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    if not history.empty:
        history = history.assign(**{ROW: row_labels(history, axes)})
        order = list(dict.fromkeys(join_labels(c) for c in _label_order(axes))) or sorted(history[ROW].unique())
        order += [r for r in history[ROW].unique() if r not in order]
        for row in order:
            part = history[history[ROW] == row]
            if part.empty:
                continue
            curve = part.groupby("step")["value"].agg(["mean", "std"]).fillna({"std": 0.0})
            line, = ax.plot(curve.index, curve["mean"], label=row)
            ax.fill_between(curve.index, curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                            color=line.get_color(), alpha=0.2, linewidth=0)
        ax.legend(fontsize="small", title=", ".join(a.name for a in axes) or None)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(title or f"{key} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
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
