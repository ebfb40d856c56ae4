"""Evaluate an encoder on the configured downstream tasks: the Trainer's evaluator and the
functions behind ``ajepa-eval``.

- :func:`probe_encoder` / :func:`finetune_encoder`: one encoder, one built task -> metrics
  named ``eval/<task>/...`` (the helper for "pretrained beats random" comparisons).
- :func:`evaluate_task`: builds the task from an :class:`EvalTask` and runs its protocol.
- :func:`build_evaluator`: the callable the Trainer runs at the end of pretraining (and
  every ``eval.every_steps``); ``None`` when ``eval.tasks`` is empty.

Linear probes extract embeddings once per task: a clip that appears in several folds
(ESC-50: every clip is in one test fold and four training folds) is encoded once; with a
``shared`` dict (one per encoder state), also once across the tasks of one evaluation
(ESC-10 beside ESC-50, Speech Commands 12 beside 35).

Suites (``eval.suite``, ``ajepa-eval --suite``): a named group of tasks
(``ajepa.config.SUITES``) evaluated together; besides each task's metrics they report
``eval/suite/<name>/mean``, the mean of every task's main metric (acc or mAP) — see
:func:`evaluation_tasks` and :func:`suite_metrics`.

Per-clip test outcomes: :func:`probe_encoder` / :func:`finetune_encoder` fill an optional
``predictions`` list with one row per test clip (fold, clip id, true label, predicted label,
correct flag), :class:`TaskResult` carries them, and an evaluator built with
``predictions_dir`` writes them to ``<predictions_dir>/<task>.csv`` after every evaluation
(the sweep puts that folder in each trial's out_dir and logs it to MLflow). Clip ids are
the same clip in every trial of a sweep, so two encoders can be compared clip by clip
(``analysis.clips``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ajepa.config import EvalConfig, EvalTask, TrainConfig
from ajepa.data.feature_cache import file_digests
from ajepa.eval.embeddings import EmbeddingCache, Embeddings, encoder_fingerprint, extract_embeddings
from ajepa.eval.finetune import finetune_fold
from ajepa.eval.metrics import aggregate_folds
from ajepa.eval.probe import probe_fold
from ajepa.io_utils import atomic_open

SPLITS = ("train", "val", "test")


@dataclass
class FoldReport:
    """How one fold's test numbers were obtained (the selection never used test)."""

    name: str
    metrics: dict[str, float]
    selection: dict[str, Any]


@dataclass
class TaskResult:
    """Aggregated ``eval/<task>/...`` metrics plus per-fold details and per-clip test outcomes."""

    task: str
    protocol: str
    metrics: dict[str, float]
    folds: list[FoldReport] = field(default_factory=list)
    seconds: float = 0.0
    predictions: list[dict[str, Any]] = field(default_factory=list)  # PREDICTION_COLUMNS per test clip
    metric: str = ""  # the task's main metric (acc or map): eval/<task>/<metric> enters a suite's mean


# --------------------------------------------------------------------------- per-clip test outcomes

PREDICTION_COLUMNS = ("fold", "clip", "label", "prediction", "correct")


def clip_ids(dataset: Dataset, root: str | None = None) -> list[str]:
    """A name per item of ``dataset`` that means the same clip in every trial of a sweep.

    Files: the path relative to ``root`` (default: the folder all of the dataset's files
    share), with ``@<start>`` for a slice that does not start at 0; rows of an in-memory
    set (the synthetic data): ``wave<row>``; datasets without records: the item index.
    """
    records = getattr(dataset, "records", None)
    if records is None:
        return [str(i) for i in range(len(dataset))]
    items = [records[i] for i in range(len(dataset))]
    if root is None:
        root = common_folder(r.path for r in items)
    out = []
    for i, record in enumerate(items):
        if record.path is not None:
            name = os.path.relpath(record.path, root) if root else record.path
        elif record.wave_index >= 0:
            name = f"wave{record.wave_index}"
        else:
            name = str(i)
        if record.start:
            name += f"@{record.start:g}"
        out.append(name)
    return out


