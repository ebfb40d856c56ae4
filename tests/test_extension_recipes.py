"""docs/ARCHITECTURE.md's "How to add": a masking strategy and a loss are one config type
plus one registered implementation each; nothing else in the library changes. (A toy
dataset is shown end to end in tests/test_data_sources.py.) The config types here stand
beside the unions instead of inside them, which is the only step a real addition adds:
one line in the union of ajepa/config.py."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ajepa.config import LossCommon, MaskCommon, TargetConfig
from ajepa.masks import MaskCollator
from ajepa.masks import strategies as strategies_module
from ajepa.masks.batch import MaskBatch
from ajepa.models import objectives


class EveryOtherColumnMask(MaskCommon):
    """Toy strategy: the odd time columns are one target block."""

    strategy: Literal["every_other_column"] = "every_other_column"


class EveryOtherColumnSampler(strategies_module.MaskSampler):
    nominal_ratio = 0.5

    def draw(self, rng, batch_size, progress):
        height, width = self.grid
        target = np.zeros((height, width), bool)
        target[:, 1::2] = True
        target = np.broadcast_to(target.reshape(1, -1), (batch_size, height * width)).copy()
        return MaskBatch(~target, labels=target.view(np.int8) - 1)


class HuberLoss(LossCommon):
    """Toy loss: torch's Huber loss with its own delta."""

    kind: Literal["huber"] = "huber"
    delta: float = 0.5


def test_a_toy_masking_strategy_is_one_type_and_one_registered_sampler(monkeypatch):
    monkeypatch.setattr(strategies_module, "STRATEGIES", dict(strategies_module.STRATEGIES))
    strategies_module.register("every_other_column")(EveryOtherColumnSampler)
    collate = MaskCollator(EveryOtherColumnMask(), (4, 6), seed=0, total_steps=10)
    batch = collate([(0, {"spec": torch.zeros(1, 64, 96)}) for _ in range(2)])
    columns = batch["target_idx"] % 6
    assert batch["target_idx"].shape == (2, 12) and bool((columns % 2 == 1).all())
    assert batch["context_idx"].shape == (2, 12) and batch["num_blocks"] == 1


def test_a_toy_loss_is_one_type_and_one_registry_entry(monkeypatch):
    monkeypatch.setitem(objectives.LOSSES, HuberLoss, lambda cfg: lambda p, t: F.huber_loss(p, t, delta=cfg.delta))
    pred, target = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    terms = objectives.JEPAObjective(HuberLoss(delta=0.25), TargetConfig())(
        pred, target, torch.randn(2, 5, 8), torch.randn(2, 8))
    torch.testing.assert_close(terms["loss"], F.huber_loss(pred, target, delta=0.25))
