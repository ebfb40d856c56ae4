"""Downstream tasks and pretraining data: the generic part, whatever the dataset.

:func:`build_task` turns a task config (a member of ``ajepa.config.EvalTask``) into a
:class:`TaskData` (train/val/test :class:`~ajepa.data.datasets.ClipDataset` per fold, all
centre-cropped); :func:`build_pretrain_dataset` turns ``cfg.data`` into the random-crop
pretraining set. What is particular to a dataset (its layout, splits, folds, clip length,
metric) lives in its module under ``ajepa/data/sources/``, looked up by the task's name.

Clip length and spectrogram length per task (the AST / Audio-MAE convention, so that
published normalisation stats and numbers stay comparable; every length is a multiple of
the 16-frame patch, which the raw frame counts 998/498/98 are not), from each module's spec:

======================  ========  =============  ======  =========
task                    clip      target_frames  metric  folds
======================  ========  =============  ======  =========
audioset (20K / 2M)     10 s      1024           mAP     1
esc50 (ESC-10 option)   5 s       512            acc     5 (CV)
speechcommands (35/12)  1 s       128            acc     1
synthetic               data's    pretraining's  acc     1
folder / manifest       any       pretraining's  acc     1
======================  ========  =============  ======  =========

A task's ``target_frames`` overrides the table; for folder/manifest a given
``clip_seconds`` sets the frames to that length rounded up to 16.
Normalisation follows ``frontend.norm``; with ``norm='dataset'`` each task reads the
stats.json beside its own data, unless the caller passes ``norm_stats`` (e.g. the
pretraining stats, to feed a frozen encoder what it saw in pretraining).

With ``data.feature_cache`` (the default) pretraining and task datasets read their clips'
log-mels from ``ajepa.data.feature_cache``, built here before the first item is served.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ajepa.audio.features import (
    Frontend,
    fbank_settings,
    frames_for_samples,
    resolve_norm_stats,
    stats_file,
    write_norm_stats,
)
from ajepa.config import DataConfig, FrontendConfig, TaskCommon, TrainConfig
from ajepa.data.datasets import ClipDataset, DatasetLayoutError, cap_records, validate_records
from ajepa.data.feature_cache import FeatureCache, build_feature_cache
from ajepa.data.sources import Source, TaskSpec, source_for

# The datasets' own names, kept importable from here (where they lived before one module each).
from ajepa.data.sources.audioset import audioset_source, index_clips, read_audioset_classes, segment_stems  # noqa: F401
from ajepa.data.sources.esc50 import ESC50_COLUMNS, esc50_source  # noqa: F401
from ajepa.data.sources.speechcommands import SPEECH_COMMANDS_10, SPEECH_COMMANDS_WORDS, speechcommands_source  # noqa: F401
from ajepa.data.sources.synthetic import synthetic_source  # noqa: F401
from ajepa.data.stats import compute_norm_stats

log = logging.getLogger("ajepa.data")


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


# --------------------------------------------------------------------------- evaluation tasks


def build_task(
    task: TaskCommon,
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
    dataset_source = source_for(task.task)
    spec = dataset_source.spec
    skip = task.skip_bad_files if task.skip_bad_files is not None else data.skip_bad_files
    clip_seconds = task.clip_seconds or spec.clip_seconds
    source = _validated(dataset_source.task_source(task, data, sample_rate, clip_seconds, skip), skip)
    target_frames = _task_frames(task, spec, frontend_cfg, sample_rate)
    name = task.name or task.task
    folds = {fold: {split: cap_records(records, task.max_clips) for split, records in splits.items()}
             for fold, splits in dataset_source.task_folds(task, source).items()}
    stats = norm_stats
    if stats is None and not _stats_need_computing(frontend_cfg, source):
        stats = _norm_stats(frontend_cfg, source, sample_rate)  # missing stats fail before any caching
    cache = None
    if data.feature_cache:  # over the clips the folds use, so a max_clips check stays quick
        used = {id(r): r for splits in folds.values() for records in splits.values() for r in records}
        raw = ClipDataset(list(used.values()), Frontend(frontend_cfg, sample_rate, None, target_frames),
                          num_classes=len(source.class_names), waves=source.waves, skip_bad_files=skip,
                          class_names=source.class_names, name=name)
        cache = build_feature_cache(raw, data.cache_dir, num_workers=data.num_workers)
        if cache is not None:  # clips that passed the header check but not decoding (e.g. NaN mid-file)
            source.skipped += int(np.count_nonzero(~cache.present))
    if stats is None and frontend_cfg.norm != "none":
        stats = _norm_stats(frontend_cfg, source, sample_rate, cache)
    frontend = Frontend(frontend_cfg, sample_rate, stats, target_frames)

    def dataset(records, part: str) -> ClipDataset:
        return ClipDataset(records, frontend, num_classes=len(source.class_names),
                           multilabel=source.multilabel, class_names=source.class_names, train=False,
                           waves=source.waves, skip_bad_files=skip, name=f"{name}/{part}", skipped=source.skipped,
                           features=None if cache is None else cache.select(records))

    built = []
    for fold_name, splits in folds.items():
        prefix = f"{fold_name}/" if spec.cross_validation else ""
        built.append(Fold(fold_name, dataset(splits["train"], f"{prefix}train"),
                          dataset(splits["val"], f"{prefix}val") if splits["val"] else None,
                          dataset(splits["test"], f"{prefix}test")))
    for fold in built:
        for part in (fold.train, fold.test):
            if len(part) == 0:
                raise DatasetLayoutError(f"task {name}: {part.name} is empty (check the data layout and split lists)")
    return TaskData(name, len(source.class_names), source.multilabel, spec.metric, list(source.class_names), built,
                    target_frames, clip_seconds or source.clip_seconds, source.skipped)


def _validated(source: Source, skip: bool) -> Source:
    report = validate_records(source.records, skip, what=f"{source.name} ({source.stats_location})")
    source.records = report.kept
    source.skipped += report.skipped
    return source


def _norm_stats(frontend_cfg: FrontendConfig, source: Source, sample_rate: int,
                cache: FeatureCache | None = None) -> tuple[float, float] | None:
    """Resolve ``frontend.norm`` for `source`. Generated data (the synthetic set) has its
    stats.json computed on first use (over its train split), like the set itself; real data
    needs ``ajepa-stats``. `cache` (a feature cache holding at least that train split)
    serves the log-mels."""
    stats_path = stats_file(source.stats_location)
    if _stats_need_computing(frontend_cfg, source):
        records = source.split("train")
        train = ClipDataset(records, Frontend(frontend_cfg, sample_rate, None),
                            num_classes=len(source.class_names), waves=source.waves,
                            class_names=source.class_names, name=f"{source.name}/train",
                            features=None if cache is None else cache.select(records))
        mean, std, used = compute_norm_stats(train)
        write_norm_stats(stats_path, mean, std, fbank_settings(frontend_cfg, sample_rate), num_clips=used,
                         dataset_clips=len(train), data_kind=source.name)
        log.info("%s: wrote normalisation stats mean=%.4f std=%.4f to %s", source.name, mean, std, stats_path)
    return resolve_norm_stats(frontend_cfg, source.stats_location, sample_rate)


def _stats_need_computing(frontend_cfg: FrontendConfig, source: Source) -> bool:
    """True when :func:`_norm_stats` would compute the source's stats (generated data, first use)."""
    return (frontend_cfg.norm == "dataset" and source.stats_on_first_use
            and not stats_file(source.stats_location).is_file())