def common_folder(paths) -> str | None:
    """The deepest folder holding every path (None without file paths)."""
    folders = {os.path.dirname(os.path.abspath(p)) for p in paths if p is not None}
    if not folders:
        return None
    try:
        return os.path.commonpath(sorted(folders))
    except ValueError:  # different drives
        return None


def _label_text(label) -> str:
    label = np.asarray(label)
    if label.ndim == 0:
        return str(int(label))
    return ";".join(str(int(c)) for c in np.flatnonzero(label))  # multi-hot -> class indices


def prediction_rows(fold_name: str, dataset: Dataset, labels, predictions, index=None,
                    root: str | None = None) -> list[dict[str, Any]]:
    """One row per test clip: ``fold, clip, label, prediction, correct``.

    ``labels``/``predictions``: class indices (single-label; ``correct`` is 1 or 0) or
    multi-hot rows (multi-label: ``;``-joined class indices, ``correct`` is empty since
    accuracy has no agreed meaning there). ``index``: each row's item index in ``dataset``
    (default: dataset order).
    """
    names = clip_ids(dataset, root)
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    positions = np.arange(len(labels)) if index is None else np.asarray(index)
    rows = []
    for j, position in enumerate(positions):
        single = labels.ndim == 1
        rows.append({"fold": str(fold_name), "clip": names[int(position)], "label": _label_text(labels[j]),
                     "prediction": _label_text(predictions[j]),
                     "correct": int(labels[j] == predictions[j]) if single else ""})
    return rows


def task_clip_root(task_data) -> str | None:
    """One folder for the clip ids of every test split of a task (ids do not depend on the fold)."""
    paths = []
    for fold in task_data.folds:
        records = getattr(fold.test, "records", None)
        if records is not None:
            paths += [records.path(i) for i in range(len(records))]
    return common_folder(paths)


