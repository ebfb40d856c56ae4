"""One clip dataset for every source: files on disk, slices of files, or in-memory waves.

Every pretraining and evaluation dataset in ajepa is a :class:`ClipDataset`, so they all
return the same item::

    {"spec": FloatTensor[1, F, T], "label": LongTensor[] | FloatTensor[C], "index": int}

(``label`` is a class index for single-label tasks, a multi-hot vector for multi-label
ones).

Design notes, each answering a failure seen in practice:

- **Bad files.** :func:`validate_records` checks every file's header (plus a 1024-frame
  decode) before any training starts, in a thread pool, so a corrupt clip fails in
  seconds with its path, not hours into a run. ``skip_bad_files=True`` drops such files
  and reports their count. Defects deeper in a file surface at load time, again naming
  the file (or, when skipping, replaced by the next clip with a warning).
- **Millions of records.** Records live in a :class:`RecordTable` of numpy arrays, not a
  list of Python objects: DataLoader workers fork the dataset, and touching millions of
  refcounted objects copies their pages into every worker.
- **Reproducible crops.** A plain integer index draws the random crop from torch's global
  RNG, which ``ajepa.data.loader.StepTaggedDataset`` seeds from ``(seed, step, index)``
  around each item. Indexing with ``(step, index)`` seeds a private generator from
  ``(crop_seed, step, index)`` instead, for callers without that wrapper. Either way crops
  are identical across worker counts and after a resume.
- **Decoding in the hot loop.** With a :class:`~ajepa.data.feature_cache.FeatureCache`
  (``features``; built by ``ajepa.data.feature_cache.build_feature_cache``) an item reads
  its clip's cached un-normalised log-mel instead of decoding and running the fbank; the
  crop and normalisation that follow are the same code, so items agree with the uncached
  path up to float16 rounding. Records without an entry fall back to the audio.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ajepa.audio.features import Frontend
from ajepa.audio.io import AUDIO_EXTENSIONS, AudioError, check_audio_file, load_audio, prepare_wave
from ajepa.contracts import UserError
from ajepa.data.feature_cache import FeatureCache

log = logging.getLogger("ajepa.data")

SKIP_HINT = "set data.skip_bad_files=true (or the task's skip_bad_files) to skip such files"
SPLIT_NAMES = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "dev": "val", "test": "test", "testing": "test", "eval": "test", "evaluation": "test"}


class DatasetLayoutError(UserError):
    """Data on disk that does not have the expected layout; names the expected path."""


@dataclass(frozen=True)
class ClipRecord:
    """One clip: a file (or a slice of one), or row `wave_index` of an in-memory array."""

    path: str | None
    labels: tuple[int, ...]
    split: str | None = None
    fold: int | None = None
    wave_index: int = -1
    start: float = 0.0
    duration: float | None = None
    gain: float = 1.0
    group: str | None = None  # clips of one recording (ESC-50 src_file): kept together when validation is carved


# --------------------------------------------------------------------------- storage


class RecordTable:
    """Clip records packed into a few numpy arrays (cheap to fork into DataLoader workers)."""

    def __init__(self, records: Sequence[ClipRecord]):
        encoded = [os.fsencode(r.path) if r.path is not None else b"" for r in records]
        lengths = np.fromiter((len(p) for p in encoded), dtype=np.int64, count=len(encoded))
        self._path_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._path_blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        self._has_path = np.fromiter((r.path is not None for r in records), dtype=bool, count=len(records))
        label_counts = np.fromiter((len(r.labels) for r in records), dtype=np.int64, count=len(records))
        self._label_offsets = np.concatenate([[0], np.cumsum(label_counts)]).astype(np.int64)
        self._label_values = np.fromiter((c for r in records for c in r.labels), dtype=np.int32,
                                         count=int(label_counts.sum()))
        self._wave_index = np.fromiter((r.wave_index for r in records), dtype=np.int64, count=len(records))
        self._start = np.fromiter((r.start for r in records), dtype=np.float64, count=len(records))
        self._duration = np.fromiter((np.nan if r.duration is None else r.duration for r in records),
                                     dtype=np.float64, count=len(records))
        self._gain = np.fromiter((r.gain for r in records), dtype=np.float32, count=len(records))
        self._split = [r.split for r in records] if any(r.split for r in records) else None
        self._fold = np.fromiter((-1 if r.fold is None else r.fold for r in records), dtype=np.int64,
                                 count=len(records))
        self._group = [r.group for r in records] if any(r.group is not None for r in records) else None

    def __len__(self) -> int:
        return len(self._has_path)

    def path(self, i: int) -> str | None:
        if not self._has_path[i]:
            return None
        return os.fsdecode(self._path_blob[self._path_offsets[i] : self._path_offsets[i + 1]].tobytes())

    def labels(self, i: int) -> tuple[int, ...]:
        return tuple(int(c) for c in self._label_values[self._label_offsets[i] : self._label_offsets[i + 1]])

    def first_label(self, i: int) -> int:
        """The first label of record `i` (IndexError if it has none)."""
        start = self._label_offsets[i]
        if start == self._label_offsets[i + 1]:
            raise IndexError(f"record {i} has no label")
        return int(self._label_values[start])

    @property
    def groups(self) -> list[str | None] | None:
        return self._group

    def __getitem__(self, i: int) -> ClipRecord:
        duration = self._duration[i]
        return ClipRecord(
            path=self.path(i),
            labels=self.labels(i),
            split=None if self._split is None else self._split[i],
            fold=None if self._fold[i] < 0 else int(self._fold[i]),
            wave_index=int(self._wave_index[i]),
            start=float(self._start[i]),
            duration=None if np.isnan(duration) else float(duration),
            gain=float(self._gain[i]),
            group=None if self._group is None else self._group[i],
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def first_labels(self) -> np.ndarray:
        """The first label of every record (the class, for single-label data)."""
        firsts = np.full(len(self), -1, dtype=np.int64)
        nonempty = self._label_offsets[1:] > self._label_offsets[:-1]
        firsts[nonempty] = self._label_values[self._label_offsets[:-1][nonempty]]
        return firsts


class WaveArray:
    """In-memory clips ``[N, samples]`` (int16 full-scale 32767, or float), optionally backed
    by a ``.npy`` that each worker re-opens as a memmap instead of receiving a copy."""

    def __init__(self, sample_rate: int, array: np.ndarray | None = None, path: str | os.PathLike | None = None):
        if array is None and path is None:
            raise ValueError("WaveArray needs an array or a .npy path")
        self.sample_rate = int(sample_rate)
        self.path = None if path is None else str(path)
        self._array = array

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self.array)

    def wave(self, index: int) -> np.ndarray:
        row = np.asarray(self.array[index])
        if row.dtype == np.int16:
            return row.astype(np.float32) / np.float32(32767.0)
        return row.astype(np.float32, copy=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.path is not None:
            state["_array"] = None  # reopen the memmap in the worker rather than pickling the data
        return state


# --------------------------------------------------------------------------- the dataset


class ClipDataset(Dataset):
    """Clips -> ``{"spec", "label", "index"}`` through a :class:`Frontend`.

    `train` selects the random crop (else centred). Build it with validated records (see
    :func:`validate_records`); `skipped` carries how many files validation dropped.
    `features` (aligned with the records) serves cached log-mels, see :meth:`with_features`.
    """

    def __init__(
        self,
        records: Sequence[ClipRecord] | RecordTable,
        frontend: Frontend,
        *,
        num_classes: int,
        multilabel: bool = False,
        class_names: Sequence[str] | None = None,
        train: bool = False,
        waves: WaveArray | None = None,
        skip_bad_files: bool = False,
        crop_seed: int = 0,
        name: str = "clips",
        skipped: int = 0,
        features: FeatureCache | None = None,
    ):
        self.records = records if isinstance(records, RecordTable) else RecordTable(records)
        self.frontend = frontend
        self.num_classes = int(num_classes)
        self.multilabel = bool(multilabel)
        self.class_names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
        self.train = bool(train)
        self.waves = waves
        self.skip_bad_files = bool(skip_bad_files)
        self.crop_seed = int(crop_seed)
        self.name = name
        self.skipped = int(skipped)
        self.features = None
        if features is not None:
            self.features = self._check_features(features)
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{name}: {len(self.class_names)} class names for {self.num_classes} classes")

    def __repr__(self) -> str:
        mode = "random crop" if self.train else "centre crop"
        cached = ", feature cache" if self.features is not None else ""
        return (f"ClipDataset({self.name!r}, {len(self)} clips, {self.num_classes} classes, {mode}{cached}, "
                f"{self.frontend})")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        if isinstance(key, tuple):
            step, index = key
            return self.load(int(index), crop_generator(self.crop_seed, int(step), int(index)))
        return self.load(int(key))

    def load(self, index: int, generator: torch.Generator | None = None) -> dict:
        """The item at `index`; `generator` drives the random crop (train mode only)."""
        if index < 0:
            index += len(self)
        for attempt in range(len(self)):
            current = (index + attempt) % len(self)
            try:
                log_mel = self.raw_log_mel(current)
            except AudioError as err:
                if not self.skip_bad_files:
                    raise AudioError(err.path, f"{err.reason}; {SKIP_HINT}") from None
                warnings.warn(f"skipping bad clip {err}; using clip {(current + 1) % len(self)} instead",
                              RuntimeWarning, stacklevel=2)
                continue
            spec = self.frontend.finish(log_mel, train=self.train, generator=generator)
            return {"spec": spec, "label": self.target(current), "index": current}
        raise AudioError(self.name, "every clip failed to load")

    def wave(self, index: int) -> torch.Tensor:
        """The decoded mono wave at the frontend's sample rate."""
        path = self.records.path(index)
        gain = float(self.records._gain[index])
        sample_rate = self.frontend.sample_rate
        if path is not None:
            duration = self.records._duration[index]
            wave = load_audio(path, sample_rate, float(self.records._start[index]),
                              None if np.isnan(duration) else float(duration))
        else:
            if self.waves is None:
                raise ValueError(f"{self.name}: record {index} has no path and the dataset has no waves")
            row = int(self.records._wave_index[index])
            wave = prepare_wave(self.waves.wave(row), self.waves.sample_rate, sample_rate, f"{self.name}[{row}]")
        return wave * gain if gain != 1.0 else wave

    def target(self, index: int) -> torch.Tensor:
        if not self.multilabel:
            return torch.tensor(int(self.records.first_label(index)), dtype=torch.long)
        hot = torch.zeros(self.num_classes, dtype=torch.float32)
        hot[list(self.records.labels(index))] = 1.0
        return hot

    def raw_log_mel(self, index: int) -> torch.Tensor:
        """Un-normalised, un-padded log-mel ``[F, T]``: float16 from the feature cache when
        it holds the clip, else float32 computed from the audio."""
        if self.features is not None:
            cached = self.features.read(index)
            if cached is not None:
                return cached
        return self.frontend.log_mel(self.wave(index))

    def log_mel(self, index: int) -> torch.Tensor:
        """Un-normalised, un-padded float32 log-mel ``[F, T]`` of a clip (for normalisation stats)."""
        return self.raw_log_mel(index).to(torch.float32)

    def with_features(self, features: FeatureCache | None) -> "ClipDataset":
        """The same dataset reading log-mels from `features` (aligned with its records)."""
        return self._replace(features=None if features is None else self._check_features(features))

    def _check_features(self, features: FeatureCache) -> FeatureCache:
        if len(features) != len(self.records):
            raise ValueError(f"{self.name}: feature cache for {len(features)} records, dataset has {len(self.records)}")
        if features.num_mel_bins != self.frontend.num_mel_bins:
            raise ValueError(f"{self.name}: feature cache of {features.num_mel_bins} mel bins, "
                             f"frontend has {self.frontend.num_mel_bins}")
        return features

    @property
    def labels(self) -> np.ndarray:
        """Class per clip (``int64 [N]``), or multi-hot (``bool [N, C]``) for multi-label data."""
        if not self.multilabel:
            return self.records.first_labels()
        hot = np.zeros((len(self), self.num_classes), dtype=bool)
        for i in range(len(self)):
            hot[i, list(self.records.labels(i))] = True
        return hot

    @property
    def groups(self) -> np.ndarray | None:
        """Recording key per clip (see ``ClipRecord.group``), or None when the data has none."""
        if self.records.groups is None:
            return None
        return np.asarray([g if g is not None else f"\0clip{i}" for i, g in enumerate(self.records.groups)], dtype=object)

    def subset(self, indices: Iterable[int], name: str | None = None) -> "ClipDataset":
        """A dataset of the given clips (same frontend, classes and crop mode)."""
        indices = [int(i) for i in indices]
        records = [self.records[i] for i in indices]
        features = None if self.features is None else self.features.subset(indices)
        return self._replace(records=RecordTable(records), name=name or self.name, features=features)

    def as_training(self, train: bool = True) -> "ClipDataset":
        """The same clips with random (train) or centred crops, e.g. for fine-tuning."""
        return self._replace(train=train)

    def _replace(self, **changes) -> "ClipDataset":
        clone = object.__new__(ClipDataset)
        clone.__dict__.update(self.__dict__)
        clone.__dict__.update(changes)
        return clone


