"""Encoder, predictor, losses, target normalisations and EMA."""

import copy
from typing import get_args

import pytest
import torch
import torch.nn.functional as F

from ajepa.config import (
    LOSS_KINDS,
    ConfigError,
    CosineLoss,
    L1Loss,
    L2Loss,
    LossConfig,
    SmoothL1Loss,
    TargetConfig,
    load_config,
)
from ajepa.models import AJEPA
from ajepa.models.objectives import LOSSES, TARGET_NORMS, JEPAObjective, effective_rank, make_loss, variance_covariance
from ajepa.models.predictor import Predictor, block_attention_mask
from ajepa.models.vit import SpectrogramViT, adapt_to_grid, sincos_2d


@pytest.mark.parametrize("frames,grid", [(1024, (8, 64)), (512, (8, 32)), (100, (8, 6)), (208, (5, 13))])
def test_encoder_shapes_for_several_grids(frames, grid):
    bins = grid[0] * 16
    enc = SpectrogramViT(grid, dim=32, depth=2, heads=2)
    spec = torch.randn(2, 1, bins, frames)
    assert enc(spec).shape == (2, grid[0] * grid[1], 32)
    keep = torch.tensor([[0, 3, 5], [1, 2, grid[0] * grid[1] - 1]])
    assert enc(spec, keep_idx=keep).shape == (2, 3, 32)


def test_encoder_rejects_wrong_grid():
    enc = SpectrogramViT((8, 64), dim=32, depth=1, heads=2)
    with pytest.raises(ValueError, match="8x64 grid"):
        enc(torch.randn(1, 1, 128, 512))


def test_context_tokens_keep_their_positions():
    """Encoding a subset equals encoding with only those tokens: positions are added before selection."""
    torch.manual_seed(0)
    enc = SpectrogramViT((4, 4), dim=32, depth=1, heads=2).eval()
    spec = torch.randn(1, 1, 64, 64)
    keep = torch.tensor([[2, 7, 9]])
    tokens = enc.patch_embed(spec) + enc.pos_embed()
    expected = enc.norm(enc.blocks[0](tokens[:, [2, 7, 9]]))
    torch.testing.assert_close(enc(spec, keep_idx=keep), expected)


def test_key_mask_hides_tokens_from_attention():
    """A token nobody may attend to cannot influence the others' outputs."""
    torch.manual_seed(0)
    enc = SpectrogramViT((2, 4), dim=32, depth=2, heads=2).eval()
    spec = torch.randn(1, 1, 32, 64)
    keep = torch.ones(1, 8, dtype=torch.bool)
    keep[0, 5] = False
    out = enc(spec, key_keep=keep)
    spec2 = spec.clone()
    spec2[..., 16:32, 16:32] += 5.0  # patch (1, 1) = index 5
    out2 = enc(spec2, key_keep=keep)
    others = [i for i in range(8) if i != 5]
    torch.testing.assert_close(out[:, others], out2[:, others])
    assert not torch.allclose(enc(spec)[:, others], enc(spec2)[:, others])


def test_average_of_last_layers():
    torch.manual_seed(0)
    enc = SpectrogramViT((2, 2), dim=16, depth=3, heads=2).eval()
    spec = torch.randn(1, 1, 32, 32)
    x = enc.patch_embed(spec) + enc.pos_embed()
    outs = []
    for blk in enc.blocks:
        x = blk(x)
        outs.append(enc.norm(x))
    torch.testing.assert_close(enc(spec, num_layers_out=2), (outs[1] + outs[2]) / 2)


def test_sincos_table_distinguishes_rows_and_columns():
    table = sincos_2d((8, 6), 64)
    assert table.shape == (48, 64)
    assert torch.unique(table, dim=0).shape[0] == 48


def test_adapt_to_grid_learned_positions_keep_overlap():
    enc = SpectrogramViT((8, 64), dim=32, depth=1, heads=2, pos_embed="learned")
    small = adapt_to_grid(enc, (8, 32))
    old = enc.pos_embed.table.reshape(8, 64, 32)
    torch.testing.assert_close(small.pos_embed.table.reshape(8, 32, 32), old[:, :32])
    assert small(torch.randn(1, 1, 128, 512)).shape == (1, 256, 32)


