"""Downstream tasks and pretraining data, read from their real on-disk layouts.

:func:`build_task` turns an :class:`~ajepa.config.EvalTask` into a :class:`TaskData`
(train/val/test :class:`~ajepa.data.datasets.ClipDataset` per fold, all centre-cropped);
:func:`build_pretrain_dataset` turns ``cfg.data`` into the random-crop pretraining set.

Clip length and spectrogram length per task (the AST / Audio-MAE convention, so that
published normalisation stats and numbers stay comparable; every length is a multiple of
the 16-frame patch, which the raw frame counts 998/498/98 are not):

======================  ========  =============  ======  =========
task                    clip      target_frames  metric  folds
======================  ========  =============  ======  =========
audioset (20K / 2M)     10 s      1024           mAP     1
esc50 (ESC-10 option)   5 s       512            acc     5 (CV)
speechcommands (35/12)  1 s       128            acc     1
synthetic               data's    pretraining's  acc     1
folder / manifest       any       pretraining's  acc     1
======================  ========  =============  ======  =========

``EvalTask.target_frames`` overrides the table; for folder/manifest a given
``EvalTask.clip_seconds`` sets the frames to that length rounded up to 16.
Normalisation follows ``frontend.norm``; with ``norm='dataset'`` each task reads the
stats.json beside its own data, unless the caller passes ``norm_stats`` (e.g. the
pretraining stats, to feed a frozen encoder what it saw in pretraining).

With ``data.feature_cache`` (the default) pretraining and task datasets read their clips'
log-mels from ``ajepa.data.feature_cache``, built here before the first item is served.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from ajepa.audio.features import (
    Frontend,
    fbank_settings,
    frames_for_samples,
    resolve_norm_stats,
    stats_file,
    write_norm_stats,
)
from ajepa.config import DataConfig, EvalTask, FrontendConfig, TrainConfig
from ajepa.data.datasets import (
    ClipDataset,
    ClipRecord,
    DatasetLayoutError,
    WaveArray,
    cap_records,
    folder_records,
    is_audio_file,
    manifest_records,
    stratified_split_codes,
    validate_records,
)
from ajepa.data.feature_cache import FeatureCache, build_feature_cache
from ajepa.data.stats import compute_norm_stats
from ajepa.data.synthetic import SPLITS as SYNTHETIC_SPLITS
from ajepa.data.synthetic import load_synthetic, synthetic_folder

log = logging.getLogger("ajepa.data")


@dataclass(frozen=True)
class TaskSpec:
    """What a task declares about itself."""

    clip_seconds: float | None  # None: the data's own
    target_frames: int | None  # None: the pretraining frontend's
    metric: str  # "acc" or "map"


TASK_SPECS: dict[str, TaskSpec] = {
    "audioset": TaskSpec(10.0, 1024, "map"),
    "esc50": TaskSpec(5.0, 512, "acc"),
    "speechcommands": TaskSpec(1.0, 128, "acc"),
    "synthetic": TaskSpec(None, None, "acc"),
    "folder": TaskSpec(None, None, "acc"),
    "manifest": TaskSpec(None, None, "acc"),
}

ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")

# Speech Commands V2: the 35 words (sorted: label index = position) and the 12-class subset.
SPEECH_COMMANDS_WORDS: tuple[str, ...] = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go",
    "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven",
    "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)
SPEECH_COMMANDS_10: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
BACKGROUND_NOISE = "_background_noise_"
# The 12-class recipe of the dataset's own TensorFlow example (Warden 2018): silence and
# unknown each add 10 % of the split's known-word clip count.
SILENCE_PERCENT = UNKNOWN_PERCENT = 10.0
SILENCE_HOP_SECONDS = 0.5

AUDIOSET_CLASS_INDEX = "class_labels_indices.csv"


@dataclass
class Fold:
    name: str
    train: ClipDataset
    val: ClipDataset | None
    test: ClipDataset


@dataclass
class TaskData:
    name: str
    num_classes: int
    multilabel: bool
    metric: str  # "acc" | "map"
    class_names: list[str]
    folds: list[Fold]
    target_frames: int = 0
    clip_seconds: float | None = None
    skipped: int = 0  # files dropped by skip_bad_files


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
    extra: dict = field(default_factory=dict)

    def split(self, split: str) -> list[ClipRecord]:
        return [r for r in self.records if r.split == split]


# --------------------------------------------------------------------------- ESC-50


def esc50_source(root: str | os.PathLike, esc10: bool = False) -> Source:
    """``root/audio/*.wav`` + ``root/meta/esc50.csv``; records carry their fold (1-5)."""
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    audio = root / "audio"
    if not meta.is_file():
        raise DatasetLayoutError(f"ESC-50 metadata not found: expected {meta} (the ESC-50 release layout)")
    if not audio.is_dir():
        raise DatasetLayoutError(f"ESC-50 audio folder not found: expected {audio}/<filename>.wav")
    rows = _read_csv_rows(meta, ESC50_COLUMNS)
    if esc10:
        rows = [row for row in rows if row["esc10"].strip().lower() == "true"]
        if not rows:
            raise DatasetLayoutError(f"{meta}: no row has esc10=True, so the ESC-10 subset is empty")
    try:
        targets = sorted({int(row["target"]) for row in rows})
        names = {int(row["target"]): row["category"] for row in rows}
        index = {target: i for i, target in enumerate(targets)}  # ESC-10 targets become 0..9
        records = [
            ClipRecord(str(audio / row["filename"]), (index[int(row["target"])],), fold=int(row["fold"]),
                       group=row["src_file"])
            for row in rows
        ]
    except ValueError as err:
        raise DatasetLayoutError(f"{meta}: fold and target must be integers ({err})") from None
    bad_folds = sorted({r.fold for r in records} - {1, 2, 3, 4, 5})
    if bad_folds:
        raise DatasetLayoutError(f"{meta}: folds must be 1-5, found {bad_folds}")
    return Source("esc10" if esc10 else "esc50", records, [names[t] for t in targets], False, root)


def _read_csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise DatasetLayoutError(f"{path}: missing columns {missing}; expected {list(required)}, found {columns}")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


# --------------------------------------------------------------------------- Speech Commands V2


def speechcommands_source(root: str | os.PathLike, classes: int = 35, clip_seconds: float = 1.0,
                          seed: int = 0) -> Source:
    """``root/<word>/<speaker>_nohash_<n>.wav`` + ``validation_list.txt`` + ``testing_list.txt``.

    35 classes: the words. 12 classes: ten words, ``_unknown_`` (a seeded sample of the
    other 25 words, 10 % of the split's word clips) and ``_silence_`` (1 s slices of
    ``_background_noise_/*.wav`` at random gain, 10 %; each noise file's first 80 % feeds
    train, the next 10 % val, the last 10 % test, so no slice is shared between splits).
    """
    root = Path(root)
    lists = {}
    for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
        path = root / name
        if not path.is_file():
            raise DatasetLayoutError(f"Speech Commands split list not found: expected {path}")
        lists[split] = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    missing = [root / word for word in SPEECH_COMMANDS_WORDS if not (root / word).is_dir()]
    if missing:
        raise DatasetLayoutError(
            f"Speech Commands V2 word folder(s) not found: expected {missing[0]}/ "
            f"({len(missing)} of 35 missing; V2 has {', '.join(SPEECH_COMMANDS_WORDS)})"
        )
    extra = [d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
             and d.name not in SPEECH_COMMANDS_WORDS and d.name != BACKGROUND_NOISE]
    if extra:
        log.warning("%s: ignoring folders that are not Speech Commands V2 words: %s", root, sorted(extra))

    word_clips: list[tuple[str, str, str]] = []  # (path, word, split)
    for word in SPEECH_COMMANDS_WORDS:
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
    if classes == 35:
        index = {word: i for i, word in enumerate(SPEECH_COMMANDS_WORDS)}
        records = [ClipRecord(p, (index[w],), split) for p, w, split in word_clips]
        return Source("speechcommands", records, list(SPEECH_COMMANDS_WORDS), False, root)
    if classes != 12:
        raise ValueError(f"Speech Commands has a 35- or a 12-class task, not {classes}")
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
        raise DatasetLayoutError(f"the 12-class Speech Commands task needs background noise: expected {noise_dir}/*.wav")
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


# --------------------------------------------------------------------------- AudioSet


def audioset_source(manifests: Sequence[Path], root: Path | None, skip_missing: bool,
                    clip_index: dict[str, str] | None = None) -> Source:
    """AudioSet from AST/Audio-MAE JSON manifests or official ``*_segments.csv`` files.

    JSON: ``{"data": [{"wav": path, "labels": "/m/a,/m/b"}]}``, paths relative to the
    JSON's folder unless absolute. Segments CSV: clips found anywhere under `root` (default:
    the CSV's folder) as ``<YTID>.<ext>``, ``Y<YTID>.<ext>`` or either with the segment's times
    (:func:`segment_stems`). Labels index
    ``class_labels_indices.csv`` (beside the manifest, or in `root`). Pass `clip_index`
    (from :func:`index_clips`) to reuse one walk of a large clip tree.
    """
    manifests = [Path(m) for m in manifests]
    for manifest in manifests:
        if not manifest.is_file():
            raise DatasetLayoutError(f"AudioSet manifest not found: expected {manifest}")
    mids, names = read_audioset_classes(_find_class_index(manifests[0], root))
    mid_index = {mid: i for i, mid in enumerate(mids)}
    records: list[ClipRecord] = []
    missing: list[str] = []
    for manifest in manifests:
        if manifest.suffix.lower() == ".json":
            records += _audioset_json(manifest, mid_index)
            continue
        clip_root = root if root is not None else manifest.parent
        if clip_index is None:
            clip_index = index_clips(clip_root)
        found, absent = _audioset_segments(manifest, mid_index, clip_index)
        records += found
        missing += [f"{clip_root}/**/Y{ytid}.wav (or {ytid}.wav)" for ytid in absent]
        if not found:
            raise DatasetLayoutError(
                f"none of the segments in {manifest} has a clip under {clip_root}: expected files named "
                f"<YTID>.wav or Y<YTID>.wav, e.g. {missing[-1] if missing else clip_root}"
            )
    if missing and not skip_missing:
        raise DatasetLayoutError(
            f"{len(missing)} AudioSet segments have no clip on disk, e.g. expected {missing[0]}; "
            f"downloads always miss some: set skip_bad_files=true to skip them"
        )
    if missing:
        log.warning("AudioSet: skipped %d segments with no clip on disk (e.g. %s)", len(missing), missing[0])
    location = root if root is not None else manifests[0].parent
    return Source("audioset", records, names, True, location, skipped=len(missing))


