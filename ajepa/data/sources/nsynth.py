"""NSynth (Engel et al. 2017), instrument family: 4 s notes, 11 classes, official splits.

``root/nsynth-{train,valid,test}/examples.json`` + ``root/nsynth-<split>/audio/<note>.wav``,
as the ``*.jsonwav.tar.gz`` releases unpack. The label is ``instrument_family`` (an integer,
so class indices are the dataset's own; valid and test have no synth_lead notes). The
releases are the splits (valid = val); pretraining uses nsynth-train.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ajepa.config import DataConfig, NSynthTask
from ajepa.data.datasets import SPLIT_NAMES, ClipRecord, DatasetLayoutError
from ajepa.data.sources.base import DatasetSource, Source, TaskSpec, needs_root, register, require

NSYNTH_FAMILIES: tuple[str, ...] = (
    "bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "synth_lead", "vocal",
)
NSYNTH_RELEASES = {"train": "nsynth-train", "val": "nsynth-valid", "test": "nsynth-test"}


def nsynth_source(root: str | os.PathLike, splits: tuple[str, ...] = SPLIT_NAMES) -> Source:
    root = Path(root)
    records = []
    for split in splits:
        folder = root / NSYNTH_RELEASES[split]
        meta = require(folder / "examples.json", f"NSynth {split} metadata", f" ({folder.name}.jsonwav.tar.gz)")
        require(folder / "audio", f"NSynth {split} audio folder", "/<note>.wav")
        try:
            notes = json.loads(meta.read_text())
            labels = {note: int(fields["instrument_family"]) for note, fields in notes.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise DatasetLayoutError(f"{meta}: expected {{note: {{instrument_family: 0-10, ...}}}} ({err!r})") from None
        bad = sorted({f for f in labels.values() if not 0 <= f < len(NSYNTH_FAMILIES)})
        if bad:
            raise DatasetLayoutError(f"{meta}: instrument_family must be 0-10, found {bad}")
        records += [ClipRecord(str(folder / "audio" / f"{note}.wav"), (family,), split)
                    for note, family in sorted(labels.items())]
    return Source("nsynth", records, list(NSYNTH_FAMILIES), False, root)


@register(NSynthTask)
class NSynth(DatasetSource):
    spec = TaskSpec(clip_seconds=4.0, target_frames=400, metric="acc")

    def task_source(self, task: NSynthTask, data, sample_rate, clip_seconds, skip) -> Source:
        return nsynth_source(needs_root(task))

    def pretrain_source(self, data: DataConfig) -> Source:
        return nsynth_source(data.root, ("train",))  # type: ignore[arg-type]