def write_predictions(path: str | Path, rows: list[dict[str, Any]], step: int | None = None) -> Path:
    """Write prediction rows as CSV (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = (["step"] if step is not None else []) + list(PREDICTION_COLUMNS)
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({**({"step": step} if step is not None else {}), **row})
    return path


def task_prefix(task: EvalTask | None, task_data: Any = None) -> str:
    """Metric prefix: the EvalTask's ``name``, else its kind, else the built task's name."""
    if task is not None:
        return task.name or task.task
    return str(getattr(task_data, "name", "task"))


def fold_seed(seed: int, position: int) -> int:
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, position, 0xE7A1]).generate_state(1)[0])


# --------------------------------------------------------------------------- embeddings


def clip_key(dataset: Dataset, i: int, stable: bool = False):
    """What makes item ``i`` of ``dataset`` the same clip as an item of another dataset.

    Works for ``ajepa.data.datasets.ClipDataset`` (file or wave row, slice, gain, crop mode,
    frontend); other datasets return None (no sharing across folds, still correct).
    ``stable=True`` gives a key that means the same in another process (for the disk
    cache): in-memory waves are then named by their ``.npy`` path, if any.
    """
    records = getattr(dataset, "records", None)
    frontend = getattr(dataset, "frontend", None)
    if records is None or frontend is None:
        return None
    record = records[i]
    if record.path is not None:
        source = record.path
    else:
        waves = getattr(dataset, "waves", None)
        owner = getattr(waves, "path", None) if stable else id(waves)
        source = ("wave", owner, record.wave_index)
    return (source, record.start, record.duration, record.gain, bool(getattr(dataset, "train", False)),
            repr(frontend))


class _Picks(Dataset):
    """Items ``(dataset, i)`` gathered from several datasets into one extraction pass."""

    def __init__(self, picks: list[tuple[Dataset, int]]):
        self.picks = picks

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, j: int) -> dict:
        dataset, i = self.picks[j]
        return dataset[i]


def _split_datasets(task_data) -> list[tuple[str, str, Dataset]]:
    out = []
    for fold in task_data.folds:
        for split in SPLITS:
            dataset = getattr(fold, split)
            if dataset is not None:
                out.append((str(fold.name), split, dataset))
    return out


def task_data_key(task_data, task: EvalTask | None = None, digest_folder: Path | None = None) -> str | None:
    """Fingerprint of the task's clips for the disk cache: each clip's source, slice and
    frontend, and the *content* of every file behind them (so audio rewritten in place,
    even at the same path and size, is evaluated afresh). File digests are memoised under
    ``digest_folder`` by size and mtime, as the feature cache does, so a warm key costs a
    ``stat`` per file.

    None when some clip cannot be named across processes (a dataset type without
    records, or in-memory waves without a file) or a file cannot be read: such tasks are
    never cached on disk, since a stale hit would silently evaluate other data.
    """
    digest = hashlib.sha1()
    if task is not None:
        digest.update(json.dumps(task.model_dump(mode="json"), sort_keys=True).encode())
    files = set()
    for fold_name, split, dataset in _split_datasets(task_data):
        keys = [clip_key(dataset, i, stable=True) for i in range(len(dataset))]
        if any(k is None or (isinstance(k[0], tuple) and k[0][1] is None) for k in keys):
            return None
        files |= {k[0] if isinstance(k[0], str) else k[0][1] for k in keys}
        digest.update(f"{fold_name}/{split}/{len(dataset)}".encode())
        digest.update(repr(keys).encode())
    contents, errors = file_digests(sorted(map(str, files)), digest_folder)
    if errors:
        return None
    for path in sorted(contents):
        digest.update(path.encode("utf-8", "surrogateescape") + contents[path])
    return digest.hexdigest()


def embed_task(
    encoder: torch.nn.Module, task_data, eval_cfg: EvalConfig, device: torch.device | str | None = None,
    shared: dict | None = None,
) -> dict[tuple[str, str], Embeddings]:
    """``{(fold name, split): Embeddings}`` with every distinct clip encoded once.

    ``shared``: clip key -> pooled features, filled and read across the tasks of one
    evaluation of one encoder state (never across encoder updates: the caller makes a new
    dict per evaluation), so a clip two tasks read alike is encoded once."""
    splits = _split_datasets(task_data)
    picks: list[tuple[Dataset, int]] = []
    keys: list[Any] = []
    where: dict[Any, int] = {}
    rows: dict[tuple[str, str], list[int]] = {}
    for fold_name, split, dataset in splits:
        positions = []
        for i in range(len(dataset)):
            key = clip_key(dataset, i)
            key = key if key is not None else (id(dataset), i)
            if key not in where:
                where[key] = len(picks)
                picks.append((dataset, i))
                keys.append(key)
            positions.append(where[key])
        rows[(fold_name, split)] = positions
    probe = eval_cfg.probe
    if shared is None:
        everything = extract_embeddings(encoder, _Picks(picks), probe.pooling, probe.avg_last_k,
                                        eval_cfg.batch_size, device, probe.input)
    else:
        everything = _embed_with_shared(encoder, picks, keys, eval_cfg, device, shared)
    out = {}
    for (fold_name, split), positions in rows.items():
        part = everything.take(np.asarray(positions, dtype=np.int64))
        # The item's own index within its split dataset, as the interface defines it.
        part.index = np.arange(len(positions), dtype=np.int64)
        out[(fold_name, split)] = part
    return out


def _embed_with_shared(encoder, picks: list[tuple[Dataset, int]], keys: list[Any], eval_cfg: EvalConfig,
                       device, shared: dict) -> Embeddings:
    """Embeddings of ``picks``, encoding only clips whose key ``shared`` lacks (then adding them).
    Labels always come from this task's own datasets: tasks sharing a clip differ in classes."""
    todo = [j for j, key in enumerate(keys) if key not in shared]
    if todo:
        probe = eval_cfg.probe
        fresh = extract_embeddings(encoder, _Picks([picks[j] for j in todo]), probe.pooling, probe.avg_last_k,
                                   eval_cfg.batch_size, device, probe.input)
        for row, j in enumerate(todo):
            if isinstance(keys[j][0], (str, tuple)):  # a real clip key, not a (dataset id, i) stand-in
                shared[keys[j]] = fresh.features[row]
        found = {j: fresh.features[row] for row, j in enumerate(todo)}
    else:
        found = {}
    features = np.stack([found[j] if j in found else shared[keys[j]] for j in range(len(picks))])
    labels_of: dict[int, np.ndarray] = {}
    labels = []
    for dataset, i in picks:
        if id(dataset) not in labels_of:
            labels_of[id(dataset)] = np.asarray(dataset.labels)
        labels.append(labels_of[id(dataset)][i])
    return Embeddings(features, np.stack(labels), np.arange(len(picks), dtype=np.int64))


