"""ESC-50 (Piczak 2015) in its release layout: 2000 five-second clips, 50 classes, 5 CV folds.

Evaluation is 5-fold cross-validation (train on four folds, test on the fifth; no val split:
the probe carves one from train, keeping the clips of one source recording together).
Pretraining on ESC-50 uses all folds: any held-out fold would still leak into four of the
five CV test folds.
"""

from __future__ import annotations

import os
from pathlib import Path

from ajepa.config import DataConfig, ESC50Task
from ajepa.data.datasets import ClipRecord, DatasetLayoutError
from ajepa.data.sources.base import (
    DatasetSource,
    Source,
    TaskSpec,
    chosen_folds,
    cv_folds,
    needs_root,
    read_csv_rows,
    register,
)

ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
ESC50_FOLDS = (1, 2, 3, 4, 5)


def esc50_source(root: str | os.PathLike, esc10: bool = False) -> Source:
    """``root/audio/*.wav`` + ``root/meta/esc50.csv``; records carry their fold (1-5)."""
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    audio = root / "audio"
    if not meta.is_file():
        raise DatasetLayoutError(f"ESC-50 metadata not found: expected {meta} (the ESC-50 release layout)")
    if not audio.is_dir():
        raise DatasetLayoutError(f"ESC-50 audio folder not found: expected {audio}/<filename>.wav")
    rows = read_csv_rows(meta, ESC50_COLUMNS)
    if esc10:
        rows = [row for row in rows if row["esc10"].strip().lower() == "true"]
        if not rows:
            raise DatasetLayoutError(f"{meta}: no row has esc10=True, so the ESC-10 subset is empty")
    try:
        targets = sorted({int(row["target"]) for row in rows})
        names = {int(row["target"]): row["category"] for row in rows}
        index = {target: i for i, target in enumerate(targets)}  # ESC-10 targets become 0..9
        records = [
            ClipRecord(str(audio / row["filename"]), (index[int(row["target"])],), fold=int(row["fold"]),
                       group=row["src_file"])
            for row in rows
        ]
    except ValueError as err:
        raise DatasetLayoutError(f"{meta}: fold and target must be integers ({err})") from None
    bad_folds = sorted({r.fold for r in records} - set(ESC50_FOLDS))
    if bad_folds:
        raise DatasetLayoutError(f"{meta}: folds must be 1-5, found {bad_folds}")
    return Source("esc10" if esc10 else "esc50", records, [names[t] for t in targets], False, root)


def esc50_folds(task: ESC50Task) -> list[int]:
    return chosen_folds(task.folds, ESC50_FOLDS, "ESC-50")


@register(ESC50Task)
class ESC50(DatasetSource):
    spec = TaskSpec(clip_seconds=5.0, target_frames=512, metric="acc", cross_validation=True)

    def task_source(self, task: ESC50Task, data, sample_rate, clip_seconds, skip) -> Source:
        return esc50_source(needs_root(task), task.esc10)

    def task_folds(self, task: ESC50Task, source: Source) -> dict[str, dict[str, list[ClipRecord]]]:
        return cv_folds(source.records, esc50_folds(task))

    def pretrain_source(self, data: DataConfig) -> Source:
        return esc50_source(data.root)  # type: ignore[arg-type]
