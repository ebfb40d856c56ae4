"""A task from EVAR's prepared metadata (nttcslab/eval-audio-repr), read as EVAR reads it.

``manifest`` is an ``evar/metadata/<task>.csv`` with columns ``file_name,label`` and either
``split`` (train/valid/test) or ``fold`` (1..K: leave-one-fold-out cross-validation, as
EVAR's us8k.csv and esc50.csv); ``file_name`` is relative to ``root``, the audio folder
(EVAR's ``work/16k/<task>``). Extra columns (an index, speaker_id, ...) are ignored. Users
with EVAR-prepared data (CREMA-D with EVAR's own split, VoxForge, Surge, ...) need no
conversion. Labels are single (one class per row). Clip length: set ``clip_seconds`` to
EVAR's ``unit_sec`` for the task (docs/DATASETS.md lists them); it sets the frames too.
"""

from __future__ import annotations

from pathlib import Path

from ajepa.config import DataConfig, EvarTask
from ajepa.data.datasets import ClipRecord, DatasetLayoutError, canonical_split, sorted_class_names
from ajepa.data.sources.base import (
    DatasetSource,
    Source,
    TaskSpec,
    chosen_folds,
    cv_folds,
    read_csv_rows,
    register,
    require,
)


def evar_source(manifest: Path | None, root: Path | None, splits: tuple[str, ...] | None = None) -> Source:
    if manifest is None:
        raise DatasetLayoutError("task 'evar' needs manifest: an EVAR metadata CSV (evar/metadata/<task>.csv)")
    manifest = require(Path(manifest), "EVAR metadata", " (columns file_name,label,split or fold)")
    if root is None:
        raise DatasetLayoutError(f"task 'evar' needs root: the audio folder the file_name values of {manifest} "
                                 f"are relative to (EVAR's work/16k/<task>)")
    root = Path(root)
    rows = read_csv_rows(manifest, ("file_name", "label"))
    if not rows:
        raise DatasetLayoutError(f"{manifest}: no rows below the header")
    by_split = "split" in rows[0]
    if not by_split and "fold" not in rows[0]:
        raise DatasetLayoutError(f"{manifest}: needs a split column (train/valid/test) or a fold column (1..K)")
    names = sorted_class_names(row["label"] for row in rows)
    index = {name: i for i, name in enumerate(names)}
    records = []
    for line, row in enumerate(rows, start=2):
        if by_split:
            split, fold = canonical_split(row["split"], f"{manifest}:{line}"), None
        else:
            try:
                split, fold = None, int(row["fold"])
            except ValueError:
                raise DatasetLayoutError(f"{manifest}:{line}: fold must be an integer, got {row['fold']!r}") from None
        records.append(ClipRecord(str(root / row["file_name"]), (index[row["label"]],), split, fold))
    if splits is not None and by_split:
        records = [r for r in records if r.split in splits]
    return Source(f"evar:{manifest.stem}", records, names, False, root)


@register(EvarTask)
class Evar(DatasetSource):
    spec = TaskSpec(clip_seconds=None, target_frames=None, metric="acc", frames_from_clip=True)

    def task_source(self, task: EvarTask, data, sample_rate, clip_seconds, skip) -> Source:
        return evar_source(task.manifest, task.root)

    def task_folds(self, task: EvarTask, source: Source) -> dict[str, dict[str, list[ClipRecord]]]:
        if source.records and source.records[0].split is None:
            available = sorted({r.fold for r in source.records})
            return cv_folds(source.records, chosen_folds(task.folds, available, f"{source.name}"))
        if task.folds is not None:
            raise ValueError(f"{source.name} has train/valid/test splits, not folds: drop the task's folds")
        return super().task_folds(task, source)

    def pretrain_source(self, data: DataConfig) -> Source:
        return evar_source(data.manifest, data.root, ("train",))