def _task_frames(task: TaskCommon, spec: TaskSpec, frontend_cfg: FrontendConfig, sample_rate: int) -> int:
    if task.target_frames is not None:
        return task.target_frames
    if spec.target_frames is not None:
        return spec.target_frames
    if spec.frames_from_clip and task.clip_seconds is not None:
        frames = frames_for_samples(int(task.clip_seconds * sample_rate), sample_rate,
                                    frontend_cfg.frame_length_ms, frontend_cfg.frame_shift_ms)
        return max(16, int(math.ceil(frames / 16)) * 16)
    return frontend_cfg.target_frames


# --------------------------------------------------------------------------- pretraining


def pretrain_source(data: DataConfig) -> Source:
    """The records pretraining draws from (unvalidated): the train split of `data`, as its
    dataset module defines it (ESC-50: all five folds; AudioSet: the unbalanced list)."""
    return source_for(data.kind).pretrain_source(data)


def pretrain_stats_location(data: DataConfig) -> Path:
    """Where the pretraining data's stats.json lives (the synthetic cache folder, the
    manifest's folder, else the data root or a root-less AudioSet manifest's folder).
    ``ajepa-stats`` writes there and training reads there."""
    return source_for(data.kind).stats_location(data)


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
        if dataset.features is not None:  # passed the header check, failed decoding (e.g. NaN mid-file)
            dataset.skipped += int(np.count_nonzero(~dataset.features.present))
    if not normalise:
        return dataset
    if stats is None:
        stats = _norm_stats(cfg.frontend, source, data.sample_rate, dataset.features)
    return dataset._replace(frontend=Frontend(cfg.frontend, data.sample_rate, stats))


__all__ = ["Fold", "TaskData", "build_task", "build_pretrain_dataset", "pretrain_source", "pretrain_stats_location"]
