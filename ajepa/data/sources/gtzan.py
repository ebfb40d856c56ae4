"""GTZAN genres (Tzanetakis & Cook 2002): 1,000 30-s excerpts, 10 genres, fault-filtered split.

``root/genres/<genre>/<genre>.000NN.wav`` (the ``genres.tar.gz`` layout; ``.au`` as released
or converted to ``.wav``). The split is the "fault-filtered" one of Kereliuk, Sturm & Larsen
(2015), which drops GTZAN's repeated, mislabelled and distorted excerpts and keeps each
artist in one split (443 train / 197 valid / 290 test): the lists EVAR and jukemir use, from
github.com/jongpillee/music_dataset_split (``GTZAN_split/``). Nothing is downloaded: put
``train_filtered.txt``, ``valid_filtered.txt`` and ``test_filtered.txt`` (lines
``<genre>/<genre>.000NN.wav``, relative to ``genres/``) in ``root``. Clips in none of the
lists are the filtered-out ones and are left out.

Without the lists, a seeded class-stratified 70/15/15 split of all 1,000 clips is used, with
a warning: its numbers are not comparable with published ones (it mixes artists and faulty
excerpts across splits). Pretraining uses the train split.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath

from ajepa.audio.io import AUDIO_EXTENSIONS
from ajepa.config import DataConfig, GTZANTask
from ajepa.data.datasets import ClipRecord, DatasetLayoutError
from ajepa.data.sources.base import DatasetSource, Source, TaskSpec, ensure_splits, needs_root, read_lines, register

log = logging.getLogger("ajepa.data")

GTZAN_GENRES: tuple[str, ...] = (
    "blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock",
)
#: split -> the file of the fault-filtered list, in the dataset root
GTZAN_SPLIT_LISTS = {"train": "train_filtered.txt", "val": "valid_filtered.txt", "test": "test_filtered.txt"}
GTZAN_EXTENSIONS = (".au", *AUDIO_EXTENSIONS)


def _clip_key(relative: str) -> str:
    """``blues/blues.00029.wav`` (or ``genres/blues/blues.00029.au``) -> ``blues/blues.00029``."""
    path = PurePosixPath(relative.strip().replace("\\", "/"))
    if path.parts and path.parts[0] == "genres":
        path = PurePosixPath(*path.parts[1:])
    return str(path.with_suffix("")) if path.suffix.lower() in GTZAN_EXTENSIONS else str(path)


def gtzan_source(root: str | os.PathLike) -> Source:
    root = Path(root)
    genres = root / "genres"
    missing = [genres / g for g in GTZAN_GENRES if not (genres / g).is_dir()]
    if missing:
        raise DatasetLayoutError(f"GTZAN genre folder(s) not found: expected {missing[0]}/<genre>.000NN.wav "
                                 f"({len(missing)} of 10 missing; genres: {', '.join(GTZAN_GENRES)})")
    clips = {}  # key -> (path, label)
    for label, genre in enumerate(GTZAN_GENRES):
        for path in sorted((genres / genre).iterdir()):
            if path.suffix.lower() in GTZAN_EXTENSIONS and not path.name.startswith("."):
                clips[f"{genre}/{path.stem}"] = (path, label)
    lists = {split: root / name for split, name in GTZAN_SPLIT_LISTS.items()}
    present = [split for split, path in lists.items() if path.is_file()]
    if not present:
        log.warning("%s: no fault-filtered split lists (%s): using a seeded stratified 70/15/15 split of all "
                    "clips, NOT comparable with published GTZAN numbers (see docs/DATASETS.md)",
                    root, ", ".join(GTZAN_SPLIT_LISTS.values()))
        records = [ClipRecord(str(path), (label,)) for path, label in clips.values()]
        return Source("gtzan", ensure_splits(records), list(GTZAN_GENRES), False, root)
    if len(present) < len(lists):
        absent = next(path for split, path in lists.items() if split not in present)
        raise DatasetLayoutError(f"GTZAN split list not found: expected {absent} (the three fault-filtered "
                                 f"lists {', '.join(GTZAN_SPLIT_LISTS.values())} go together)")
    records = []
    for split, path in lists.items():
        for line in read_lines(path):
            key = _clip_key(line)
            if key not in clips:
                raise DatasetLayoutError(f"{path}: {line!r} is not on disk: expected {genres / line}")
            clip, label = clips[key]
            records.append(ClipRecord(str(clip), (label,), split))
    return Source("gtzan", records, list(GTZAN_GENRES), False, root)


@register(GTZANTask)
class GTZAN(DatasetSource):
    spec = TaskSpec(clip_seconds=30.0, target_frames=3008, metric="acc")

    def task_source(self, task: GTZANTask, data, sample_rate, clip_seconds, skip) -> Source:
        return gtzan_source(needs_root(task))

    def pretrain_source(self, data: DataConfig) -> Source:
        return gtzan_source(data.root).train_only()  # type: ignore[arg-type]
