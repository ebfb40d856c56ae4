"""Linear probe: solver correctness, validation carving, selection never on test."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ajepa.config import ProbeConfig
from ajepa.eval.embeddings import Embeddings
from ajepa.eval.probe import _loss_and_grad, fit_lbfgs, fit_sgd, probe_fold
from ajepa.eval.splits import carve_validation


def blobs(n, classes=5, dim=16, seed=0, spread=0.6, centers_seed=100):
    centers = np.random.default_rng(centers_seed).normal(size=(classes, dim))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    features = centers[labels] * spread + rng.normal(size=(n, dim))
    return Embeddings(features.astype(np.float32), labels, np.arange(n))


@pytest.mark.parametrize("multilabel", [False, True])
def test_analytic_gradient_matches_autograd(multilabel):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6)).astype(np.float32)
    classes = 4
    if multilabel:
        y = (rng.random((30, classes)) < 0.3).astype(np.float32)
    else:
        y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, 30)]
    params = rng.normal(size=6 * classes + classes)
    loss, grad = _loss_and_grad(params, x, y, classes, 0.05, multilabel)
    weight = torch.tensor(params[: 6 * classes].reshape(6, classes), requires_grad=True)
    bias = torch.tensor(params[6 * classes:], requires_grad=True)
    logits = torch.tensor(x, dtype=torch.float64) @ weight + bias
    target = torch.tensor(y, dtype=torch.float64)
    if multilabel:  # summed over classes, averaged over clips
        data = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).mean()
    else:
        data = F.cross_entropy(logits, target.argmax(1))
    reference = data + 0.05 * weight.pow(2).sum()
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-5)
    expected = np.concatenate([weight.grad.numpy().ravel(), bias.grad.numpy()])
    assert np.abs(grad - expected).max() < 1e-5


def test_lbfgs_reaches_the_sklearn_optimum():
    from sklearn.linear_model import LogisticRegression

    data = blobs(300, seed=1)
    l2 = 1e-2
    model = fit_lbfgs(data.features, data.labels, 5, False, l2, tol=1e-7)
    x = (data.features - model.mean) / model.std
    # sklearn minimises C * sum CE + ||W||^2 / 2  ==  N C * (mean CE + ||W||^2 / (2 N C))
    reference = LogisticRegression(C=1 / (2 * l2 * len(data)), tol=1e-10, max_iter=5000).fit(x, data.labels)
    ours = model.scores(data.features)
    assert np.abs(ours - reference.predict_proba(x)).max() < 2e-3


def test_multilabel_probe_is_one_logistic_regression_per_class():
    """BCE is summed over classes, so class c's weights equal a binary sklearn fit with the same l2."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    labels = (rng.random((200, 3)) < 0.3).astype(np.float32)
    features = (labels @ rng.normal(size=(3, 8)) + rng.normal(size=(200, 8))).astype(np.float32)
    l2 = 1e-2
    model = fit_lbfgs(features, labels, 3, True, l2, tol=1e-7)
    x = (features - model.mean) / model.std
    for c in range(3):
        reference = LogisticRegression(C=1 / (2 * l2 * 200), tol=1e-10, max_iter=5000).fit(x, labels[:, c])
        assert np.abs(model.weight[:, c].numpy() - reference.coef_[0]).max() < 1e-3


def test_more_dimensions_than_clips_is_solved_exactly_in_the_row_space():
    from sklearn.linear_model import LogisticRegression

    data = blobs(40, dim=120, seed=4)
    l2 = 3e-2
    model = fit_lbfgs(data.features, data.labels, 5, False, l2, tol=1e-7)
    x = (data.features - model.mean) / model.std
    reference = LogisticRegression(C=1 / (2 * l2 * len(data)), tol=1e-10, max_iter=5000).fit(x, data.labels)
    assert np.abs(model.scores(data.features) - reference.predict_proba(x)).max() < 2e-3
    assert np.abs(model.weight.numpy() - reference.coef_.T).max() < 0.05 * np.abs(reference.coef_).max()
    held_out = blobs(30, dim=120, seed=5)
    assert np.abs(model.scores(held_out.features) - reference.predict_proba(
        (held_out.features - model.mean) / model.std)).max() < 5e-3


def test_carve_validation_is_stratified_seeded_and_disjoint():
    labels = np.repeat(np.arange(4), [10, 10, 5, 1])
    train, val = carve_validation(labels, 0.2, seed=3)
    assert np.intersect1d(train, val).size == 0 and len(train) + len(val) == len(labels)
    assert [int((labels[val] == c).sum()) for c in range(4)] == [2, 2, 1, 0]  # a singleton class stays in train
    assert set(labels[train]) == {0, 1, 2, 3}
    again = carve_validation(labels, 0.2, seed=3)
    assert np.array_equal(again[1], val)
    assert not np.array_equal(carve_validation(labels, 0.2, seed=4)[1], val)
    multi = (np.random.default_rng(0).random((40, 3)) < 0.5)
    assert len(carve_validation(multi, 0.25, 0)[1]) == 10


