"""Evaluation metrics and fold aggregation, in plain numpy (no torch, no scikit-learn).

Conventions, chosen so that numbers compare with published ones:

- ``accuracy``: share of clips whose arg-max score is the true class.
- ``mean_average_precision``: per-class average precision exactly as scikit-learn's
  ``average_precision_score`` computes it (step-wise sum ``sum_k (R_k - R_{k-1}) P_k`` over
  the distinct score thresholds, no interpolation; tied scores form one threshold), then
  the unweighted mean over classes. **Classes with no positive clip in the evaluated set
  are excluded** from the mean: their AP is undefined (recall has no denominator).
  scikit-learn warns and scores such a class 0 (pulling the mean down by an amount that
  depends on how many classes a small test split happens to miss); AudioSet evaluation
  code (AST, Audio-MAE) ignores them, which is what we do. With this convention the value
  equals ``average_precision_score(y[:, keep], s[:, keep], average="macro")``.
- ``macro_f1``: F1 per class, unweighted mean over the classes that occur in the truth or
  in the predictions (scikit-learn's default label set for ``average="macro"``).
  Single-label predictions are the arg-max; multi-label predictions are
  ``probability >= 0.5``.
- Fold aggregation: ``eval/<task>/fold<k>/<metric>`` per fold, ``eval/<task>/<metric>``
  = mean over folds, ``eval/<task>/<metric>_std`` = population standard deviation over
  folds (``ddof=0``; 0.0 for a one-fold task, so every task has the same columns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def one_hot(labels, num_classes: int) -> np.ndarray:
    labels = _as_numpy(labels).astype(np.int64)
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float64)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def accuracy(labels, scores) -> float:
    """labels ``[N]`` class indices, scores ``[N, C]`` -> share of correct arg-max."""
    labels, scores = _as_numpy(labels), _as_numpy(scores)
    if labels.shape[0] == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float((scores.argmax(1) == labels).mean())


def average_precision(targets, scores) -> float:
    """AP of one class: binary targets ``[N]``, scores ``[N]`` (higher = more positive).

    Raises ValueError when there is no positive, where AP is undefined.
    """
    targets, scores = _as_numpy(targets).astype(bool), _as_numpy(scores).astype(np.float64)
    positives = int(targets.sum())
    if positives == 0:
        raise ValueError("average precision is undefined for a class with no positive")
    order = np.argsort(-scores, kind="mergesort")
    scores, targets = scores[order], targets[order]
    # The last position of each run of tied scores is one threshold.
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_pos = np.cumsum(targets)[last_of_tie]
    predicted_pos = last_of_tie + 1
    precision = true_pos / predicted_pos
    recall_gain = np.diff(np.r_[0, true_pos]) / positives
    return float((recall_gain * precision).sum())


def mean_average_precision(targets, scores) -> float:
    """Macro mAP over classes with at least one positive; targets ``[N, C]`` multi-hot.

    A ``[N]`` integer label vector is accepted too (single-label tasks: one-hot).
    """
    scores = _as_numpy(scores)
    targets = _as_numpy(targets)
    if targets.ndim == 1:
        targets = one_hot(targets, scores.shape[1])
    present = np.flatnonzero(targets.sum(0) > 0)
    if present.size == 0:
        raise ValueError("mAP is undefined: no class has a positive clip in this set")
    return float(np.mean([average_precision(targets[:, c], scores[:, c]) for c in present]))


def macro_f1(targets, predictions) -> float:
    """Macro F1 over the classes present in the truth or the predictions.

    Both arguments are ``[N]`` class indices (single-label) or ``[N, C]`` 0/1 (multi-label).
    """
    targets, predictions = _as_numpy(targets), _as_numpy(predictions)
    if targets.ndim == 1:
        num_classes = int(max(targets.max(initial=0), predictions.max(initial=0))) + 1
        targets, predictions = one_hot(targets, num_classes), one_hot(predictions, num_classes)
    targets, predictions = targets.astype(bool), predictions.astype(bool)
    true_pos = (targets & predictions).sum(0)
    support, predicted = targets.sum(0), predictions.sum(0)
    used = (support + predicted) > 0
    if not used.any():
        raise ValueError("F1 is undefined: no class occurs in the truth or the predictions")
    f1 = 2 * true_pos[used] / (support[used] + predicted[used])
    return float(f1.mean())


def classification_metrics(targets, scores, multilabel: bool) -> dict[str, float]:
    """All metrics of one evaluated set.

    Single-label: ``acc``, ``map`` (one-hot targets vs. scores), ``f1`` (arg-max).
    Multi-label: ``map`` and ``f1`` (``scores`` are probabilities, threshold 0.5); no
    accuracy, which has no agreed meaning there.
    """
    scores = _as_numpy(scores)
    targets = _as_numpy(targets)
    if multilabel:
        return {"map": mean_average_precision(targets, scores), "f1": macro_f1(targets, scores >= 0.5)}
    return {
        "acc": accuracy(targets, scores),
        "map": mean_average_precision(targets, scores),
        "f1": macro_f1(targets, scores.argmax(1)),
    }


def selection_score(metric: str, targets, scores, multilabel: bool) -> float:
    """Only the metric a selection needs (per epoch of a probe: mAP over 50 classes is not free)."""
    if metric == "acc" and not multilabel:
        return accuracy(targets, scores)
    if metric == "map":
        return mean_average_precision(targets, scores)
    return classification_metrics(targets, scores, multilabel)[metric]


def fold_key(fold_name: str, position: int) -> str:
    """``"fold3"`` for a fold called fold3 (or 3); ``fold<position+1>`` otherwise."""
    name = str(fold_name)
    if name.isdigit():
        return f"fold{int(name)}"
    if name.startswith("fold") and name[4:].isdigit():
        return f"fold{int(name[4:])}"
    return f"fold{position + 1}"


def aggregate_folds(task: str, per_fold: Sequence[Mapping[str, float]],
                    fold_names: Sequence[str] | None = None) -> dict[str, float]:
    """Per-fold metrics -> ``eval/<task>/...`` names: per fold, mean and std over folds.

    Every fold must report the same metrics; a mismatch means a bug upstream, so it fails.
    """
    if not per_fold:
        raise ValueError(f"task {task!r}: no fold was evaluated")
    names = list(fold_names) if fold_names is not None else [str(i + 1) for i in range(len(per_fold))]
    if len(names) != len(per_fold):
        raise ValueError(f"task {task!r}: {len(names)} fold names for {len(per_fold)} folds")
    metric_names = list(per_fold[0])
    out: dict[str, float] = {}
    for position, (name, metrics) in enumerate(zip(names, per_fold)):
        if set(metrics) != set(metric_names):
            raise ValueError(f"task {task!r}: fold {name} reports {sorted(metrics)}, expected {sorted(metric_names)}")
        for metric, value in metrics.items():
            out[f"eval/{task}/{fold_key(name, position)}/{metric}"] = float(value)
    for metric in metric_names:
        values = np.array([m[metric] for m in per_fold], dtype=np.float64)
        out[f"eval/{task}/{metric}"] = float(values.mean())
        out[f"eval/{task}/{metric}_std"] = float(values.std())
    return out


__all__ = [
    "accuracy", "average_precision", "mean_average_precision", "macro_f1", "classification_metrics",
    "aggregate_folds", "fold_key", "one_hot", "selection_score",
]