def cached_task_embeddings(
    encoder: torch.nn.Module, task_data, eval_cfg: EvalConfig, cache: EmbeddingCache | None,
    task: EvalTask | None = None, device: torch.device | str | None = None, shared: dict | None = None,
) -> dict[tuple[str, str], Embeddings]:
    """:func:`embed_task`, read from / written to ``cache`` when one is given."""
    data_key = (None if cache is None or cache.folder is None
                else task_data_key(task_data, task, cache.folder / "digests"))
    if data_key is None:
        return embed_task(encoder, task_data, eval_cfg, device, shared)
    key = EmbeddingCache.key(encoder_fingerprint(encoder), data_key, eval_cfg.probe.pooling,
                             eval_cfg.probe.avg_last_k, eval_cfg.probe.input)
    stored = cache.load(key)
    splits = [(f, s) for f, s, _ in _split_datasets(task_data)]
    if stored is not None and stored.index.shape[0] == len(splits) + 1:
        # Packed layout: offsets of each (fold, split) block live in `index`.
        offsets = stored.index
        return {fs: Embeddings(stored.features[offsets[j]:offsets[j + 1]], stored.labels[offsets[j]:offsets[j + 1]],
                               np.arange(offsets[j + 1] - offsets[j], dtype=np.int64))
                for j, fs in enumerate(splits)}
    out = embed_task(encoder, task_data, eval_cfg, device, shared)
    parts = [out[fs] for fs in splits]
    offsets = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
    packed = Embeddings(np.concatenate([p.features for p in parts]), np.concatenate([p.labels for p in parts]), offsets)
    cache.save(key, packed)
    return out


# --------------------------------------------------------------------------- protocols


def probe_encoder(
    encoder: torch.nn.Module, task_data, eval_cfg: EvalConfig, *, seed: int = 0, prefix: str | None = None,
    cache: EmbeddingCache | None = None, task: EvalTask | None = None, device: torch.device | str | None = None,
    details: list[FoldReport] | None = None, predictions: list[dict[str, Any]] | None = None,
    shared: dict | None = None,
) -> dict[str, float]:
    """Linear-probe metrics ``eval/<prefix>/...`` of a frozen encoder on a built task.

    ``details``, when a list is given, receives one :class:`FoldReport` per fold;
    ``predictions`` one row per test clip (:func:`prediction_rows`); ``shared`` as in
    :func:`embed_task`.
    """
    prefix = prefix or task_prefix(task, task_data)
    embeddings = cached_task_embeddings(encoder, task_data, eval_cfg, cache, task, device, shared)
    root = task_clip_root(task_data) if predictions is not None else None
    per_fold, names = [], []
    for position, fold in enumerate(task_data.folds):
        name = str(fold.name)
        result = probe_fold(
            embeddings[(name, "train")], embeddings.get((name, "val")), embeddings[(name, "test")],
            task_data.num_classes, task_data.multilabel, task_data.metric, eval_cfg.probe,
            fold_seed(seed, position), train_groups=getattr(fold.train, "groups", None),
        )
        per_fold.append(result.metrics)
        names.append(name)
        if predictions is not None and result.test_predictions is not None:
            predictions += prediction_rows(name, fold.test, result.test_labels, result.test_predictions,
                                           result.test_index, root)
        if details is not None:
            selection = {"l2": result.l2, f"val_{task_data.metric}": result.val_score,
                         "val_scores": {str(k): v for k, v in result.val_scores.items()}}
            if result.epochs is not None:
                selection["epochs"] = result.epochs
            details.append(FoldReport(name, result.metrics, selection))
    return aggregate_folds(prefix, per_fold, names)