def test_carve_validation_keeps_each_group_on_one_side():
    # 3 classes x 6 recordings x 3 clips each; clips of a recording are near-duplicates
    labels = np.repeat(np.arange(3), 18)
    groups = np.array([f"rec{i // 3}" for i in range(54)])
    train, val = carve_validation(labels, 0.2, seed=1, groups=groups)
    assert set(groups[train]).isdisjoint(groups[val])
    assert [int((labels[val] == c).sum()) for c in range(3)] == [6, 6, 6]  # 2 whole recordings of 6 per class
    assert np.array_equal(carve_validation(labels, 0.2, seed=1, groups=groups)[1], val)
    # every clip its own group is the ungrouped behaviour, draw for draw
    assert np.array_equal(carve_validation(labels, 0.2, 1, groups=np.arange(54))[1], carve_validation(labels, 0.2, 1)[1])
    # a class recorded once cannot give validation without leaking: it all stays in training
    one_recording = np.where(labels == 2, "rec-solo", groups)
    train, val = carve_validation(labels, 0.2, seed=1, groups=one_recording)
    assert not (labels[val] == 2).any() and (labels[train] == 2).sum() == 18


def test_carve_validation_fails_with_a_fix():
    with pytest.raises(ValueError, match="add data"):
        carve_validation(np.array([0]), 0.2, 0)
    with pytest.raises(ValueError, match="validation split"):
        carve_validation(np.array([0, 1, 2]), 0.2, 0)
    with pytest.raises(ValueError, match="two training groups"):
        carve_validation(np.array([0, 0, 1, 1]), 0.2, 0, groups=np.array(["a", "a", "b", "b"]))
    with pytest.raises(ValueError, match="two training groups"):  # multi-label, one recording
        carve_validation(np.ones((4, 2), bool), 0.2, 0, groups=np.array(["a"] * 4))


def test_probe_learns_blobs_and_selects_on_validation():
    train, test = blobs(400, seed=1), blobs(200, seed=2)
    result = probe_fold(train, None, test, 5, False, "acc", ProbeConfig(), seed=0)
    assert result.metrics["acc"] > 0.6  # chance is 0.2
    assert result.l2 in ProbeConfig().l2_grid
    assert set(result.val_scores) == set(ProbeConfig().l2_grid)
    assert result.val_score == max(result.val_scores.values())


def test_selection_ignores_the_test_split():
    """Scrambling test labels changes test metrics only: the chosen L2 and val scores stay."""
    train, test = blobs(300, seed=1), blobs(100, seed=2)
    scrambled = Embeddings(test.features, np.random.default_rng(0).permutation(test.labels), test.index)
    cfg = ProbeConfig(l2_grid=[1e-3, 1e-1, 10.0])
    a = probe_fold(train, None, test, 5, False, "acc", cfg)
    b = probe_fold(train, None, scrambled, 5, False, "acc", cfg)
    assert a.l2 == b.l2 and a.val_scores == b.val_scores
    assert a.metrics["acc"] != b.metrics["acc"]


def test_given_validation_split_is_used_instead_of_carving():
    train, val, test = blobs(200, seed=1), blobs(60, seed=3), blobs(60, seed=2)
    bad_val = Embeddings(val.features, (val.labels + 1) % 5, val.index)  # systematically wrong labels
    cfg = ProbeConfig(l2_grid=[1e-3, 1.0])
    good = probe_fold(train, val, test, 5, False, "acc", cfg)
    bad = probe_fold(train, bad_val, test, 5, False, "acc", cfg)
    assert good.val_score > 0.5 and bad.val_score < 0.3


def test_refit_uses_train_plus_val():
    train, test = blobs(100, seed=1), blobs(100, seed=2)
    refit = probe_fold(train, None, test, 5, False, "acc", ProbeConfig(l2_grid=[1e-2], refit=True))
    no_refit = probe_fold(train, None, test, 5, False, "acc", ProbeConfig(l2_grid=[1e-2], refit=False))
    assert refit.metrics != no_refit.metrics


def test_sgd_probe_agrees_with_lbfgs():
    train, test = blobs(400, seed=1), blobs(200, seed=2)
    cfg = ProbeConfig(l2_grid=[1e-3], sgd_epochs=30, sgd_patience=5, sgd_lr=1e-2)
    fast = probe_fold(train, None, test, 5, False, "acc", cfg)
    slow = probe_fold(train, None, test, 5, False, "acc", cfg.model_copy(update={"solver": "sgd"}))
    assert slow.epochs is not None and 1 <= slow.epochs <= 30
    assert abs(fast.metrics["acc"] - slow.metrics["acc"]) <= 0.05


def test_sgd_early_stopping_runs_patience_epochs_past_the_best(monkeypatch):
    import ajepa.eval.probe as probe

    evaluations = []
    original = probe.selection_score
    monkeypatch.setattr(probe, "selection_score",
                        lambda *a, **k: evaluations.append(1) or original(*a, **k))
    train = blobs(200, seed=1)
    split = carve_validation(train.labels, 0.2, 0)
    cfg = ProbeConfig(sgd_epochs=500, sgd_patience=3, sgd_lr=0.1)
    _, best_epoch, score = fit_sgd(train.features[split[0]], train.labels[split[0]], 5, False, 1e-3, cfg, 0,
                                   val=(train.features[split[1]], train.labels[split[1]]))
    assert len(evaluations) == best_epoch + 3 < 500  # one validation pass per epoch
    assert score > 0.5


def test_multilabel_probe_reports_map():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 4)) < 0.3).astype(np.float32)
    features = (labels @ rng.normal(size=(4, 12)) + 0.5 * rng.normal(size=(300, 12))).astype(np.float32)
    data = Embeddings(features, labels, np.arange(300))
    result = probe_fold(data.take(np.arange(200)), None, data.take(np.arange(200, 300)), 4, True, "map",
                        ProbeConfig())
    assert set(result.metrics) == {"map", "f1"} and result.metrics["map"] > 0.8


def test_empty_l2_grid_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="eval.probe.l2_grid"):
        probe_fold(blobs(50), None, blobs(20), 5, False, "acc", ProbeConfig(l2_grid=[]))