def crop_generator(crop_seed: int, step: int, index: int) -> torch.Generator:
    """A generator that is a pure function of (seed, step, index)."""
    seed = np.random.SeedSequence([crop_seed & 0xFFFFFFFF, step, index]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)


# --------------------------------------------------------------------------- validation


@dataclass
class ValidationReport:
    kept: list[ClipRecord]
    bad: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def skipped(self) -> int:
        return len(self.bad)


def validate_records(records: Sequence[ClipRecord], skip_bad_files: bool, what: str = "dataset",
                     workers: int = 8) -> ValidationReport:
    """Check each distinct file up front (header + first block). Bad files raise an
    :class:`AudioError` naming them, or are dropped (with a logged count) when skipping."""
    paths = sorted({r.path for r in records if r.path is not None})

    def check(path: str) -> tuple[str, str | None]:
        try:
            check_audio_file(path)
            return path, None
        except AudioError as err:
            return path, err.reason

    if len(paths) < 64:
        results = list(map(check, paths))
    else:  # file opens wait on the disk, not the GIL
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(check, paths, chunksize=256))
    reasons = {path: reason for path, reason in results if reason is not None}
    if not reasons:
        return ValidationReport(list(records))
    bad = sorted(reasons.items())
    if not skip_bad_files:
        first_path, first_reason = bad[0]
        others = ", ".join(p for p, _ in bad[1:4]) + (", ..." if len(bad) > 4 else "")
        more = f" ({len(bad) - 1} more bad files: {others})" if len(bad) > 1 else ""
        raise AudioError(first_path, f"{first_reason}{more}; {len(bad)} of {len(paths)} files in {what} "
                                     f"failed the check; {SKIP_HINT}")
    kept = [r for r in records if r.path is None or r.path not in reasons]
    log.warning("%s: skipped %d of %d files that could not be read (first: %s: %s)",
                what, len(bad), len(paths), bad[0][0], bad[0][1])
    return ValidationReport(kept, bad)