def finetune_encoder(
    encoder: torch.nn.Module, task_data, eval_cfg: EvalConfig, *, seed: int = 0, prefix: str | None = None,
    task: EvalTask | None = None, device: torch.device | str | None = None,
    details: list[FoldReport] | None = None, predictions: list[dict[str, Any]] | None = None,
) -> dict[str, float]:
    """Fine-tuning metrics ``eval/<prefix>/...``; each fold fine-tunes its own copy of ``encoder``.

    ``details`` and ``predictions`` as in :func:`probe_encoder`.
    """
    prefix = prefix or task_prefix(task, task_data)
    root = task_clip_root(task_data) if predictions is not None else None
    per_fold, names = [], []
    for position, fold in enumerate(task_data.folds):
        result = finetune_fold(
            encoder, fold.train, fold.val, fold.test, task_data.num_classes, task_data.multilabel,
            task_data.metric, eval_cfg.finetune, fold_seed(seed, position), eval_cfg.batch_size, device,
        )
        per_fold.append(result.metrics)
        names.append(str(fold.name))
        if predictions is not None and result.test_predictions is not None:
            predictions += prediction_rows(str(fold.name), fold.test, result.test_labels, result.test_predictions,
                                           root=root)
        if details is not None:
            details.append(FoldReport(str(fold.name), result.metrics, {
                "best_epoch": result.best_epoch, f"val_{task_data.metric}": result.val_score,
                "val_history": result.val_history,
            }))
    return aggregate_folds(prefix, per_fold, names)


# --------------------------------------------------------------------------- tasks


def build_task_data(task: EvalTask, cfg: TrainConfig):
    """The datasets of ``task`` under the pretraining frontend (``ajepa.data.tasks.build_task``).

    The pretraining data config is passed along, so a synthetic task is the very set the
    encoder was pretrained on (its held-out splits), generated with the same parameters.
    """
    from ajepa.data.tasks import build_task

    return build_task(task, cfg.frontend, cfg.data.sample_rate, cfg.data.cache_dir, data=cfg.data)


def default_cache(cfg: TrainConfig) -> EmbeddingCache:
    folder = cfg.eval.cache_dir if cfg.eval.cache_dir is not None else Path(cfg.data.cache_dir) / "embeddings"
    return EmbeddingCache(folder if cfg.eval.probe.cache else None)


def evaluate_task(
    encoder: torch.nn.Module, task: EvalTask, cfg: TrainConfig, *, task_data=None,
    cache: EmbeddingCache | None = None, device: torch.device | str | None = None, shared: dict | None = None,
) -> TaskResult:
    """Run ``task.protocol`` on ``task`` (built from ``cfg`` unless ``task_data`` is given);
    ``shared`` (linear probes) as in :func:`embed_task`."""
    started = time.perf_counter()
    if task_data is None:
        task_data = build_task_data(task, cfg)
    seed = cfg.eval.seed if cfg.eval.seed is not None else cfg.seed
    folds: list[FoldReport] = []
    rows: list[dict[str, Any]] = []
    if task.protocol == "linear":
        metrics = probe_encoder(encoder, task_data, cfg.eval, seed=seed, cache=cache, task=task, device=device,
                                details=folds, predictions=rows, shared=shared)
    elif task.protocol == "finetune":
        metrics = finetune_encoder(encoder, task_data, cfg.eval, seed=seed, task=task, device=device, details=folds,
                                   predictions=rows)
    else:
        raise ValueError(f"unknown eval protocol {task.protocol!r}: choose linear or finetune")
    return TaskResult(task_prefix(task, task_data), task.protocol, metrics, folds, time.perf_counter() - started,
                      predictions=rows, metric=task_data.metric)


