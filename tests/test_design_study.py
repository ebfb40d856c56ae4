"""Riou et al. 2024's design study: what the target encoder sees, the recipe, the sweeps."""

from pathlib import Path

import torch

from ajepa.config import load_config
from ajepa.models import AJEPA
from ajepa.models.jepa import first_occurrence

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.preset=tiny", "frontend.target_frames=128"]  # an 8 x 8 grid


def _model(*overrides: str) -> AJEPA:
    torch.manual_seed(0)
    return AJEPA(load_config(None, [*TINY, *overrides])).eval()


def _indices():
    ctx = torch.tensor([[0, 1, 2, 3, 8, 9], [4, 5, 6, 7, 12, 13]])
    tgt = torch.tensor([[40, 41, 48, 49], [20, 21, 28, 29]])
    return ctx, tgt


def test_targets_only_encodes_just_the_target_patches():
    """targets_only: the target features are the target encoder's over the target patches
    alone, so the rest of the spectrogram cannot change them; with 'full' it does."""
    spec = torch.randn(2, 1, 128, 128)
    _, tgt = _indices()
    only, full = _model("target.input=targets_only"), _model()
    full.target_encoder.load_state_dict(only.target_encoder.state_dict())
    expected = only.objective.normalise_target(only.target_encoder(spec, keep_idx=tgt))
    got, clip_mean = only.targets(spec, tgt)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(clip_mean, expected.mean(1))

    # change every patch outside the targets (patch p covers rows 16*(p//8), columns 16*(p%8))
    changed = spec.clone()
    keep = torch.zeros(2, 1, 128, 128, dtype=torch.bool)
    for b, row in enumerate(tgt.tolist()):
        for p in row:
            keep[b, :, 16 * (p // 8):16 * (p // 8 + 1), 16 * (p % 8):16 * (p % 8 + 1)] = True
    changed[~keep] = torch.randn(int((~keep).sum()))
    torch.testing.assert_close(only.targets(changed, tgt)[0], got)
    assert not torch.allclose(full.targets(changed, tgt)[0], full.targets(spec, tgt)[0])
    assert not torch.allclose(full.targets(spec, tgt)[0], got)


def test_targets_only_encodes_a_patch_in_two_blocks_once():
    """A patch listed by two blocks: its copy is hidden from attention, so every target
    equals the encoding of the de-duplicated set, and the clip mean counts it once."""
    model = _model("target.input=targets_only")
    spec = torch.randn(1, 1, 128, 128)
    unique = torch.tensor([[40, 41, 48, 49, 50]])
    listed = torch.tensor([[40, 41, 48, 49, 49, 50]])  # block 0: 40 41 48 49; block 1: 49 50
    block = torch.tensor([[0, 0, 0, 0, 1, 1]])
    assert first_occurrence(listed).tolist() == [[True, True, True, True, False, True]]
    reference, reference_mean = model.targets(spec, unique)
    got, mean = model.targets(spec, listed, block)
    torch.testing.assert_close(got, reference[:, [0, 1, 2, 3, 3, 4]])
    torch.testing.assert_close(mean, reference_mean)


def test_targets_only_runs_once_per_mask_and_trains():
    """With M masks per clip the target encoder runs on every row (each row has its own
    targets); the full step still trains only the context encoder and the predictor."""
    model = _model("target.input=targets_only").train()
    spec = torch.randn(2, 1, 128, 128)
    ctx, tgt = _indices()
    ctx, tgt = ctx.repeat_interleave(2, dim=0), torch.cat([tgt, tgt + 1]).reshape(2, 2, 4).transpose(0, 1)
    tgt = tgt.reshape(4, 4)
    calls = []
    hook = model.target_encoder.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    terms, targets = model(spec, ctx, tgt)
    hook.remove()
    assert calls == [4] and targets.shape == (4, 4, 96)
    terms["loss"].backward()
    assert model.context_encoder.patch_embed.proj.weight.grad is not None
    assert all(p.grad is None for p in model.target_encoder.parameters())


def test_the_default_target_input_is_unchanged():
    assert load_config(None).target.input == "full"
    assert load_config(ROOT / "experiments" / "tiny.yaml").target.input == "full"


def test_targets_only_step_compiles_as_one_graph():
    """The de-duplication mask reads no device value: the step stays one graph."""
    from ajepa.masks import MaskCollator

    torch._dynamo.reset()
    cfg = load_config(None, [*TINY, "target.input=targets_only", "masking.masks_per_clip=2"])
    model = AJEPA(cfg)
    batch = MaskCollator(cfg.masking, cfg.grid, seed=0, total_steps=10)(
        [(3, {"spec": torch.randn(1, 128, 128)}) for _ in range(2)])
    inputs = (batch["spec"], batch["context_idx"], batch["target_idx"], batch["target_block"], batch["num_blocks"])
    terms, _ = torch.compile(model, backend="eager", fullgraph=True)(*inputs)
    torch.testing.assert_close(terms, model(*inputs)[0])
