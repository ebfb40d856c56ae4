"""UrbanSound8K (Salamon, Jacoby & Bello 2014) in its release layout: 8,732 clips of at most
4 s, 10 classes, 10 predefined folds.

``root/audio/fold<k>/<slice_file_name>`` + ``root/metadata/UrbanSound8K.csv``. Evaluation is
10-fold cross-validation on the predefined folds, as the dataset's authors require (random
splits put slices of one recording into train and test and inflate scores); clips keep
their recording (``fsID``) as group, so a validation split carved from train keeps a
recording's slices together. Pretraining uses all folds (see ESC-50).
"""

from __future__ import annotations

import os
from pathlib import Path

from ajepa.config import DataConfig, UrbanSound8KTask
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
    require,
)

US8K_COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
US8K_FOLDS = tuple(range(1, 11))


def urbansound8k_source(root: str | os.PathLike) -> Source:
    """Records of every row of the metadata CSV, with their fold (1-10) and recording."""
    root = Path(root)
    meta = require(root / "metadata" / "UrbanSound8K.csv", "UrbanSound8K metadata", " (the release layout)")
    require(root / "audio", "UrbanSound8K audio folder", "/fold<k>/<slice_file_name>")
    rows = read_csv_rows(meta, US8K_COLUMNS)
    try:
        names = {int(row["classID"]): row["class"] for row in rows}
        folds = [int(row["fold"]) for row in rows]
    except ValueError as err:
        raise DatasetLayoutError(f"{meta}: fold and classID must be integers ({err})") from None
    bad = sorted(set(folds) - set(US8K_FOLDS))
    if bad:
        raise DatasetLayoutError(f"{meta}: folds must be 1-10, found {bad}")
    ids = sorted(names)
    index = {class_id: i for i, class_id in enumerate(ids)}
    records = [ClipRecord(str(root / "audio" / f"fold{fold}" / row["slice_file_name"]), (index[int(row["classID"])],),
                          fold=fold, group=row["fsID"])
               for row, fold in zip(rows, folds)]
    return Source("urbansound8k", records, [names[i] for i in ids], False, root)


@register(UrbanSound8KTask)
class UrbanSound8K(DatasetSource):
    spec = TaskSpec(clip_seconds=4.0, target_frames=400, metric="acc", cross_validation=True)

    def task_source(self, task: UrbanSound8KTask, data, sample_rate, clip_seconds, skip) -> Source:
        return urbansound8k_source(needs_root(task))

    def task_folds(self, task: UrbanSound8KTask, source: Source) -> dict[str, dict[str, list[ClipRecord]]]:
        return cv_folds(source.records, chosen_folds(task.folds, US8K_FOLDS, "UrbanSound8K"))

    def pretrain_source(self, data: DataConfig) -> Source:
        return urbansound8k_source(data.root)  # type: ignore[arg-type]
