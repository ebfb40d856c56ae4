"""A CSV manifest of clips (``path,label[,split]``; ``;``-joined labels make it multi-label).

Paths are relative to the CSV's folder, where its stats.json lives too. Rows without a
split get a seeded, class-stratified 70/15/15 split for evaluation; pretraining uses the
train rows (every row when there are no splits).
"""

from __future__ import annotations

from pathlib import Path

from ajepa.config import DataConfig, ManifestTask
from ajepa.data.datasets import DatasetLayoutError, manifest_records
from ajepa.data.sources.base import DatasetSource, Source, TaskSpec, ensure_splits, register


def manifest_path(manifest: Path | None, root: Path | None, who: str, section: str = "") -> Path:
    """The manifest, or `root` when that is the CSV itself; `section` prefixes the keys named."""
    if manifest is not None:
        return Path(manifest)
    if root is not None and Path(root).is_file():
        return Path(root)
    raise DatasetLayoutError(f"{who} needs {section}manifest: a CSV with header path,label[,split] "
                             f"({section}root={root} is not a file)")


@register(ManifestTask)
class Manifest(DatasetSource):
    spec = TaskSpec(clip_seconds=None, target_frames=None, metric="acc", frames_from_clip=True)

    def task_source(self, task: ManifestTask, data, sample_rate, clip_seconds, skip) -> Source:
        path = manifest_path(task.manifest, task.root, "task 'manifest'")
        records, class_names, multilabel = manifest_records(path)
        return Source("manifest", ensure_splits(records), class_names, multilabel, path.parent)

    def pretrain_source(self, data: DataConfig) -> Source:
        records, class_names, multilabel = manifest_records(self._data_manifest(data))
        return Source("manifest", records, class_names, multilabel, self.stats_location(data)).train_only()

    def stats_location(self, data: DataConfig) -> Path:
        return self._data_manifest(data).parent

    @staticmethod
    def _data_manifest(data: DataConfig) -> Path:
        return manifest_path(data.manifest, data.root, "data.kind=manifest", "data.")
