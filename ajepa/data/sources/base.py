"""What every dataset module under ajepa/data/sources/ implements, and the registry of them.

A dataset is two things: its config type in ajepa.config (a member of the ``EvalTask``
union, whose ``task`` literal is also a ``data.kind``), and one :class:`DatasetSource`
subclass registered for that type with :func:`register`. ``ajepa.data.tasks`` looks the
implementation up by name (:func:`source_for`) and does everything generic (validation,
caps, feature cache, normalisation, datasets), so adding a dataset touches its module and
its declaration only.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ajepa.config import DataConfig, TaskCommon
from ajepa.data.datasets import SPLIT_NAMES, ClipRecord, DatasetLayoutError, WaveArray, stratified_split_codes

#: task name (= ``data.kind``) -> its implementation; filled by :func:`register`
SOURCES: dict[str, "DatasetSource"] = {}


@dataclass(frozen=True)
class TaskSpec:
    """What a dataset declares about its evaluation (the AST / Audio-MAE conventions)."""

    clip_seconds: float | None  # None: the data's own
    target_frames: int | None  # None: the pretraining frontend's
    metric: str  # "acc" or "map"
    frames_from_clip: bool = False  # a task's clip_seconds sets its frames (rounded up to 16)
    cross_validation: bool = False  # folds are CV folds, named in their datasets' names (esc50/fold2/test)


@dataclass
class Source:
    """One dataset's records before a frontend is attached."""

    name: str
    records: list[ClipRecord]
    class_names: list[str]
    multilabel: bool
    stats_location: Path
    waves: WaveArray | None = None
    skipped: int = 0
    clip_seconds: float | None = None  # length of generated clips (synthetic), else None
    stats_on_first_use: bool = False  # stats.json is computed when missing (generated data)

    def split(self, split: str) -> list[ClipRecord]:
        return [r for r in self.records if r.split == split]

    def train_only(self) -> "Source":
        """Keep the train split, if the records have splits at all (pretraining's records)."""
        if any(r.split for r in self.records):
            self.records = self.split("train")
        return self


class DatasetSource:
    """One dataset: its spec, its evaluation source and splits, its pretraining source.

    Subclasses set ``spec`` and implement :meth:`task_source` and :meth:`pretrain_source`;
    the defaults below fit a dataset with train/val/test splits in one fold whose stats.json
    lives in ``data.root`` (else beside ``data.manifest``).
    """

    name: ClassVar[str]
    config: ClassVar[type[TaskCommon]]
    spec: ClassVar[TaskSpec]

    def task_source(self, task: Any, data: DataConfig, sample_rate: int, clip_seconds: float | None,
                    skip: bool) -> Source:
        """All records of evaluation task `task` (unvalidated), with their split or fold."""
        raise NotImplementedError

    def task_folds(self, task: Any, source: Source) -> dict[str, dict[str, list[ClipRecord]]]:
        """Fold name -> split name (train, val, test) -> records; an empty val means none."""
        return {"fold1": {split: source.split(split) for split in SPLIT_NAMES}}

    def pretrain_source(self, data: DataConfig) -> Source:
        """The records pretraining draws from when this dataset is ``data.kind`` (unvalidated)."""
        raise NotImplementedError

    def stats_location(self, data: DataConfig) -> Path:
        """Where ``ajepa-stats`` writes and pretraining reads this dataset's stats.json."""
        if data.root is not None:
            return Path(data.root)
        return Path(data.manifest).parent  # type: ignore[arg-type]


def register(config: type[TaskCommon]):
    """Class decorator: make a :class:`DatasetSource` the implementation of task type `config`."""
    name = config.model_fields["task"].default

    def add(cls: type[DatasetSource]) -> type[DatasetSource]:
        if name in SOURCES:
            raise ValueError(f"dataset {name!r} is already implemented by {type(SOURCES[name]).__qualname__}")
        cls.name, cls.config = name, config
        SOURCES[name] = cls()
        return cls

    return add


def source_for(name: str) -> DatasetSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"no dataset module implements task {name!r}; implemented: {sorted(SOURCES)}") from None


# --------------------------------------------------------------------------- helpers for the modules


def needs_root(task: Any) -> Path:
    if task.root is None:
        raise DatasetLayoutError(f"task {task.task!r} needs root: the dataset folder")
    return Path(task.root)


def ensure_splits(records: list[ClipRecord], seed: int = 0) -> list[ClipRecord]:
    """Data without splits gets a seeded, class-stratified 70/15/15 split."""
    if all(r.split is not None for r in records):
        return records
    if any(r.split is not None for r in records):
        raise DatasetLayoutError("some records have a split and some do not; give every row a split or none")
    codes = stratified_split_codes([r.labels[0] for r in records], seed)
    return [replace(r, split=SPLIT_NAMES[c]) for r, c in zip(records, codes)]


def read_csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise DatasetLayoutError(f"{path}: missing columns {missing}; expected {list(required)}, found {columns}")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def require(path: Path, what: str, layout: str = "") -> Path:
    """`path` itself, or a :class:`DatasetLayoutError` naming it as the expected path of `what`."""
    if not path.exists():
        raise DatasetLayoutError(f"{what} not found: expected {path}{layout}")
    return path


def read_lines(path: Path) -> list[str]:
    """The non-empty, stripped lines of a split list (Speech Commands, GTZAN, VoxCeleb1)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def chosen_folds(requested: Sequence[int] | None, available: Sequence[int], who: str) -> list[int]:
    """The CV folds to evaluate: `requested` (checked against `available`), else all of them."""
    folds = list(requested or available)
    bad = [k for k in folds if k not in available]
    if bad:
        raise ValueError(f"{who} folds are {min(available)}-{max(available)}; got {bad} in the task's folds")
    return sorted(set(folds))


def cv_folds(records: Sequence[ClipRecord], folds: Sequence[int]) -> dict[str, dict[str, list[ClipRecord]]]:
    """Leave-one-fold-out: fold k tests on the records of fold k and trains on the others (no
    val split; the probe carves one from train, keeping a recording's clips together)."""
    return {f"fold{k}": {"train": [r for r in records if r.fold != k], "val": [],
                         "test": [r for r in records if r.fold == k]}
            for k in folds}


def group_splits(groups: Sequence[str], fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
                 seed: int = 0) -> dict[str, str]:
    """Group (speaker) -> split, every group in one split: the sorted distinct groups are
    shuffled by ``numpy.random.RandomState(seed)`` and cut at ``floor(cumulative share * n)``
    (the rule of TensorFlow Datasets' CREMA-D builder, so the split is a pure function of
    the group ids and reproducible anywhere)."""
    distinct = sorted(set(groups))
    np.random.RandomState(seed).shuffle(distinct)
    n, out = len(distinct), {}
    # cumulative shares as exact cut points (0.7 + 0.1 is 0.7999... in floats, which would
    # empty val for 10 groups; the same cuts as TFDS for CREMA-D's 91 actors)
    cuts = [0] + [int(np.floor(sum(fractions[:k + 1]) * n + 1e-9)) for k in range(len(fractions) - 1)] + [n]
    for split, start, end in zip(SPLIT_NAMES, cuts, cuts[1:]):
        out.update({group: split for group in distinct[start:end]})
    return out
