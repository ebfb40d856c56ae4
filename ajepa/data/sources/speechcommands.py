"""Speech Commands (Warden 2018): one-second keyword clips with official val/test lists.

V2 (speech_commands_v0.02) has 35 words, V1 (v0.01) 30 (V2 added backward, follow,
forward, learn, visual); both share the layout. All-words task: the version's words are the
classes, or the subset ``words`` (then only those folders need to exist). 12 classes: ten
words, ``_unknown_`` (a seeded sample of the other words, 10 % of the split's word clips)
and ``_silence_`` (1 s slices of ``_background_noise_/*.wav`` at random gain, 10 %; each
noise file's first 80 % feeds train, the next 10 % val, the last 10 % test, so no slice is
shared between splits), the recipe of the dataset's own TensorFlow example. Pretraining uses the 35-word train split.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from ajepa.config import DataConfig, SpeechCommandsTask
from ajepa.data.datasets import ClipRecord, DatasetLayoutError
from ajepa.data.sources.base import DatasetSource, Source, TaskSpec, needs_root, read_lines, register, require

log = logging.getLogger("ajepa.data")

# The 35 words (sorted: label index = position) and the 12-class subset.
SPEECH_COMMANDS_WORDS: tuple[str, ...] = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
    "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)
SPEECH_COMMANDS_V1_WORDS: tuple[str, ...] = tuple(
    w for w in SPEECH_COMMANDS_WORDS if w not in ("backward", "follow", "forward", "learn", "visual")
)
VERSION_WORDS = {2: SPEECH_COMMANDS_WORDS, 1: SPEECH_COMMANDS_V1_WORDS}
SPEECH_COMMANDS_10: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
BACKGROUND_NOISE = "_background_noise_"
# silence and unknown each add 10 % of the split's known-word clip count
SILENCE_PERCENT = UNKNOWN_PERCENT = 10.0
SILENCE_HOP_SECONDS = 0.5


def speechcommands_source(root: str | os.PathLike, classes: int = 35, clip_seconds: float = 1.0,
                          seed: int = 0, version: int = 2, words: Sequence[str] | None = None) -> Source:
    """``root/<word>/<speaker>_nohash_<n>.wav`` + ``validation_list.txt`` + ``testing_list.txt``.

    `classes`: 35 (V2) or 30 (V1) for every word of the version (or of `words`), or 12."""
    root = Path(root)
    every = VERSION_WORDS[version]
    if words is not None:
        unknown = sorted(set(words) - set(every))
        if unknown or not words:
            raise ValueError(f"words {unknown or '[]'} are not Speech Commands V{version} words; "
                             f"V{version} has {', '.join(every)}")
    needed = every if words is None else tuple(w for w in every if w in set(words))
    lists = {}
    for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        path = require(root / name, "Speech Commands split list")
        lists[split] = {line for line in read_lines(path) if line.split("/")[0] in needed}
    missing = [root / word for word in needed if not (root / word).is_dir()]
    if missing:
        raise DatasetLayoutError(
            f"Speech Commands V{version} word folder(s) not found: expected {missing[0]}/ "
            f"({len(missing)} of {len(needed)} missing; V{version} has {', '.join(every)})"
        )
    extra = [d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
             and d.name not in every and d.name != BACKGROUND_NOISE]
    if extra:
        log.warning("%s: ignoring folders that are not Speech Commands V%d words: %s", root, version, sorted(extra))

    word_clips: list[tuple[str, str, str]] = []  # (path, word, split)
    for word in needed:
        for path in sorted((root / word).glob("*.wav")):
            relative = f"{word}/{path.name}"
            split = "val" if relative in lists["val"] else "test" if relative in lists["test"] else "train"
            word_clips.append((str(path), word, split))
    on_disk = {f"{word}/{Path(p).name}" for p, word, _ in word_clips}
    for split, listed in lists.items():
        absent = sorted(listed - on_disk)
        if absent:
            raise DatasetLayoutError(f"{root}: {len(absent)} clips in the {split} list are not on disk, "
                                     f"e.g. expected {root / absent[0]}")
    if classes == len(every):
        index = {word: i for i, word in enumerate(needed)}
        records = [ClipRecord(p, (index[w],), split) for p, w, split in word_clips]
        name = "speechcommands" if version == 2 else "speechcommands_v1"
        return Source(name, records, list(needed), False, root)
    if classes != 12 or words is not None:
        raise ValueError(f"Speech Commands V{version} has a {len(every)}-word task (optionally a subset of "
                         f"words) and a 12-class one, not {classes} classes")
    return _speechcommands_12(root, word_clips, clip_seconds, seed)


def _speechcommands_12(root: Path, word_clips: list[tuple[str, str, str]], clip_seconds: float, seed: int) -> Source:
    class_names = [*SPEECH_COMMANDS_10, UNKNOWN, SILENCE]
    index = {name: i for i, name in enumerate(class_names)}
    slices = _silence_slices(root / BACKGROUND_NOISE, clip_seconds)
    rng = np.random.default_rng([seed, 12])
    records: list[ClipRecord] = []
    for split in ("train", "val", "test"):
        known = [ClipRecord(p, (index[w],), split) for p, w, s in word_clips if s == split and w in index]
        unknown_pool = [p for p, w, s in word_clips if s == split and w not in index]
        num_extra = int(math.ceil(len(known) * UNKNOWN_PERCENT / 100))
        chosen = rng.permutation(len(unknown_pool))[:num_extra]
        unknown = [ClipRecord(unknown_pool[i], (index[UNKNOWN],), split) for i in sorted(chosen)]
        pool = slices[split]
        if not pool:
            raise DatasetLayoutError(f"{root / BACKGROUND_NOISE}: background noise too short to cut "
                                     f"{clip_seconds:g} s {split} silence slices")
        silence = [
            ClipRecord(pool[i % len(pool)][0], (index[SILENCE],), split, start=pool[i % len(pool)][1],
                       duration=clip_seconds, gain=float(rng.uniform(0.0, 1.0)))
            for i in range(int(math.ceil(len(known) * SILENCE_PERCENT / 100)))
        ]
        records += known + unknown + silence
    return Source("speechcommands12", records, class_names, False, root)


def _silence_slices(noise_dir: Path, clip_seconds: float) -> dict[str, list[tuple[str, float]]]:
    """(file, start seconds) of every slice, grouped by the split its position belongs to."""
    files = sorted(p for p in noise_dir.glob("*.wav")) if noise_dir.is_dir() else []
    if not files:
        raise DatasetLayoutError(
            f"the 12-class Speech Commands task needs background noise: expected {noise_dir}/*.wav"
        )
    slices: dict[str, list[tuple[str, float]]] = {"train": [], "val": [], "test": []}
    for path in files:
        try:
            duration = soundfile.info(str(path)).duration
        except (RuntimeError, OSError) as err:
            raise DatasetLayoutError(f"{path}: unreadable background noise ({err})") from None
        bounds = {"train": (0.0, 0.8 * duration), "val": (0.8 * duration, 0.9 * duration),
                  "test": (0.9 * duration, duration)}
        for split, (low, high) in bounds.items():
            start = low
            while start + clip_seconds <= high + 1e-9:
                slices[split].append((str(path), round(start, 6)))
                start += SILENCE_HOP_SECONDS
    return slices


@register(SpeechCommandsTask)
class SpeechCommands(DatasetSource):
    spec = TaskSpec(clip_seconds=1.0, target_frames=128, metric="acc")

    def task_source(self, task: SpeechCommandsTask, data, sample_rate, clip_seconds, skip) -> Source:
        return speechcommands_source(needs_root(task), task.classes, clip_seconds or 1.0, version=task.version,
                                     words=task.words)

    def pretrain_source(self, data: DataConfig) -> Source:
        return speechcommands_source(data.root, 35).train_only()  # type: ignore[arg-type]