# --------------------------------------------------------------------------- suites


def evaluation_tasks(eval_cfg: EvalConfig) -> list[EvalTask]:
    """``eval.tasks`` followed by the tasks of ``eval.suite`` (if any) that are not already
    listed: a suite task equal to a listed one is evaluated once and counts for both.
    Metric prefixes must stay distinct (a listed task of the same name but other settings
    is refused by :func:`build_evaluator`: give one of them a ``name``)."""
    tasks = list(eval_cfg.tasks)
    if eval_cfg.suite is not None:
        tasks += [t for t in eval_cfg.suite.tasks() if t not in tasks]
    return tasks


def suite_metrics(name: str, results: list[TaskResult]) -> dict[str, float]:
    """``eval/suite/<name>/mean``: the unweighted mean over the suite's tasks of each task's
    main metric (``eval/<task>/acc`` or ``/map``, itself a mean over folds for CV tasks)."""
    scores = [r.metrics[f"eval/{r.task}/{r.metric}"] for r in results]
    return {f"eval/suite/{name}/mean": float(np.mean(scores))} if scores else {}


def build_evaluator(
    cfg: TrainConfig, predictions_dir: str | Path | None = None,
) -> Callable[[dict[str, torch.nn.Module], int], dict[str, float]] | None:
    """The Trainer's evaluator: ``evaluator({"target": enc, "context": enc}, step) -> metrics``.

    Tasks are built on the first call and kept. Embeddings stay in memory (the encoder
    changes between calls, so a disk cache would never be hit). The global RNG is forked,
    so evaluating mid-run does not change the rest of pretraining. With ``predictions_dir``
    every evaluation (re)writes ``<predictions_dir>/<task>.csv``: the per-clip test outcome
    of the latest evaluation, with its step.
    """
    tasks = evaluation_tasks(cfg.eval)
    if not tasks:
        return None
    suite_names = set() if cfg.eval.suite is None else {task_prefix(t) for t in cfg.eval.suite.tasks()}
    names = [task_prefix(t) for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"eval.tasks: metric prefixes {duplicates} repeat; give each task a distinct `name`"
        )
    built: dict[int, Any] = {}

    def evaluator(encoders: dict[str, torch.nn.Module], step: int) -> dict[str, float]:
        which = cfg.eval.encoder
        if which not in encoders:
            raise KeyError(f"eval.encoder={which!r} but the Trainer passed only {sorted(encoders)}")
        encoder = encoders[which]
        device = next(encoder.parameters()).device
        metrics: dict[str, float] = {}
        shared: dict = {}  # this encoder state's embeddings, shared across tasks
        in_suite = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for position, task in enumerate(tasks):
                if position not in built:
                    built[position] = build_task_data(task, cfg)
                result = evaluate_task(encoder, task, cfg, task_data=built[position], device=device, shared=shared)
                metrics.update(result.metrics)
                if result.task in suite_names:
                    in_suite.append(result)
                if predictions_dir is not None and result.predictions:
                    write_predictions(Path(predictions_dir) / f"{result.task}.csv", result.predictions, step)
        if cfg.eval.suite is not None:
            metrics.update(suite_metrics(cfg.eval.suite.name, in_suite))
        return metrics

    return evaluator


__all__ = [
    "FoldReport", "PREDICTION_COLUMNS", "TaskResult", "build_evaluator", "clip_ids", "prediction_rows",
    "write_predictions", "build_task_data", "embed_task", "evaluate_task",
    "finetune_encoder", "probe_encoder", "task_prefix", "default_cache", "cached_task_embeddings",
    "evaluation_tasks", "suite_metrics",
]