def test_block_attention_mask():
    mask = block_attention_mask(2, torch.tensor([[0, 0, 1]]))[0, 0]
    expected = torch.tensor([
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 1],
    ], dtype=torch.bool)
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("attention", ["per_block", "shared_context"])
def test_predictor_blocks_are_independent(attention):
    """Block 1's prediction does not change when block 0's positions change."""
    torch.manual_seed(0)
    pred = Predictor((4, 4), encoder_dim=24, dim=16, depth=2, heads=2, attention=attention).eval()
    ctx = torch.randn(1, 3, 24)
    ctx_idx = torch.tensor([[0, 1, 2]])
    a = pred(ctx, ctx_idx, torch.tensor([[5, 6, 12]]), torch.tensor([[0, 0, 1]]), num_blocks=2)
    b = pred(ctx, ctx_idx, torch.tensor([[9, 10, 12]]), torch.tensor([[0, 0, 1]]), num_blocks=2)
    torch.testing.assert_close(a[:, 2], b[:, 2])
    assert a.shape == (1, 3, 24)


def test_per_block_predictor_equals_one_pass_per_block_as_in_ijepa():
    """I-JEPA predicts each block in its own pass, where the context also attends to that
    block's mask tokens; 'per_block' gives exactly that in one pass, 'shared_context' not."""
    torch.manual_seed(0)
    per_block = Predictor((4, 4), encoder_dim=24, dim=16, depth=2, heads=2).eval()
    with torch.no_grad():  # trained-like weights: at init, what context tokens read from mask tokens is ~1e-6
        for param in per_block.parameters():
            param.normal_(0, 0.5)
    shared = copy.deepcopy(per_block)
    shared.attention = "shared_context"
    ctx, ctx_idx = torch.randn(2, 5, 24), torch.tensor([[0, 1, 2, 3, 4], [1, 3, 5, 7, 9]])
    tgt_idx = torch.tensor([[6, 7, 10, 11, 14], [0, 2, 12, 13, 15]])
    block = torch.tensor([[0, 0, 1, 1, 2]]).expand(2, -1)
    joint = per_block(ctx, ctx_idx, tgt_idx, block, num_blocks=3)
    for m in range(3):
        picks = block[0] == m
        alone = per_block(ctx, ctx_idx, tgt_idx[:, picks])  # one block: a plain full-attention pass
        torch.testing.assert_close(joint[:, picks], alone)
    assert not torch.allclose(shared(ctx, ctx_idx, tgt_idx, block, num_blocks=3), joint, atol=1e-4)
    with pytest.raises(ValueError, match="num_blocks"):
        per_block(ctx, ctx_idx, tgt_idx, block)


def test_losses_match_hand_computation():
    pred = torch.tensor([[[0.0, 2.0], [1.0, 1.0]]])
    target = torch.tensor([[[0.5, 0.0], [1.0, -1.0]]])
    diff = (pred - target).abs()  # 0.5, 2, 0, 2
    smooth = torch.where(diff < 1, 0.5 * diff**2, diff - 0.5)
    assert make_loss(SmoothL1Loss())(pred, target).item() == pytest.approx(smooth.mean().item())
    assert make_loss(SmoothL1Loss())(pred, target).item() == pytest.approx((0.125 + 1.5 + 0 + 1.5) / 4)
    assert make_loss(L2Loss())(pred, target).item() == pytest.approx((0.25 + 4 + 0 + 4) / 4)
    assert make_loss(L1Loss())(pred, target).item() == pytest.approx((0.5 + 2 + 0 + 2) / 4)
    cos0 = (0 * 0.5 + 2 * 0) / (2 * 0.5)
    cos1 = (1 - 1) / (2**0.5 * 2**0.5)
    assert make_loss(CosineLoss())(pred, target).item() == pytest.approx(1 - (cos0 + cos1) / 2)
    assert make_loss(SmoothL1Loss(beta=2.0))(pred, target).item() == pytest.approx(
        F.smooth_l1_loss(pred, target, beta=2.0).item())


