"""VoxCeleb1 speaker identification (Nagrani, Chung & Zisserman 2017): 1,251 speakers.

``root/wav/<speaker id>/<video>/<utt>.wav`` + ``root/iden_split.txt``, the official
identification split: lines ``<1|2|3> <id>/<video>/<utt>.wav`` (1 train, 2 val, 3 test; every
speaker is in all three, the videos differ). The label is the speaker id. Clip length 8.2 s
is EVAR's (utterances are longer or shorter; the frontend centre-crops or pads).
Pretraining uses the train lines.
"""

from __future__ import annotations

import os
from pathlib import Path

from ajepa.config import DataConfig, VoxCeleb1Task
from ajepa.data.datasets import SPLIT_NAMES, ClipRecord, DatasetLayoutError
from ajepa.data.sources.base import DatasetSource, Source, TaskSpec, needs_root, read_lines, register, require

IDEN_SPLITS = {"1": "train", "2": "val", "3": "test"}


def voxceleb1_source(root: str | os.PathLike, splits: tuple[str, ...] = SPLIT_NAMES) -> Source:
    root = Path(root)
    listing = require(root / "iden_split.txt", "VoxCeleb1 identification split", " (lines '<1|2|3> id/video/utt.wav')")
    audio = require(root / "wav", "VoxCeleb1 audio folder", "/<id>/<video>/<utt>.wav")
    entries = []
    for number, line in enumerate(read_lines(listing), start=1):
        parts = line.split()
        if len(parts) != 2 or parts[0] not in IDEN_SPLITS or parts[1].count("/") != 2:
            raise DatasetLayoutError(f"{listing}:{number}: expected '<1|2|3> <id>/<video>/<utt>.wav', got {line!r}")
        entries.append((parts[1], IDEN_SPLITS[parts[0]]))
    speakers = sorted({relative.split("/")[0] for relative, _ in entries})
    index = {speaker: i for i, speaker in enumerate(speakers)}
    records = [ClipRecord(str(audio / relative), (index[relative.split("/")[0]],), split)
               for relative, split in entries if split in splits]
    return Source("voxceleb1", records, speakers, False, root)


@register(VoxCeleb1Task)
class VoxCeleb1(DatasetSource):
    spec = TaskSpec(clip_seconds=8.2, target_frames=832, metric="acc")

    def task_source(self, task: VoxCeleb1Task, data, sample_rate, clip_seconds, skip) -> Source:
        return voxceleb1_source(needs_root(task))

    def pretrain_source(self, data: DataConfig) -> Source:
        return voxceleb1_source(data.root, ("train",))  # type: ignore[arg-type]
