"""Datasets: the built-in synthetic set, generic folder/manifest clips, and the real
downstream tasks (ESC-50, Speech Commands V2, AudioSet) in their on-disk layouts.

Every dataset yields ``{"spec": FloatTensor[1, F, T], "label": ..., "index": int}``.
"""

from ajepa.data.datasets import ClipDataset, ClipRecord, DatasetLayoutError, validate_records
from ajepa.data.tasks import Fold, TaskData, build_pretrain_dataset, build_task

__all__ = [
    "ClipDataset",
    "ClipRecord",
    "DatasetLayoutError",
    "Fold",
    "TaskData",
    "build_pretrain_dataset",
    "build_task",
    "validate_records",
]