def test_target_norms():
    torch.manual_seed(0)
    h = torch.randn(3, 5, 8) * 4 + 2
    ln = TARGET_NORMS["layer_norm"](h)
    torch.testing.assert_close(ln.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(ln.std(-1, unbiased=False), torch.ones(3, 5), atol=1e-4, rtol=0)
    pz = TARGET_NORMS["patch_zscore"](h)
    torch.testing.assert_close(pz.mean(1), torch.zeros(3, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(pz.std(1, unbiased=False), torch.ones(3, 8), atol=1e-4, rtol=0)
    bn = TARGET_NORMS["batch_norm"](h)
    torch.testing.assert_close(bn.mean((0, 1)), torch.zeros(8), atol=1e-5, rtol=0)
    assert torch.equal(TARGET_NORMS["none"](h), h)


def test_every_declared_loss_and_target_norm_has_exactly_one_implementation():
    """The choice lists come from the config types; each has one registered entry and
    no entry lacks a declaration (so a new loss is one type plus one registry line)."""
    assert set(LOSSES) == set(get_args(get_args(LossConfig)[0]))
    assert {cls.model_fields["kind"].default for cls in LOSSES} == set(LOSS_KINDS)
    assert set(TARGET_NORMS) == set(get_args(TargetConfig.model_fields["norm"].annotation))


def test_objective_adds_the_utterance_term_and_names_every_term():
    torch.manual_seed(0)
    pred, target = torch.randn(4, 3, 8), torch.randn(4, 3, 8)
    context, clip_target = torch.randn(4, 5, 8), torch.randn(4, 8)
    plain = JEPAObjective(SmoothL1Loss(), TargetConfig())(pred, target, context, clip_target)
    assert set(plain) == {"loss", "patch"}
    torch.testing.assert_close(plain["loss"], F.smooth_l1_loss(pred, target))
    both = JEPAObjective(L2Loss(utterance_weight=0.5), TargetConfig())(pred, target, context, clip_target)
    utterance = ((context.mean(1) - clip_target) ** 2).mean()
    torch.testing.assert_close(both["utterance"], utterance)
    torch.testing.assert_close(both["loss"], F.mse_loss(pred, target) + 0.5 * utterance)


def test_variance_and_covariance_terms_by_hand():
    """VICReg's terms: 4 tokens of 2 features; unbiased (co)variances over the tokens."""
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 2.0], [-1.0, -2.0]])
    terms = variance_covariance(z)
    # var = 4/3 and 8/3: both std above 1, no hinge; cov_12 = (2 + 2) / 3, twice, squared, / 2 features
    assert float(terms["variance"]) == 0.0
    assert float(terms["covariance"]) == pytest.approx(2 * (4 / 3) ** 2 / 2)
    small = variance_covariance(0.1 * z)  # std = sqrt(0.04/3 + eps), sqrt(0.08/3 + eps): hinge 1 - std each
    expected = ((1 - (0.04 / 3 + 1e-4) ** 0.5) + (1 - (0.08 / 3 + 1e-4) ** 0.5)) / 2
    assert float(small["variance"]) == pytest.approx(expected, rel=1e-5)
    torch.manual_seed(0)
    pred, target = torch.randn(4, 3, 8), torch.randn(4, 3, 8)
    context, clip_target = torch.randn(4, 5, 8), torch.randn(4, 8)
    terms = JEPAObjective(L2Loss(variance_weight=2.0, covariance_weight=0.5), TargetConfig())(
        pred, target, context, clip_target)
    reference = variance_covariance(context.reshape(-1, 8))
    assert set(terms) == {"loss", "patch", "variance", "covariance"}
    torch.testing.assert_close(terms["loss"], F.mse_loss(pred, target) + 2.0 * reference["variance"]
                               + 0.5 * reference["covariance"])


def test_utterance_loss_trains_the_pooled_context_towards_the_clip_target():
    """With the utterance term the context encoder gets a gradient even when the patch
    loss is switched off by construction (prediction = target), through the pooled context."""
    torch.manual_seed(0)
    cfg = load_config(None, ["model.preset=tiny", "frontend.target_frames=128", "loss.utterance_weight=1.0"])
    model = AJEPA(cfg)
    spec = torch.randn(2, 1, 128, 128)
    ctx = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    tgt = torch.tensor([[10, 11, 20], [30, 40, 41]])
    terms, _ = model(spec, ctx, tgt)
    assert set(terms) == {"loss", "patch", "utterance"} and terms["utterance"] > 0
    terms["utterance"].backward()
    assert model.context_encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.predictor.mask_token.grad is None  # the term bypasses the predictor


def test_loss_sections_written_before_the_typed_losses_still_load():
    """Old runs stored ``beta: 1.0`` with every kind; a real beta on a kind without one is refused."""
    assert load_config(None, ["loss.kind=l2", "loss.beta=1.0"]).loss == L2Loss()
    assert load_config(None, ["loss.beta=2.0"]).loss == SmoothL1Loss(beta=2.0)
    with pytest.raises(ConfigError, match=r"loss\.beta: not a parameter of loss 'cosine'"):
        load_config(None, ["loss.kind=cosine", "loss.beta=2.0"])


