"""Fine-tuning: layer-wise lr decay, augmentations, regularized masking, selection on validation."""

import numpy as np
import pytest
import torch

from ajepa.config import FinetuneConfig, RegularizedMasking
from ajepa.eval.finetune import (
    Classifier,
    finetune_fold,
    layer_decay_groups,
    layer_id,
    mixup,
    regularization_inputs,
    spec_augment,
)
from ajepa.models.vit import SpectrogramViT

GRID, PATCH = (2, 4), (8, 8)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a busy 2-core machine: thread hand-offs cost 20x the arithmetic."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_encoder(seed=0):
    torch.manual_seed(seed)
    return SpectrogramViT(GRID, PATCH, dim=16, depth=2, heads=2).eval()


class Bands(torch.utils.data.Dataset):
    """Class c lights up frequency band c: easy to learn in a few steps."""

    def __init__(self, n, seed, classes=3):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % classes
        self.spec = 0.3 * torch.randn(n, 1, 16, 32, generator=g)
        for i, c in enumerate(self.labels.tolist()):
            self.spec[i, 0, 5 * c: 5 * c + 4] += 2.0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"spec": self.spec[i], "label": self.labels[i], "index": i}


def test_layer_decay_scales():
    model = Classifier(tiny_encoder(), 3)
    assert layer_id("encoder.patch_embed.proj.weight", 2) == 0
    assert layer_id("encoder.blocks.1.attn.qkv.weight", 2) == 2
    assert layer_id("head.weight", 2) == 3
    groups = layer_decay_groups(model, weight_decay=0.05, layer_decay=0.5)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert scale_of[id(model.head.weight)] == 1.0
    assert scale_of[id(model.encoder.blocks[1].attn.qkv.weight)] == 0.5
    assert scale_of[id(model.encoder.patch_embed.proj.weight)] == 0.125
    assert decay_of[id(model.head.bias)] == 0.0 and decay_of[id(model.head.weight)] == 0.05
    assert len(scale_of) == sum(1 for _ in model.parameters())


@pytest.mark.parametrize("mode", ["attention", "drop", "zero"])
def test_regularization_hides_round_ratio_times_n_patches(mode):
    spec = torch.randn(3, 1, 16, 32) + 5.0
    out, keep_idx, key_keep = regularization_inputs(
        spec, GRID, PATCH, RegularizedMasking(mode=mode, ratio=0.25), torch.Generator().manual_seed(0))
    if mode == "attention":
        assert keep_idx is None and torch.equal(out, spec)
        assert key_keep.shape == (3, 8) and (~key_keep).sum(1).tolist() == [2, 2, 2]
    elif mode == "drop":
        assert key_keep is None and keep_idx.shape == (3, 6)
        assert torch.all(keep_idx[:, 1:] > keep_idx[:, :-1])  # sorted, distinct
    else:
        patches = out.reshape(3, 2, 8, 4, 8).permute(0, 1, 3, 2, 4).reshape(3, 8, 64)
        zeroed = (patches == 0).all(2)
        assert zeroed.sum(1).tolist() == [2, 2, 2]
        assert torch.equal(patches[~zeroed], spec.reshape(3, 2, 8, 4, 8).permute(0, 1, 3, 2, 4).reshape(3, 8, 64)[~zeroed])


def test_none_mode_and_zero_ratio_change_nothing():
    spec = torch.randn(2, 1, 16, 32)
    g = torch.Generator().manual_seed(0)
    for cfg in (RegularizedMasking(mode="none"), RegularizedMasking(mode="attention", ratio=0.0)):
        out, keep_idx, key_keep = regularization_inputs(spec, GRID, PATCH, cfg, g)
        assert out is spec and keep_idx is None and key_keep is None


