"""Riou et al. 2024's design study: what the target encoder sees, the recipe, the sweeps."""

from pathlib import Path

import pytest
import torch

from ajepa.config import load_config
from ajepa.masks import build_mask_sampler
from ajepa.models import AJEPA
from ajepa.models.jepa import first_occurrence
from ajepa.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "experiments" / "riou2024_vitb.yaml"
STUDY_SWEEPS = ["num_blocks", "encoder_capacity", "riou2024_masking", "riou2024_ratio", "riou2024_predictor",
                "riou2024_duration", "target_input"]
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


def test_recipe_is_riou2024_as_their_configs_set_it():
    """experiments/riou2024_vitb.yaml against configs/model/vision_transformer.yaml,
    configs/data/audioset.yaml and configs/trainer/default.yaml of SonyCSLParis/audio-representations."""
    cfg = load_config(RECIPE)
    assert cfg.grid == (5, 13)  # 80 x 208 in 16 x 16 patches
    assert (cfg.frontend.num_mel_bins, cfg.frontend.target_frames, cfg.model.patch_size) == (80, 208, (16, 16))
    m = cfg.model
    assert (m.encoder_depth, m.encoder_dim, m.encoder_heads) == (12, 768, 12)
    assert (m.predictor_depth, m.predictor_dim, m.predictor_heads) == (8, 512, 16)
    assert cfg.masking.strategy == "random" and cfg.masking.ratio == 0.6
    assert cfg.target.input == "targets_only" and cfg.target.norm == "layer_norm"
    assert cfg.loss.kind == "smooth_l1" and cfg.loss.beta == 1.0
    assert (cfg.ema.start, cfg.ema.end, cfg.ema.schedule) == (0.99995, 0.99999, "linear")
    o = cfg.optim
    assert (o.lr, o.scale_lr, o.batch_size, o.weight_decay, o.warmup, o.epochs) == (3e-4, True, 2048, 0.05, 20, 300)
    assert (o.betas, o.grad_clip, o.min_lr) == ((0.9, 0.95), 3.0, 0.0)
    assert cfg.data.kind == "audioset" and cfg.eval.encoder == "context"


@pytest.mark.parametrize("name", STUDY_SWEEPS)
@pytest.mark.parametrize("base", [None, RECIPE])
def test_study_sweeps_validate_on_the_tiny_and_the_study_base(name, base):
    """Every trial of every new sweep is a valid config on the spec's (tiny) base and on
    the study's recipe (`ajepa-sweep SPEC --base experiments/riou2024_vitb.yaml --gpus-per-trial 1`)."""
    spec = load_sweep(ROOT / "sweeps" / f"{name}.yaml", base=base, resources={"gpu": 1} if base else None)
    assert spec.trials
    for trial in spec.trials:
        cfg = trial.config()
        # the mask it asks for exists on its grid (e.g. frequency strips on 5 rows)
        batch = build_mask_sampler(cfg.masking, cfg.grid).sample_batch(torch.Generator().manual_seed(0), 4)
        assert batch.sample_mask(0).targets


def test_riou2024_table_holds_the_numbers_of_their_results_figure():
    """analysis/paper/riou2024_duration.csv = images/results.png of their repository (their rows only)."""
    from analysis.paper import paper_table

    table = paper_table("riou2024_duration")
    assert list(table.columns) == ["ESC-50 acc", "US8K acc", "SPCV2 acc", "VC1 acc", "CREMA-D acc", "GTZAN acc",
                                   "NSynth acc", "Surge acc"]
    assert table.to_dict("split")["data"] == [
        [89.3, 87.2, 94.9, 60.8, 72.2, 82.1, 76.8, 42.8],
        [89.8, 86.5, 94.6, 61.7, 72.6, 84.3, 75.6, 42.0],
        [90.0, 87.7, 92.8, 63.6, 70.8, 86.9, 74.9, 41.1],
    ]
    assert list(table.index) == [f"d = {d} s" for d in ("2.1", "3.2", "6.4")]
    assert table.attrs["source"].startswith("Riou et al. 2024 (arXiv:2405.08679)")
    trials = load_sweep(ROOT / "sweeps" / "riou2024_duration.yaml").trials
    assert {t.labels["duration"] for t in trials if not t.is_control} == set(table.index)


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