def _find_class_index(manifest: Path, root: Path | None) -> Path:
    candidates = [manifest.parent / AUDIOSET_CLASS_INDEX] + ([root / AUDIOSET_CLASS_INDEX] if root else [])
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DatasetLayoutError(f"AudioSet class index not found: expected {' or '.join(map(str, candidates))} "
                             f"(columns index,mid,display_name)")


def read_audioset_classes(path: Path) -> tuple[list[str], list[str]]:
    """``class_labels_indices.csv`` -> (mids, display names) in index order."""
    rows = _read_csv_rows(path, ("index", "mid", "display_name"))
    try:
        rows.sort(key=lambda row: int(row["index"]))
    except ValueError as err:
        raise DatasetLayoutError(f"{path}: index must be an integer ({err})") from None
    if [int(row["index"]) for row in rows] != list(range(len(rows))):
        raise DatasetLayoutError(f"{path}: indices must run 0..{len(rows) - 1} without gaps")
    return [row["mid"] for row in rows], [row["display_name"] for row in rows]


def _label_indices(labels: str, mid_index: dict[str, int], where: str) -> tuple[int, ...]:
    mids = [mid.strip() for mid in labels.split(",") if mid.strip()]
    unknown = [mid for mid in mids if mid not in mid_index]
    if unknown:
        raise DatasetLayoutError(f"{where}: label {unknown[0]!r} is not in {AUDIOSET_CLASS_INDEX}")
    if not mids:
        raise DatasetLayoutError(f"{where}: no labels")
    return tuple(sorted({mid_index[mid] for mid in mids}))


