import math

import pytest

from ajepa.train.schedules import ema_momentum_at, lr_at, weight_decay_at


def test_lr_warmup_then_cosine():
    assert lr_at(0, 100, 10, 1.0, 0.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0, 0.0) == pytest.approx(1.0)
    assert lr_at(10, 100, 10, 1.0, 0.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_weight_decay_constant_or_cosine():
    assert weight_decay_at(50, 100, 0.05, None) == 0.05
    assert weight_decay_at(0, 100, 0.04, 0.4) == pytest.approx(0.04)
    assert weight_decay_at(50, 100, 0.04, 0.4) == pytest.approx(0.22)
    assert weight_decay_at(100, 100, 0.04, 0.4) == pytest.approx(0.4)


def test_ema_linear_and_cosine():
    assert ema_momentum_at(0, 100, 0.996, 1.0) == pytest.approx(0.996)
    assert ema_momentum_at(50, 100, 0.996, 1.0) == pytest.approx(0.998)
    assert ema_momentum_at(100, 100, 0.996, 0.9999, "cosine") == pytest.approx(0.9999)
    assert ema_momentum_at(25, 100, 0.996, 1.0, "cosine") == pytest.approx(
        1.0 - 0.004 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    with pytest.raises(ValueError, match="linear"):
        ema_momentum_at(0, 10, 0.9, 1.0, "step")
