"""Pictures a trial attaches to its MLflow run: its loss curves and a few of its masks.

Kept out of the MLflow plumbing so that drawing (matplotlib, the masks package) is one
job in one place: both functions write or return a figure and log nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ajepa.contracts import METRIC_TRAIN_LOSS, METRIC_TRAIN_LR

if TYPE_CHECKING:
    from ajepa.sweep.trials import Trial


def draw_trial_masks(trial: "Trial", path: Path) -> Path:
    """A few sampled masks of the trial's strategy over a drawn spectrogram, as ``path`` (PNG)."""
    from ajepa.masks.figures import draw_mask_examples

    cfg = trial.config()
    label = " | ".join(trial.labels.values()) or cfg.masking.strategy
    return draw_mask_examples(None, cfg.grid, cfg.model.patch_size, {label: cfg.masking}, path, seed=trial.seed)


def plot_loss_curves(metrics_file: Path, title: str):
    """train/loss (left axis) and the learning rate (right axis, grey) against step from the
    trainer's metrics.jsonl, one legend naming both lines; None if no loss was logged."""
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    points = [(r["step"], r[METRIC_TRAIN_LOSS]) for r in records if METRIC_TRAIN_LOSS in r]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps, losses = zip(*points)
    lines = ax.plot(steps, losses, color="tab:blue", label="training loss (train/loss, left axis)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss", color="tab:blue")
    ax.tick_params(axis="y", colors="tab:blue")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    lrs = [(r["step"], r[METRIC_TRAIN_LR]) for r in records if METRIC_TRAIN_LR in r]
    if lrs:
        twin = ax.twinx()
        lines += twin.plot(*zip(*lrs), color="tab:gray", linestyle="--", linewidth=1,
                           label="learning rate (train/lr, right axis)")
        twin.set_ylabel("learning rate", color="tab:gray")
        twin.tick_params(axis="y", colors="tab:gray")
        twin.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.legend(lines, [line.get_label() for line in lines], fontsize="small", loc="upper right")
    fig.tight_layout()
    return fig