def _audioset_json(path: Path, mid_index: dict[str, int]) -> list[ClipRecord]:
    try:
        entries = json.loads(path.read_text())["data"]
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetLayoutError(f"{path}: expected JSON {{\"data\": [{{\"wav\": ..., \"labels\": ...}}]}} ({err})") from None
    records = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "wav" not in entry or "labels" not in entry:
            raise DatasetLayoutError(f"{path}: data[{i}] needs keys 'wav' and 'labels'")
        wav = Path(entry["wav"])
        wav = wav if wav.is_absolute() else path.parent / wav
        records.append(ClipRecord(str(wav), _label_indices(entry["labels"], mid_index, f"{path}: data[{i}]")))
    return records


def _audioset_segments(path: Path, mid_index: dict[str, int], clip_index: dict[str, str]
                       ) -> tuple[list[ClipRecord], list[str]]:
    """Rows of an official segments CSV (``# ...`` header lines; YTID, start, end, "labels")."""
    found, absent = [], []
    with path.open(newline="") as handle:
        lines = (line for line in handle if line.strip() and not line.lstrip().startswith("#"))
        for line_no, row in enumerate(csv.reader(lines, skipinitialspace=True), start=1):
            if len(row) < 4:
                raise DatasetLayoutError(f"{path}: segment row {line_no} has {len(row)} columns; expected "
                                         f"YTID, start_seconds, end_seconds, positive_labels")
            ytid = row[0].strip()
            labels = _label_indices(row[3], mid_index, f"{path}: segment {ytid}")
            clip = next((clip_index[s] for s in segment_stems(ytid, row[1], row[2]) if s in clip_index), None)
            if clip is None:
                absent.append(ytid)
            else:
                found.append(ClipRecord(clip, labels))
    return found, absent