def test_attention_mode_builds_hidden_patches_from_the_others_only():
    """Changing a hidden patch's input changes no other token's output (it is no key)."""
    encoder = tiny_encoder()
    spec = torch.randn(1, 1, 16, 32)
    key_keep = torch.ones(1, 8, dtype=torch.bool)
    key_keep[0, 5] = False
    changed = spec.clone()
    changed[0, 0, 8:16, 8:16] += 3.0  # patch (row 1, col 1) = index 5
    with torch.no_grad():
        a, b = encoder(spec, key_keep=key_keep), encoder(changed, key_keep=key_keep)
        c = encoder(changed)
    others = [i for i in range(8) if i != 5]
    assert torch.allclose(a[0, others], b[0, others], atol=1e-6)
    assert not torch.allclose(a[0, 5], b[0, 5])
    assert not torch.allclose(c[0, others], a[0, others], atol=1e-4)  # without the mask it leaks


def test_spec_augment_masks_within_the_limits():
    spec = torch.ones(8, 1, 16, 32)
    out = spec_augment(spec, 4, 6, torch.Generator().manual_seed(0))
    hidden_rows = (out == 0).all(3).sum(2).squeeze(1)
    hidden_cols = (out == 0).all(2).sum(2).squeeze(1)
    assert hidden_rows.max() <= 4 and hidden_cols.max() <= 6 and (out == 0).any()
    assert torch.equal(spec_augment(spec, 0, 0, torch.Generator()), spec)


def test_mixup_keeps_soft_targets_normalised():
    spec, targets = torch.randn(6, 1, 16, 32), torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    mixed, soft = mixup(spec, targets, 0.4, torch.Generator().manual_seed(0))
    assert torch.allclose(soft.sum(1), torch.ones(6)) and not torch.equal(mixed, spec)


def test_finetune_learns_and_leaves_the_callers_encoder_and_rng_alone():
    encoder = tiny_encoder()
    encoder.requires_grad_(False)  # like the EMA target encoder
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    rng_before = torch.get_rng_state()
    cfg = FinetuneConfig(epochs=4, batch_size=16, lr=3e-3, warmup_epochs=0.5, specaug_freq=2, specaug_time=4,
                         mixup=0.2, regularized_masking=RegularizedMasking(mode="attention", ratio=0.2))
    result = finetune_fold(encoder, Bands(90, 0), None, Bands(45, 1), 3, False, "acc", cfg, seed=0)
    assert result.metrics["acc"] > 0.7  # chance is 1/3
    assert 1 <= result.best_epoch <= 4 and len(result.val_history) == 4
    assert result.val_score == max(result.val_history)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert not any(p.requires_grad for p in encoder.parameters())
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_regularization_in_training_only_and_selection_ignores_test(monkeypatch):
    calls = []
    original = SpectrogramViT.forward

    def spy(self, spec, keep_idx=None, key_keep=None, num_layers_out=1):
        calls.append((self.training, key_keep is not None, spec.shape[0]))
        return original(self, spec, keep_idx, key_keep, num_layers_out)

    monkeypatch.setattr(SpectrogramViT, "forward", spy)
    cfg = FinetuneConfig(epochs=2, batch_size=16, regularized_masking=RegularizedMasking(mode="attention"))
    test = Bands(30, 1)
    first = finetune_fold(tiny_encoder(), Bands(60, 0), None, test, 3, False, "acc", cfg, seed=0)
    assert {masked for training, masked, _ in calls if training} == {True}
    assert {masked for training, masked, _ in calls if not training} == {False}
    wrong = Bands(30, 1)
    wrong.labels = (wrong.labels + 1) % 3
    second = finetune_fold(tiny_encoder(), Bands(60, 0), None, wrong, 3, False, "acc", cfg, seed=0)
    assert first.val_history == second.val_history and first.best_epoch == second.best_epoch
    assert first.metrics != second.metrics


def test_multilabel_finetune_reports_map():
    data = Bands(60, 0)
    multi = Bands(60, 0)
    multi.labels = torch.nn.functional.one_hot(data.labels, 3).float()
    multi.labels[::4, 0] = 1.0
    cfg = FinetuneConfig(epochs=1, batch_size=16, regularized_masking=RegularizedMasking(mode="drop"))
    result = finetune_fold(tiny_encoder(), multi, None, multi, 3, True, "map", cfg, seed=0)
    assert set(result.metrics) == {"map", "f1"} and np.isfinite(result.metrics["map"])