def test_effective_rank_detects_collapse():
    torch.manual_seed(0)
    assert effective_rank(torch.randn(512, 16)) > 12
    collapsed = torch.randn(512, 1) * torch.randn(1, 16)
    assert effective_rank(collapsed) < 1.5


def test_ema_update_and_target_is_frozen():
    cfg = load_config(None, ["model.preset=tiny", "frontend.target_frames=128"])
    model = AJEPA(cfg)
    before = copy.deepcopy(model.target_encoder.state_dict())
    with torch.no_grad():
        for p in model.context_encoder.parameters():
            p.add_(1.0)
    model.ema_update(0.75)
    for name, p in model.target_encoder.named_parameters():
        online = dict(model.context_encoder.named_parameters())[name]
        torch.testing.assert_close(p, 0.75 * before[name] + 0.25 * online)
        assert not p.requires_grad


def test_jepa_gradients_reach_context_encoder_and_predictor_only():
    torch.manual_seed(0)
    cfg = load_config(None, ["model.preset=tiny", "frontend.target_frames=128"])
    model = AJEPA(cfg)
    spec = torch.randn(2, 1, 128, 128)
    ctx = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    tgt = torch.tensor([[10, 11, 20], [30, 40, 41]])
    terms, targets = model(spec, ctx, tgt, torch.tensor([[0, 0, 1], [0, 1, 1]]), num_blocks=2)
    terms["loss"].backward()
    assert targets.shape == (2, 3, 96)
    assert model.context_encoder.patch_embed.proj.weight.grad is not None
    assert model.predictor.mask_token.grad is not None
    assert all(p.grad is None for p in model.target_encoder.parameters())


def test_masks_per_clip_equal_separate_passes_with_a_duplicated_target_forward():
    """M masks per clip in one forward = the mean of M ordinary forwards, one per draw, each
    with its own (duplicated) target forward; and the target encoder runs once per clip."""
    torch.manual_seed(0)
    cfg = load_config(None, ["model.preset=tiny", "frontend.target_frames=128"])
    model = AJEPA(cfg).eval()
    spec = torch.randn(2, 1, 128, 128)
    views = 3
    generator = torch.Generator().manual_seed(1)
    # rows b*M + m: clip b, draw m; 5 context and 4 target patches each (2 blocks of 2)
    rows = [torch.randperm(64, generator=generator)[:9] for _ in range(2 * views)]
    ctx = torch.stack([r[:5].sort().values for r in rows])
    tgt = torch.stack([r[5:] for r in rows])
    block = torch.tensor([[0, 0, 1, 1]]).expand(2 * views, -1)

    calls = []
    hook = model.target_encoder.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    terms, targets = model(spec, ctx, tgt, block, num_blocks=2)
    hook.remove()
    assert calls == [2]  # one target forward over the 2 clips, not over the 6 rows
    assert targets.shape == (2 * views, 4, 96)

    separate = []
    for m in range(views):
        picks = torch.arange(2) * views + m
        separate.append(model(spec, ctx[picks], tgt[picks], block[picks], num_blocks=2)[0]["loss"])
    torch.testing.assert_close(terms["loss"], torch.stack(separate).mean())


def test_mask_rows_must_be_a_whole_multiple_of_the_clips():
    cfg = load_config(None, ["model.preset=tiny", "frontend.target_frames=128"])
    model = AJEPA(cfg)
    with pytest.raises(ValueError, match="whole number of masks per clip"):
        model(torch.randn(2, 1, 128, 128), torch.zeros(3, 4, dtype=torch.long), torch.ones(3, 2, dtype=torch.long))


def test_training_forward_compiles_as_one_graph_without_host_syncs():
    """No `bool(tensor)` / `.item()` in the step: dynamo captures it whole (fullgraph=True
    raises on a graph break). The eager backend only traces, so this stays fast on CPU."""
    from ajepa.masks import MaskCollator

    torch._dynamo.reset()
    cfg = load_config(None, ["model.preset=tiny", "frontend.target_frames=128", "masking.masks_per_clip=2"])
    model = AJEPA(cfg)
    batch = MaskCollator(cfg.masking, cfg.grid, seed=0, total_steps=10)(
        [(3, {"spec": torch.randn(1, 128, 128)}) for _ in range(2)])
    assert batch["num_blocks"] == 4  # multi-block: the predictor needs the block mask
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    inputs = (batch["spec"], batch["context_idx"], batch["target_idx"], batch["target_block"], batch["num_blocks"])
    terms, _ = compiled(*inputs)
    torch.testing.assert_close(terms, model(*inputs)[0])