def segment_stems(ytid: str, start: str, end: str) -> list[str]:
    """File names (without extension) that AudioSet downloaders give a segment, most common
    first: ``<YTID>``, ``Y<YTID>`` (PANNs, Audio-MAE), and both with the segment's times as
    written in the CSV (``_30.000_40.000``), in whole seconds (``_30_40``) or in ms
    (``_30000_40000``)."""
    stems = [ytid, "Y" + ytid]
    try:
        t0, t1 = float(start), float(end)
    except ValueError:
        return stems
    for times in (f"{start.strip()}_{end.strip()}", f"{t0:g}_{t1:g}", f"{round(t0 * 1000)}_{round(t1 * 1000)}"):
        stems += [f"{ytid}_{times}", f"Y{ytid}_{times}"]
    return stems


def index_clips(root: Path) -> dict[str, str]:
    """File stem -> path of every audio file under `root` (one walk, also for 2M clips)."""
    if not root.is_dir():
        raise DatasetLayoutError(f"AudioSet clip folder not found: expected {root}")
    index: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in (".wav", ".flac", ".ogg", ".mp3") and not name.startswith("."):
                index.setdefault(stem, os.path.join(folder, name))
    return index


def audioset_manifests(root: Path | None, manifest: Path | None, default: Sequence[str]) -> list[Path]:
    """The given manifest, or the first of `default` that exists in root."""
    if manifest is not None:
        return [Path(manifest)]
    if root is None:
        raise DatasetLayoutError("AudioSet needs a manifest (JSON or *_segments.csv) or a root holding one")
    for name in default:
        if (Path(root) / name).is_file():
            return [Path(root) / name]
    raise DatasetLayoutError(f"AudioSet manifest not found: expected {Path(root) / default[0]} "
                             f"(or set the manifest to an AST JSON / segments CSV)")


# --------------------------------------------------------------------------- generic and synthetic


def folder_source(root: str | os.PathLike, seed: int = 0) -> Source:
    records, class_names = folder_records(root)
    return Source("folder", _ensure_splits(records, seed), class_names, False, Path(root))


def manifest_source(manifest: str | os.PathLike, seed: int = 0) -> Source:
    records, class_names, multilabel = manifest_records(manifest)
    return Source("manifest", _ensure_splits(records, seed), class_names, multilabel, Path(manifest).parent)


def _ensure_splits(records: list[ClipRecord], seed: int) -> list[ClipRecord]:
    """Data without splits gets a seeded, class-stratified 70/15/15 split."""
    if all(r.split is not None for r in records):
        return records
    if any(r.split is not None for r in records):
        raise DatasetLayoutError("some records have a split and some do not; give every row a split or none")
    codes = stratified_split_codes([r.labels[0] for r in records], seed)
    return [ClipRecord(r.path, r.labels, SYNTHETIC_SPLITS[c]) for r, c in zip(records, codes)]


