"""Metrics against scikit-learn and hand-computed fold aggregation."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from ajepa.eval.metrics import (
    accuracy,
    aggregate_folds,
    average_precision,
    classification_metrics,
    fold_key,
    macro_f1,
    mean_average_precision,
    selection_score,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_equals_sklearn_macro_ap_on_classes_with_positives(seed):
    rng = np.random.default_rng(seed)
    targets = (rng.random((60, 12)) < 0.15).astype(int)
    targets[:, [2, 7]] = 0  # classes without any positive in this "test set"
    scores = np.round(rng.random((60, 12)), 1)  # rounding creates many ties
    present = targets.sum(0) > 0
    expected = average_precision_score(targets[:, present], scores[:, present], average="macro")
    assert mean_average_precision(targets, scores) == pytest.approx(expected, abs=1e-12)


def test_map_excludes_classes_without_positives_rather_than_scoring_them_zero():
    targets = np.array([[1, 0], [0, 0], [1, 0]])
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    assert mean_average_precision(targets, scores) == 1.0  # class 1 ignored, class 0 perfect


def test_average_precision_hand_computed():
    # ranking: pos, neg, pos -> precision at the positives 1 and 2/3 -> AP = (1 + 2/3) / 2
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(5 / 6)
    # all tied: one threshold, precision 2/3 at recall 1
    assert average_precision([1, 0, 1], [0.5, 0.5, 0.5]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no positive"):
        average_precision([0, 0], [0.1, 0.2])


def test_single_label_map_uses_one_hot_targets():
    labels = np.array([0, 1, 1, 2])
    scores = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    onehot = np.eye(3)[labels]
    assert mean_average_precision(labels, scores) == pytest.approx(average_precision_score(onehot, scores))


def test_accuracy_and_macro_f1_match_sklearn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, 200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 7, 200))  # class 6: predicted only
    scores = np.eye(7)[predictions]
    assert accuracy(labels, scores) == pytest.approx(np.mean(labels == predictions))
    assert macro_f1(labels, predictions) == pytest.approx(f1_score(labels, predictions, average="macro"))
    multi_t = (rng.random((50, 5)) < 0.3).astype(int)
    multi_p = (rng.random((50, 5)) < 0.3).astype(int)
    assert macro_f1(multi_t, multi_p) == pytest.approx(f1_score(multi_t, multi_p, average="macro"))


def test_classification_metrics_names():
    scores = np.array([[0.9, 0.1], [0.3, 0.7]])
    assert set(classification_metrics(np.array([0, 1]), scores, multilabel=False)) == {"acc", "map", "f1"}
    assert set(classification_metrics(np.array([[1, 0], [1, 1]]), scores, multilabel=True)) == {"map", "f1"}


def test_aggregate_folds_hand_computed():
    folds = [{"acc": 0.5, "f1": 0.4}, {"acc": 0.7, "f1": 0.6}, {"acc": 0.9, "f1": 0.5}]
    out = aggregate_folds("esc50", folds, ["fold1", "fold2", "fold4"])
    assert out["eval/esc50/fold4/acc"] == 0.9  # the fold's own number, not its position
    assert out["eval/esc50/acc"] == pytest.approx(0.7)
    assert out["eval/esc50/acc_std"] == pytest.approx(np.sqrt((0.04 + 0 + 0.04) / 3))  # population std
    assert out["eval/esc50/f1"] == pytest.approx(0.5)
    assert out["eval/esc50/f1_std"] == pytest.approx(np.sqrt(0.02 / 3))
    assert len(out) == 3 * 2 + 2 * 2


def test_aggregate_single_fold_has_zero_std_and_same_columns():
    out = aggregate_folds("spc", [{"acc": 0.8}], ["fold1"])
    assert out == {"eval/spc/fold1/acc": 0.8, "eval/spc/acc": 0.8, "eval/spc/acc_std": 0.0}


def test_aggregate_rejects_mismatched_folds():
    with pytest.raises(ValueError, match="fold 2"):
        aggregate_folds("t", [{"acc": 1.0}, {"map": 1.0}], ["1", "2"])
    with pytest.raises(ValueError, match="no fold"):
        aggregate_folds("t", [])


def test_fold_key():
    assert fold_key("fold3", 0) == "fold3"
    assert fold_key("2", 0) == "fold2"
    assert fold_key("test", 4) == "fold5"


@pytest.mark.parametrize("multilabel", [False, True])
def test_selection_score_is_the_full_metric(multilabel):
    rng = np.random.default_rng(5)
    scores = rng.random((40, 4))
    targets = (rng.random((40, 4)) < 0.4).astype(int) if multilabel else rng.integers(0, 4, 40)
    full = classification_metrics(targets, scores, multilabel)
    for metric in full:
        assert selection_score(metric, targets, scores, multilabel) == full[metric]
