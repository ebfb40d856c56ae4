"""A folder of class folders (``root/<class>/*.wav``, or ``root/{train,val,test}/<class>/``).

Without split folders, evaluation gets a seeded, class-stratified 70/15/15 split and
pretraining uses every clip; with them, pretraining uses ``train/``.
"""

from __future__ import annotations

from pathlib import Path

from ajepa.config import DataConfig, FolderTask
from ajepa.data.datasets import folder_records
from ajepa.data.sources.base import DatasetSource, Source, TaskSpec, ensure_splits, needs_root, register


@register(FolderTask)
class Folder(DatasetSource):
    spec = TaskSpec(clip_seconds=None, target_frames=None, metric="acc", frames_from_clip=True)

    def task_source(self, task: FolderTask, data, sample_rate, clip_seconds, skip) -> Source:
        root = needs_root(task)
        records, class_names = folder_records(root)
        return Source("folder", ensure_splits(records), class_names, False, root)

    def pretrain_source(self, data: DataConfig) -> Source:
        records, class_names = folder_records(data.root)  # type: ignore[arg-type]
        return Source("folder", records, class_names, False, Path(data.root)).train_only()  # type: ignore[arg-type]