def synthetic_source(data: DataConfig, sample_rate: int, clip_seconds: float) -> Source:
    generated = load_synthetic(data.synthetic, sample_rate, clip_seconds, data.cache_dir)
    waves = WaveArray(generated.sample_rate, None if generated.waves_path else generated.waves, generated.waves_path)
    records = [
        ClipRecord(None, (int(label),), SYNTHETIC_SPLITS[code], wave_index=i)
        for i, (label, code) in enumerate(zip(generated.labels, generated.split_codes))
    ]
    location = synthetic_folder(data.synthetic, sample_rate, clip_seconds, data.cache_dir)
    return Source("synthetic", records, list(generated.class_names), False, location, waves=waves)


# --------------------------------------------------------------------------- evaluation tasks


def build_task(
    task: EvalTask,
    frontend_cfg: FrontendConfig,
    sample_rate: int,
    cache_dir: str | os.PathLike,
    *,
    data: DataConfig | None = None,
    norm_stats: tuple[float, float] | None = None,
) -> TaskData:
    """Read an evaluation task. `data` (the pretraining data config) supplies the synthetic
    parameters and clip length, so a synthetic probe sees the same generated set, and the
    default for skip_bad_files. `norm_stats` replaces the stats ``frontend.norm`` resolves to."""
    data = data if data is not None else DataConfig(cache_dir=Path(cache_dir))
    if Path(data.cache_dir) != Path(cache_dir):
        data = data.model_copy(update={"cache_dir": Path(cache_dir)})
    spec = TASK_SPECS[task.task]
    skip = task.skip_bad_files if task.skip_bad_files is not None else data.skip_bad_files
    clip_seconds = task.clip_seconds or spec.clip_seconds
    source = _task_source(task, data, sample_rate, clip_seconds, skip)
    source = _validated(source, skip)
    target_frames = _task_frames(task, spec, frontend_cfg, sample_rate)
    name = task.name or task.task
    if task.task == "esc50":
        parts = {}
        for k in _esc50_folds(task):
            parts[f"fold{k}/train"] = [r for r in source.records if r.fold != k]
            parts[f"fold{k}/test"] = [r for r in source.records if r.fold == k]
    else:
        parts = {part: source.split(part) for part in ("train", "val", "test")}
    parts = {part: cap_records(records, task.max_clips) for part, records in parts.items()}
    stats = norm_stats
    if stats is None and not _stats_need_computing(frontend_cfg, source):
        stats = _norm_stats(frontend_cfg, source, sample_rate)  # missing stats fail before any caching
    cache = None
    if data.feature_cache:  # over the clips the parts use, so a max_clips check stays quick
        used = {id(r): r for records in parts.values() for r in records}
        raw = ClipDataset(list(used.values()), Frontend(frontend_cfg, sample_rate, None, target_frames),
                          num_classes=len(source.class_names), waves=source.waves, skip_bad_files=skip,
                          class_names=source.class_names, name=name)
        cache = build_feature_cache(raw, data.cache_dir, num_workers=data.num_workers)
    if stats is None and frontend_cfg.norm != "none":
        stats = _norm_stats(frontend_cfg, source, sample_rate, cache)
    frontend = Frontend(frontend_cfg, sample_rate, stats, target_frames)

    def dataset(part: str) -> ClipDataset:
        records = parts[part]
        return ClipDataset(records, frontend, num_classes=len(source.class_names),
                           multilabel=source.multilabel, class_names=source.class_names, train=False,
                           waves=source.waves, skip_bad_files=skip, name=f"{name}/{part}", skipped=source.skipped,
                           features=None if cache is None else cache.select(records))

    if task.task == "esc50":
        folds = [Fold(f"fold{k}", dataset(f"fold{k}/train"), None, dataset(f"fold{k}/test"))
                 for k in _esc50_folds(task)]
    else:
        folds = [Fold("fold1", dataset("train"), dataset("val") if parts["val"] else None, dataset("test"))]
    for fold in folds:
        for part in (fold.train, fold.test):
            if len(part) == 0:
                raise DatasetLayoutError(f"task {name}: {part.name} is empty (check the data layout and split lists)")
    return TaskData(name, len(source.class_names), source.multilabel, spec.metric, list(source.class_names), folds,
                    target_frames, clip_seconds or (data.clip_seconds if task.task == "synthetic" else None),
                    source.skipped)


