"""Pictures of masks (like A-JEPA Fig. 2) and of curriculum functions (like Fig. 3).

The drawing only: masks over any ``[F, T]`` picture and a patch grid. Which spectrogram
to draw them on (a rendered synthetic clip needs audio and data, two floors up) is for the
command, ``ajepa-masks`` (:mod:`ajepa.cli.masks`), so this package knows grids, not audio.
Colours (and the legend under every mask figure): context green, removed (neither context
nor target) grey, each target block its own colour. Where blocks overlap, the later block's
colour fills the patch (colours never blend into a new one) and every block is outlined
in its colour, so each block's full extent stays visible. Figures use matplotlib's Agg
canvas directly, so importing this module changes no global backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ajepa.config import (
    BlockMask,
    CurriculumMask,
    CurriculumSchedule,
    FreqMask,
    MultiBlockMask,
    RandomMask,
    TFMask,
    TimeMask,
)
from ajepa.masks.collator import step_seed
from ajepa.masks.curriculum import curriculum_probability
from ajepa.masks.strategies import build_mask_sampler

CONTEXT_RGBA = to_rgba("limegreen", 0.3)  # light: the context is what the encoder sees
REMOVED_RGBA = to_rgba("0.6", 0.92)  # nearly opaque: seen by no one
TARGET_ALPHA = 0.75
# distinct from the context's green and the removed grey, and from each other
BLOCK_COLOURS = ["tab:red", "tab:blue", "tab:orange", "tab:purple", "gold", "tab:cyan", "tab:pink",
                 "tab:brown", "navy", "magenta"]
#: A mask of more blocks than this (strips) is drawn in one target colour: 20 cycling colours say nothing.
MAX_COLOURED_BLOCKS = 8
MANY_BLOCKS_COLOUR = "tab:red"

#: The strategies of A-JEPA and the audio-JEPA design study at their paper defaults.
PAPER_MASKS: dict[str, Any] = {
    "random 75%": RandomMask(),
    "time strips 75%": TimeMask(),
    "freq strips 75%": FreqMask(),
    "single block 75%": BlockMask(),
    "multi-block (I-JEPA)": MultiBlockMask(),
    "time-frequency (A-JEPA)": TFMask(),
    "curriculum multi-block -> tf": CurriculumMask(),
}

#: Curriculum functions drawn by default (A-JEPA Fig. 3 compares shapes like these).
PAPER_SCHEDULES: dict[str, CurriculumSchedule] = {
    "linear": CurriculumSchedule(kind="linear"),
    "root (k=2)": CurriculumSchedule(kind="root"),
    "power k=3": CurriculumSchedule(kind="power", power=3.0),
    "power k=5": CurriculumSchedule(kind="power", power=5.0),
    "power k=0.5": CurriculumSchedule(kind="power", power=0.5),
    "exponential": CurriculumSchedule(kind="exponential"),
    "cosine": CurriculumSchedule(kind="cosine"),
    "step 1/4, 1/2, 3/4": CurriculumSchedule(kind="step", steps=[0.25, 0.5, 0.75]),
    "constant 0.5": CurriculumSchedule(kind="constant"),
}


def synthetic_spectrogram(num_mel_bins: int = 128, frames: int = 1024, seed: int = 0) -> np.ndarray:
    """A spectrogram-like ``[F, T]`` picture: a rising chirp with harmonics, a tone, clicks, noise.

    Used when no real clip is at hand; only the masks matter in these figures.
    """
    rng = np.random.default_rng(seed)
    bins = np.arange(num_mel_bins)[:, None]
    t = np.linspace(0.0, 1.0, frames)[None, :]
    spec = -4.0 + 0.3 * rng.standard_normal((num_mel_bins, frames)) - 2.0 * bins / num_mel_bins
    fundamental = num_mel_bins * (0.08 + 0.25 * t)  # chirp
    for harmonic in range(1, 5):
        spec += (3.0 / harmonic) * np.exp(-0.5 * ((bins - harmonic * fundamental) / 1.5) ** 2) * (t < 0.7)
    spec += 2.5 * np.exp(-0.5 * ((bins - 0.6 * num_mel_bins) / 2.0) ** 2) * (t > 0.55)  # steady tone
    for onset in (0.15, 0.4, 0.85):  # broadband clicks
        spec += 2.0 * np.exp(-0.5 * ((t - onset) / 0.004) ** 2)
    return spec.astype(np.float32)


def mask_overlay(context: np.ndarray, targets: Sequence[np.ndarray], grid: tuple[int, int]) -> np.ndarray:
    """RGBA ``[H, W, 4]`` for one sample: context green, removed grey, targets coloured by block
    (a patch in several blocks takes the last one's colour: no blended, muddy colours)."""
    height, width = grid
    image = np.tile(np.array(REMOVED_RGBA), (height * width, 1))
    image[context] = CONTEXT_RGBA
    for m, block in enumerate(targets):
        image[block] = to_rgba(block_colour(m, len(targets)), TARGET_ALPHA)
    return image.reshape(height, width, 4)


def block_colour(m: int, num_blocks: int = 1) -> str:
    """Block ``m``'s colour in a mask of ``num_blocks`` blocks (one colour past MAX_COLOURED_BLOCKS)."""
    return BLOCK_COLOURS[m % len(BLOCK_COLOURS)] if num_blocks <= MAX_COLOURED_BLOCKS else MANY_BLOCKS_COLOUR


def outline_blocks(ax, targets: Sequence[np.ndarray], grid: tuple[int, int]) -> None:
    """Each block's outline in its colour: the edges between its patches and the rest."""
    height, width = grid
    for m, block in enumerate(targets):
        inside = np.zeros((height, width), dtype=bool)
        inside.flat[np.asarray(block)] = True
        padded = np.pad(inside, 1)
        segments = []
        rows, cols = np.nonzero(inside)
        for r, c in zip(rows, cols):
            pr, pc = r + 1, c + 1
            if not padded[pr - 1, pc]:
                segments.append(((c, r), (c + 1, r)))
            if not padded[pr + 1, pc]:
                segments.append(((c, r + 1), (c + 1, r + 1)))
            if not padded[pr, pc - 1]:
                segments.append(((c, r), (c, r + 1)))
            if not padded[pr, pc + 1]:
                segments.append(((c + 1, r), (c + 1, r + 1)))
        if segments:
            from matplotlib.collections import LineCollection

            ax.add_collection(LineCollection(segments, colors=block_colour(m, len(targets)), linewidths=1.3))


def mask_legend_handles(max_blocks: int, many: bool = False) -> list[Patch]:
    """Legend entries: context, removed, then one per target block (up to ``max_blocks``) and,
    with ``many``, the one colour of masks with more than MAX_COLOURED_BLOCKS blocks."""
    handles = [Patch(facecolor=CONTEXT_RGBA, edgecolor="0.3", label="context (encoder input)"),
               Patch(facecolor=REMOVED_RGBA, edgecolor="0.3", label="removed (neither context nor target)")]
    for m in range(max_blocks):
        handles.append(Patch(facecolor=to_rgba(block_colour(m), TARGET_ALPHA), edgecolor=block_colour(m),
                             label=f"target block {m + 1}" if max_blocks > 1 else "target"))
    if many:
        handles.append(Patch(facecolor=to_rgba(MANY_BLOCKS_COLOUR, TARGET_ALPHA), edgecolor=MANY_BLOCKS_COLOUR,
                             label=f"target, masks of > {MAX_COLOURED_BLOCKS} blocks (strips)"))
    return handles


def draw_mask_examples(spec: np.ndarray | None, grid: tuple[int, int], patch_size: tuple[int, int],
                       configs: Mapping[str, Any], path: str | Path, examples: int = 3, seed: int = 0) -> Path:
    """One row per masking config, ``examples`` masks per row, over the spectrogram ``spec [F, T]``.

    A curriculum config is shown at progress 0, 0.5, 1 (left to right), so both of its
    strategies appear. ``spec=None`` uses :func:`synthetic_spectrogram`.
    """
    height, width = grid
    if spec is None:
        spec = synthetic_spectrogram(height * patch_size[0], width * patch_size[1], seed)
    spec = np.asarray(spec)[: height * patch_size[0], : width * patch_size[1]]
    panel_width = 4.8 if width >= 2 * height else 2.6
    panel_height = max(0.9, panel_width * height / width * 1.2)
    fig = Figure(figsize=(panel_width * examples, (panel_height + 0.45) * len(configs)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(configs), examples, squeeze=False)
    extent = (0, width, 0, height)
    most_blocks, many = 1, False
    for row, (label, cfg) in enumerate(configs.items()):
        sampler = build_mask_sampler(cfg, grid)
        for col in range(examples):
            progress = col / max(1, examples - 1) if cfg.strategy == "curriculum" else 0.0
            generator = torch.Generator().manual_seed(step_seed(seed, row * 1000 + col))
            mask = sampler.sample(generator, progress)
            targets = [t.numpy() for t in mask.targets]
            if len(targets) > MAX_COLOURED_BLOCKS:
                many = True
            else:
                most_blocks = max(most_blocks, len(targets))
            ax = axes[row, col]
            ax.imshow(spec, origin="lower", aspect="auto", cmap="gray", extent=extent, interpolation="nearest")
            ax.imshow(mask_overlay(mask.context.numpy(), targets, grid), origin="lower", aspect="auto",
                      extent=extent, interpolation="nearest")
            if 1 < len(targets) <= MAX_COLOURED_BLOCKS:
                outline_blocks(ax, targets, grid)
            ax.set_xlim(0, width)
            ax.set_ylim(0, height)
            share = np.unique(np.concatenate(targets)).size / (height * width)
            title = f"{label}" if col == 0 else ""
            detail = f"target {share:.0%}, context {mask.context.numel() / (height * width):.0%}"
            if cfg.strategy == "curriculum":
                detail += f", t={progress:.1f} ({'hard' if mask.hard else 'easy'})"
            ax.set_title(f"{title}\n{detail}" if title else detail, fontsize=8, loc="left")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[-1, 0].set_xlabel("time patches →", fontsize=8)
    axes[-1, 0].set_ylabel("freq patches →", fontsize=8)
    handles = mask_legend_handles(most_blocks, many)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False,
               title="overlapping blocks: the later block's colour, every block outlined" if most_blocks > 1 else None,
               title_fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def draw_curriculum(path: str | Path,
                    schedules: Mapping[str, CurriculumSchedule] | Sequence[CurriculumSchedule] | None = None) -> Path:
    """p(t) of curriculum schedules over training progress (default: :data:`PAPER_SCHEDULES`)."""
    if schedules is None:
        schedules = PAPER_SCHEDULES
    if not isinstance(schedules, Mapping):
        schedules = {schedule_label(s): s for s in schedules}
    t = np.linspace(0.0, 1.0, 401)
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, schedule in schedules.items():
        ax.plot(t, curriculum_probability(schedule, t), label=label, lw=1.6)
    ax.set_xlabel("training progress t = step / total steps")
    ax.set_ylabel("p(t): probability of the hard mask")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def schedule_label(schedule: CurriculumSchedule) -> str:
    extra = {"power": f" k={schedule.power:g}", "constant": f" {schedule.value:g}", "step": f" {schedule.steps}"}
    end = f", end={schedule.end:g}" if schedule.end < 1 else ""
    return f"{schedule.kind}{extra.get(schedule.kind, '')}{end}"
