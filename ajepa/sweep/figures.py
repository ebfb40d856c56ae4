"""Pictures a trial attaches to its MLflow run: its loss curves and a few of its masks.

Kept out of the MLflow plumbing so that drawing (matplotlib, the masks package) is one
job in one place: both functions write or return a figure and log nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ajepa.contracts import METRIC_TRAIN_LOSS

if TYPE_CHECKING:
    from ajepa.sweep.trials import Trial


def draw_trial_masks(trial: "Trial", path: Path) -> Path:
    """A few sampled masks of the trial's strategy over a drawn spectrogram, as ``path`` (PNG)."""
    from ajepa.masks.figures import draw_mask_examples

    cfg = trial.config()
    label = " | ".join(trial.labels.values()) or cfg.masking.strategy
    return draw_mask_examples(None, cfg.grid, cfg.model.patch_size, {label: cfg.masking}, path, seed=trial.seed)


def plot_loss_curves(metrics_file: Path, title: str):
    """train/loss (and lr) against step from the trainer's metrics.jsonl, or None if empty."""
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    points = [(r["step"], r[METRIC_TRAIN_LOSS]) for r in records if METRIC_TRAIN_LOSS in r]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps, losses = zip(*points)
    ax.plot(steps, losses, label=METRIC_TRAIN_LOSS)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    lrs = [(r["step"], r["train/lr"]) for r in records if "train/lr" in r]
    if lrs:
        twin = ax.twinx()
        twin.plot(*zip(*lrs), color="tab:gray", alpha=0.5, linewidth=1)
        twin.set_ylabel("lr", color="tab:gray")
    fig.tight_layout()
    return fig