def _task_source(task: EvalTask, data: DataConfig, sample_rate: int, clip_seconds: float | None, skip: bool) -> Source:
    kind = task.task
    if kind == "synthetic":
        return synthetic_source(data, sample_rate, clip_seconds or data.clip_seconds)
    if kind == "manifest":
        if task.manifest is None:
            raise DatasetLayoutError("task 'manifest' needs manifest: path/to/clips.csv (columns path,label[,split])")
        return manifest_source(task.manifest)
    if kind == "audioset":
        root = Path(task.root) if task.root is not None else None
        train = audioset_manifests(root, task.manifest, ("balanced_train_segments.csv",))
        test = audioset_manifests(root, task.test_manifest, ("eval_segments.csv",))
        clips = index_clips(root) if root is not None and any(m.suffix.lower() != ".json" for m in train + test) \
            else None
        train_source = audioset_source(train, root, skip, clips)
        test_source = audioset_source(test, root, skip, clips)
        records = [_with_split(r, "train") for r in train_source.records] + \
                  [_with_split(r, "test") for r in test_source.records]
        return Source("audioset", records, train_source.class_names, True, train_source.stats_location,
                      skipped=train_source.skipped + test_source.skipped)
    if task.root is None:
        raise DatasetLayoutError(f"task {kind!r} needs root: the dataset folder")
    if kind == "esc50":
        return esc50_source(task.root, task.esc10)
    if kind == "speechcommands":
        return speechcommands_source(task.root, task.classes, clip_seconds or 1.0)
    return folder_source(task.root)


def _with_split(record: ClipRecord, split: str) -> ClipRecord:
    return ClipRecord(record.path, record.labels, split, record.fold, record.wave_index, record.start,
                      record.duration, record.gain)


def _validated(source: Source, skip: bool) -> Source:
    report = validate_records(source.records, skip, what=f"{source.name} ({source.stats_location})")
    source.records = report.kept
    source.skipped += report.skipped
    return source


def _norm_stats(frontend_cfg: FrontendConfig, source: Source, sample_rate: int,
                cache: FeatureCache | None = None) -> tuple[float, float] | None:
    """Resolve ``frontend.norm`` for `source`. The synthetic set's stats.json is computed on
    first use (over its train split), like the set itself; real data needs ``ajepa-stats``.
    `cache` (a feature cache holding at least that train split) serves the log-mels."""
    stats_path = stats_file(source.stats_location)
    if _stats_need_computing(frontend_cfg, source):
        records = source.split("train")
        train = ClipDataset(records, Frontend(frontend_cfg, sample_rate, None),
                            num_classes=len(source.class_names), waves=source.waves,
                            class_names=source.class_names, name="synthetic/train",
                            features=None if cache is None else cache.select(records))
        mean, std, used = compute_norm_stats(train)
        write_norm_stats(stats_path, mean, std, fbank_settings(frontend_cfg, sample_rate), num_clips=used,
                         dataset_clips=len(train), data_kind="synthetic")
        log.info("synthetic: wrote normalisation stats mean=%.4f std=%.4f to %s", mean, std, stats_path)
    return resolve_norm_stats(frontend_cfg, source.stats_location, sample_rate)


def _stats_need_computing(frontend_cfg: FrontendConfig, source: Source) -> bool:
    """True when :func:`_norm_stats` would compute the synthetic set's stats (first use)."""
    return (frontend_cfg.norm == "dataset" and source.name == "synthetic"
            and not stats_file(source.stats_location).is_file())


def _esc50_folds(task: EvalTask) -> list[int]:
    folds = task.folds or [1, 2, 3, 4, 5]
    bad = [k for k in folds if k not in (1, 2, 3, 4, 5)]
    if bad:
        raise ValueError(f"ESC-50 folds are 1-5; got {bad} in the task's folds")
    return sorted(set(folds))


def _task_frames(task: EvalTask, spec: TaskSpec, frontend_cfg: FrontendConfig, sample_rate: int) -> int:
    if task.target_frames is not None:
        return task.target_frames
    if spec.target_frames is not None:
        return spec.target_frames
    if task.task in ("folder", "manifest") and task.clip_seconds is not None:
        frames = frames_for_samples(int(task.clip_seconds * sample_rate), sample_rate,
                                    frontend_cfg.frame_length_ms, frontend_cfg.frame_shift_ms)
        return max(16, int(math.ceil(frames / 16)) * 16)
    return frontend_cfg.target_frames


# --------------------------------------------------------------------------- pretraining


