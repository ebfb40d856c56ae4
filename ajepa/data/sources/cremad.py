"""CREMA-D (Cao et al. 2014), emotion: 7,442 sentences by 91 actors, 6 emotions, 2.5 s.

``root/AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` (e.g. ``1001_DFA_ANG_XX.wav``), as
the CheyneyComputerScience/CREMA-D repository ships it. There is no official split: this
one is speaker-disjoint, 70/10/20 % of the actors (63/9/19), by the rule of TensorFlow
Datasets' ``crema_d`` builder (sorted actor ids shuffled by ``RandomState(0)``, see
:func:`~ajepa.data.sources.base.group_splits`), the proportions of NOSS and EVAR. EVAR's
shipped ``cremad.csv`` assigns actors differently; its exact split is an ``evar`` task away.
Clip length 2.5 s is EVAR's. Pretraining uses the train actors.
"""

from __future__ import annotations

import os
from pathlib import Path

from ajepa.config import CremaDTask, DataConfig
from ajepa.data.datasets import SPLIT_NAMES, ClipRecord, DatasetLayoutError
from ajepa.data.sources.base import DatasetSource, Source, TaskSpec, group_splits, needs_root, register, require

CREMAD_EMOTIONS: tuple[str, ...] = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def cremad_source(root: str | os.PathLike, splits: tuple[str, ...] = SPLIT_NAMES) -> Source:
    root = Path(root)
    audio = require(root / "AudioWAV", "CREMA-D audio folder", "/<actor>_<sentence>_<emotion>_<level>.wav")
    files = sorted(audio.glob("*.wav"))
    if not files:
        raise DatasetLayoutError(f"no CREMA-D clips: expected {audio}/<actor>_<sentence>_<emotion>_<level>.wav")
    parsed = []
    for path in files:
        parts = path.stem.split("_")
        if len(parts) != 4 or parts[2] not in CREMAD_EMOTIONS:
            raise DatasetLayoutError(f"{path}: expected <actor>_<sentence>_<emotion>_<level>.wav with an emotion "
                                     f"in {', '.join(CREMAD_EMOTIONS)}")
        parsed.append((path, parts[0], CREMAD_EMOTIONS.index(parts[2])))
    split_of = group_splits([actor for _, actor, _ in parsed])
    records = [ClipRecord(str(path), (label,), split_of[actor], group=actor) for path, actor, label in parsed
               if split_of[actor] in splits]
    return Source("cremad", records, list(CREMAD_EMOTIONS), False, root)


@register(CremaDTask)
class CremaD(DatasetSource):
    spec = TaskSpec(clip_seconds=2.5, target_frames=256, metric="acc")

    def task_source(self, task: CremaDTask, data, sample_rate, clip_seconds, skip) -> Source:
        return cremad_source(needs_root(task))

    def pretrain_source(self, data: DataConfig) -> Source:
        return cremad_source(data.root, ("train",))  # type: ignore[arg-type]
