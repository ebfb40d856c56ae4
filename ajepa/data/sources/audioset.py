"""AudioSet (Gemmeke et al. 2017): 10 s YouTube clips, 527 classes, multi-label (mAP).

Read from AST / Audio-MAE JSON manifests or from the official ``*_segments.csv`` files
with the clips anywhere under a root, named the ways downloaders name them
(:func:`segment_stems`). Evaluation trains on ``balanced_train_segments.csv`` (20K) and
tests on ``eval_segments.csv``; pretraining defaults to ``unbalanced_train_segments.csv``
(2M) in the root, else the balanced list. Downloads always miss some clips: with
``skip_bad_files`` the missing ones are counted and skipped.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ajepa.audio.io import AUDIO_EXTENSIONS
from ajepa.config import AudioSetTask, DataConfig
from ajepa.data.datasets import ClipRecord, DatasetLayoutError
from ajepa.data.sources.base import DatasetSource, Source, TaskSpec, read_csv_rows, register

log = logging.getLogger("ajepa.data")

AUDIOSET_CLASS_INDEX = "class_labels_indices.csv"
EVAL_TRAIN_LISTS = ("balanced_train_segments.csv",)
EVAL_TEST_LISTS = ("eval_segments.csv",)
PRETRAIN_LISTS = ("unbalanced_train_segments.csv", "balanced_train_segments.csv")


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
    rows = read_csv_rows(path, ("index", "mid", "display_name"))
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
        raise DatasetLayoutError(
            f"{path}: expected JSON {{\"data\": [{{\"wav\": ..., \"labels\": ...}}]}} ({err})"
        ) from None
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
            if ext.lower() in AUDIO_EXTENSIONS and not name.startswith("."):
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



@register(AudioSetTask)
class AudioSet(DatasetSource):
    spec = TaskSpec(clip_seconds=10.0, target_frames=1024, metric="map")

    def task_source(self, task: AudioSetTask, data, sample_rate, clip_seconds, skip) -> Source:
        root = Path(task.root) if task.root is not None else None
        train = audioset_manifests(root, task.manifest, EVAL_TRAIN_LISTS)
        test = audioset_manifests(root, task.test_manifest, EVAL_TEST_LISTS)
        clips = index_clips(root) if root is not None and any(m.suffix.lower() != ".json" for m in train + test) \
            else None
        train_source = audioset_source(train, root, skip, clips)
        test_source = audioset_source(test, root, skip, clips)
        records = [replace(r, split="train") for r in train_source.records] + \
                  [replace(r, split="test") for r in test_source.records]
        return Source("audioset", records, train_source.class_names, True, train_source.stats_location,
                      skipped=train_source.skipped + test_source.skipped)

    def pretrain_source(self, data: DataConfig) -> Source:
        root = Path(data.root) if data.root is not None else None
        manifests = audioset_manifests(root, data.manifest, PRETRAIN_LISTS)
        return audioset_source(manifests, root, data.skip_bad_files)