def pretrain_source(data: DataConfig) -> Source:
    """The records pretraining draws from (unvalidated): the train split of `data`.

    ESC-50 has no train split, only five CV folds; its pretraining set is all folds
    (any held-out fold would still leak into four of the five CV test folds).
    AudioSet defaults to ``unbalanced_train_segments.csv`` (2M) in the root, else
    ``balanced_train_segments.csv`` (20K).
    """
    kind = data.kind
    if kind == "synthetic":
        source = synthetic_source(data, data.sample_rate, data.clip_seconds)
    elif kind == "esc50":
        return esc50_source(data.root)  # type: ignore[arg-type]
    elif kind == "speechcommands":
        source = speechcommands_source(data.root, 35)  # type: ignore[arg-type]
    elif kind == "audioset":
        root = Path(data.root) if data.root is not None else None
        manifests = audioset_manifests(root, data.manifest,
                                       ("unbalanced_train_segments.csv", "balanced_train_segments.csv"))
        return audioset_source(manifests, root, data.skip_bad_files)
    elif kind == "manifest":
        records, class_names, multilabel = manifest_records(_manifest_path(data))
        source = Source("manifest", records, class_names, multilabel, pretrain_stats_location(data))
        if any(r.split for r in records):
            source.records = source.split("train")
        return source
    else:
        records, class_names = folder_records(data.root)  # type: ignore[arg-type]
        source = Source("folder", records, class_names, False, Path(data.root))  # type: ignore[arg-type]
        if any(r.split for r in records):
            source.records = source.split("train")
        return source
    source.records = source.split("train")
    return source


def pretrain_stats_location(data: DataConfig) -> Path:
    """Where the pretraining data's stats.json lives: the synthetic cache folder, the
    manifest's folder (kind manifest), else the data root (or a root-less AudioSet
    manifest's folder). ``ajepa-stats`` writes there and training reads there."""
    if data.kind == "synthetic":
        return synthetic_folder(data.synthetic, data.sample_rate, data.clip_seconds, data.cache_dir)
    if data.kind == "manifest":
        return _manifest_path(data).parent
    if data.root is not None:
        return Path(data.root)
    return Path(data.manifest).parent  # type: ignore[arg-type]


def _manifest_path(data: DataConfig) -> Path:
    """data.manifest, or data.root when that is the CSV itself."""
    if data.manifest is not None:
        return Path(data.manifest)
    if data.root is not None and Path(data.root).is_file():
        return Path(data.root)
    raise DatasetLayoutError(f"data.kind=manifest needs data.manifest: a CSV with header path,label[,split] "
                             f"(data.root={data.root} is not a file)")


def build_pretrain_dataset(cfg: TrainConfig, normalise: bool = True) -> ClipDataset:
    """The pretraining set: train split of ``cfg.data``, crops per ``data.crop`` (random by
    default), crop randomness seeded by ``cfg.seed``. ``normalise=False`` gives raw log-mel
    (what ``ajepa-stats`` averages). With ``data.feature_cache`` the clips' log-mels are
    cached first (see ``ajepa.data.feature_cache``), so the stats read them too."""
    data = cfg.data
    source = _validated(pretrain_source(data), data.skip_bad_files)
    source.stats_location = pretrain_stats_location(data)
    if not source.records:
        raise DatasetLayoutError(f"pretraining data ({data.kind}) has no clips in its train split")
    dataset = ClipDataset(source.records, Frontend(cfg.frontend, data.sample_rate, None),
                          num_classes=len(source.class_names), multilabel=source.multilabel,
                          class_names=source.class_names, train=data.crop == "random", waves=source.waves,
                          skip_bad_files=data.skip_bad_files, crop_seed=cfg.seed, name=f"pretrain/{source.name}",
                          skipped=source.skipped)
    stats = None
    if normalise and not _stats_need_computing(cfg.frontend, source):
        stats = _norm_stats(cfg.frontend, source, data.sample_rate)  # missing stats fail before any caching
    if data.feature_cache:
        dataset = dataset.with_features(build_feature_cache(dataset, data.cache_dir, num_workers=data.num_workers))
    if not normalise:
        return dataset
    if stats is None:
        stats = _norm_stats(cfg.frontend, source, data.sample_rate, dataset.features)
    return dataset._replace(frontend=Frontend(cfg.frontend, data.sample_rate, stats))