# --------------------------------------------------------------------------- labels and splits


def sorted_class_names(names: Iterable[str]) -> list[str]:
    """Class names in a stable order: numerically if they are all integers, else by text."""
    unique = set(names)
    if unique and all(n.lstrip("-").isdigit() for n in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def canonical_split(value: str, where: str) -> str:
    split = _SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        raise DatasetLayoutError(f"{where}: unknown split {value!r}; use one of train, val, test")
    return split


def stratified_split_codes(labels: Sequence[int] | np.ndarray, seed: int,
                           fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> np.ndarray:
    """Per class, a seeded shuffle cut into train/val/test (codes 0/1/2 in SPLIT_NAMES order)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0x5EED])
    codes = np.zeros(len(labels), dtype=np.uint8)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        num_train = int(round(fractions[0] * len(members)))
        num_val = int(round(fractions[1] * len(members)))
        codes[members[num_train : num_train + num_val]] = 1
        codes[members[num_train + num_val :]] = 2
    return codes


def cap_records(records: Sequence[ClipRecord], max_clips: int | None, seed: int = 0) -> list[ClipRecord]:
    """At most `max_clips` records, taken round-robin over classes from a seeded shuffle, so
    a quick check still sees every class it can."""
    if max_clips is None or len(records) <= max_clips:
        return list(records)
    rng = np.random.default_rng([seed, 0xCA9])
    by_class: dict[int, list[int]] = {}
    for i in rng.permutation(len(records)):
        by_class.setdefault(records[i].labels[0] if records[i].labels else -1, []).append(int(i))
    chosen: list[int] = []
    queues = [by_class[k] for k in sorted(by_class)]
    depth = 0
    while len(chosen) < max_clips:
        for queue in queues:
            if depth < len(queue) and len(chosen) < max_clips:
                chosen.append(queue[depth])
        depth += 1
    return [records[i] for i in sorted(chosen)]


# --------------------------------------------------------------------------- folder and manifest


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def folder_records(root: str | os.PathLike) -> tuple[list[ClipRecord], list[str]]:
    """``root/<class>/**/*.wav`` -> records and sorted class names.

    If ``root`` holds ``train/`` and ``test/`` (and optionally ``val/``), each is such a
    tree and records carry its split.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"folder dataset root {root} does not exist (expected {root}/<class>/*.wav)")
    split_dirs = {d.name.lower(): d for d in root.iterdir() if d.is_dir()}
    if "train" in split_dirs and ("test" in split_dirs or "eval" in split_dirs):
        trees = [(canonical_split(name, str(root)), d) for name, d in sorted(split_dirs.items())]
    else:
        trees = [(None, root)]
    found: list[tuple[Path, str, str | None]] = []
    for split, tree in trees:
        for class_dir in sorted(d for d in tree.iterdir() if d.is_dir() and not d.name.startswith(".")):
            found.extend((f, class_dir.name, split) for f in sorted(class_dir.rglob("*")) if is_audio_file(f))
    if not found:
        raise DatasetLayoutError(
            f"no audio files found under {root}: expected {root}/<class>/<clip>.wav "
            f"(one folder per class; extensions {', '.join(AUDIO_EXTENSIONS)})"
        )
    class_names = sorted_class_names(name for _, name, _ in found)
    index = {name: i for i, name in enumerate(class_names)}
    records = [ClipRecord(str(path), (index[name],), split) for path, name, split in found]
    return records, class_names


def manifest_records(csv_path: str | os.PathLike) -> tuple[list[ClipRecord], list[str], bool]:
    """CSV with header ``path,label[,split]`` -> (records, class names, multilabel).

    Paths are relative to the CSV's folder (absolute paths are kept). A label cell with
    several labels separated by ``;`` makes the manifest multi-label.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetLayoutError(f"manifest {csv_path} does not exist (expected a CSV with header path,label[,split])")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "path" not in columns or "label" not in columns:
            raise DatasetLayoutError(
                f"{csv_path}: header must have columns path,label[,split]; found {columns or 'no header'}"
            )
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise DatasetLayoutError(f"{csv_path}: no rows below the header")
    has_split = "split" in columns
    label_lists = [[part.strip() for part in row["label"].split(";") if part.strip()] for row in rows]
    for line, labels in enumerate(label_lists, start=2):
        if not labels:
            raise DatasetLayoutError(f"{csv_path}:{line}: empty label")
    class_names = sorted_class_names(label for labels in label_lists for label in labels)
    index = {name: i for i, name in enumerate(class_names)}
    records = []
    for line, (row, labels) in enumerate(zip(rows, label_lists), start=2):
        path = Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        split = canonical_split(row["split"], f"{csv_path}:{line}") if has_split and row.get("split") else None
        records.append(ClipRecord(str(path), tuple(index[n] for n in labels), split))
    multilabel = any(len(labels) > 1 for labels in label_lists)
    return records, class_names, multilabel
