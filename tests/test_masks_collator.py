"""The DataLoader collate_fn (ajepa.masks.collator) and equal-length batching (ajepa.masks.batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset

from ajepa.config import (
    BlockMask,
    CurriculumMask,
    CurriculumSchedule,
    FreqMask,
    MultiBlockMask,
    RandomMask,
    TFMask,
    TimeMask,
)
from ajepa.masks import MaskCollator, step_seed
from ajepa.masks.batch import MaskBatch, _equal_count_indices, to_index_tensors

GRIDS = [(8, 64), (8, 32), (8, 6), (5, 13)]
CONFIGS = [RandomMask(), TimeMask(), FreqMask(), BlockMask(), MultiBlockMask(), TFMask(), CurriculumMask(),
           CurriculumMask(per="batch"), MultiBlockMask(ratio=0.6, oversample=1.0)]


def items(step: int, batch: int, grid=(8, 64)):
    return [(step, {"spec": torch.full((1, grid[0] * 2, grid[1] * 2), float(i)), "label": i}) for i in range(batch)]


def check_batch(out: dict, grid, batch: int) -> None:
    num_patches = grid[0] * grid[1]
    ctx, tgt, blk = out["context_idx"], out["target_idx"], out["target_block"]
    assert ctx.dtype == tgt.dtype == blk.dtype == torch.int64
    assert ctx.shape[0] == tgt.shape[0] == blk.shape[0] == batch and tgt.shape == blk.shape
    assert ctx.shape[1] >= 1 and tgt.shape[1] >= 1
    assert (ctx >= 0).all() and (ctx < num_patches).all() and (tgt >= 0).all() and (tgt < num_patches).all()
    assert (ctx[:, 1:] > ctx[:, :-1]).all(), "context sorted, no repeats"
    assert (blk[:, 1:] >= blk[:, :-1]).all(), "target entries grouped by block"
    for b in range(batch):
        assert not np.isin(tgt[b].numpy(), ctx[b].numpy()).any(), "context and targets disjoint"
        for m in blk[b].unique():  # no repeats inside one block
            in_block = tgt[b][blk[b] == m]
            assert in_block.unique().numel() == in_block.numel()
    covered = np.zeros((batch, num_patches), bool)
    np.put_along_axis(covered, tgt.numpy(), True, 1)
    assert out["mask_ratio"] == pytest.approx(covered.mean())
    assert 0.0 <= out["hard_share"] <= 1.0


@settings(max_examples=30, deadline=None)
@given(grid=st.sampled_from(GRIDS), cfg=st.sampled_from(CONFIGS), step=st.integers(0, 999),
       batch=st.integers(1, 24), seed=st.integers(0, 2**40))
def test_collated_batches_keep_the_contract(grid, cfg, step, batch, seed):
    collator = MaskCollator(cfg, grid, seed=seed, total_steps=1000)
    out = collator(items(step, batch, grid))
    check_batch(out, grid, batch)
    assert out["spec"].shape == (batch, 1, grid[0] * 2, grid[1] * 2)
    assert out["label"].tolist() == list(range(batch))
    again = MaskCollator(cfg, grid, seed=seed, total_steps=1000)(items(step, batch, grid))
    for key in ("context_idx", "target_idx", "target_block"):
        assert torch.equal(out[key], again[key]), "same (seed, step) -> same masks"


def test_different_steps_and_seeds_give_different_masks():
    collator = MaskCollator(MultiBlockMask(), (8, 64), seed=0, total_steps=100)
    a, b = collator(items(3, 16)), collator(items(4, 16))
    c = MaskCollator(MultiBlockMask(), (8, 64), seed=1, total_steps=100)(items(3, 16))
    assert not torch.equal(a["target_idx"], b["target_idx"])
    assert not torch.equal(a["target_idx"], c["target_idx"])
    assert step_seed(0, 3) != step_seed(3, 0) and step_seed(0, 3) == step_seed(0, 3)


def test_call_order_does_not_matter():
    """Masks depend on (seed, step) only, not on what the collator produced before."""
    collator = MaskCollator(TFMask(), (8, 64), seed=5, total_steps=100)
    forward = [collator(items(s, 8))["target_idx"] for s in range(5)]
    backward = [collator(items(s, 8))["target_idx"] for s in reversed(range(5))][::-1]
    assert all(torch.equal(f, b) for f, b in zip(forward, backward))


class _Steps(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return i // 8, {"x": torch.tensor(float(i))}


def test_same_masks_in_worker_processes():
    collator = MaskCollator(CurriculumMask(), (8, 64), seed=11, total_steps=8)
    sampler = [list(range(i, i + 8)) for i in range(0, 64, 8)]
    main = list(DataLoader(_Steps(), batch_sampler=sampler, collate_fn=collator))
    workers = list(DataLoader(_Steps(), batch_sampler=sampler, collate_fn=collator, num_workers=2,
                              multiprocessing_context="fork"))
    for a, b in zip(main, workers):
        assert torch.equal(a["context_idx"], b["context_idx"]) and torch.equal(a["target_idx"], b["target_idx"])


def test_progress_is_step_over_total_steps():
    cfg = CurriculumMask(easy=RandomMask(), hard=TimeMask(), schedule=CurriculumSchedule(kind="linear", c0=0.0))
    collator = MaskCollator(cfg, (8, 32), seed=0, total_steps=100)
    assert collator(items(0, 64, (8, 32)))["hard_share"] == 0.0
    assert collator(items(100, 64, (8, 32)))["hard_share"] == 1.0
    assert 0.3 < collator(items(50, 256, (8, 32)))["hard_share"] < 0.7


def test_a_batch_must_belong_to_one_step():
    collator = MaskCollator(RandomMask(), (8, 64), seed=0, total_steps=10)
    with pytest.raises(ValueError, match="one step"):
        collator([(1, {"x": torch.zeros(1)}), (2, {"x": torch.zeros(1)})])
    with pytest.raises(ValueError, match="mask keys"):
        collator([(1, {"context_idx": torch.zeros(1)})])


def test_exact_count_strategies_need_no_equalisation():
    for cfg in (RandomMask(ratio=0.6), TimeMask(ratio=0.6), FreqMask(ratio=0.5), BlockMask(ratio=0.6)):
        out = MaskCollator(cfg, (8, 64), seed=0, total_steps=10)(items(0, 32))
        assert out["target_idx"].shape[1] + out["context_idx"].shape[1] == 512


def test_multiblock_targets_are_never_cut():
    """One block-shape plan per batch: every sample has all its target entries."""
    collator = MaskCollator(MultiBlockMask(), (8, 64), seed=0, total_steps=10)
    for step in range(5):
        batch = collator.sampler.draw(np.random.default_rng(step), 32, 0.0)
        out = to_index_tensors(batch, np.random.default_rng(0))
        assert out["target_idx"].shape[1] == batch.blocks[0].sum()


def test_equalisation_drops_uniformly_at_random_not_the_raster_tail():
    """I-JEPA keeps the first K patches in raster order; here every patch is kept equally often."""
    mask = np.zeros((2, 40), bool)
    mask[0, :20] = True  # the short row sets K = 20
    mask[1, :] = True  # the long row must drop 20 of its 40 entries
    rng = np.random.default_rng(0)
    kept = np.zeros(40)
    trials = 2000
    for _ in range(trials):
        rows = _equal_count_indices(mask, rng)
        assert rows.shape == (2, 20) and (np.diff(rows, axis=1) > 0).all()
        kept[rows[1]] += 1
    rate = kept / trials  # each entry kept with probability 1/2; sd of a rate ~0.011
    assert np.abs(rate - 0.5).max() < 0.06, rate
    assert rate[30:].mean() > 0.45, "the raster tail is not what gets dropped"


def test_per_sample_curriculum_equalises_mixed_batches():
    cfg = CurriculumMask(schedule=CurriculumSchedule(kind="constant", value=0.5))
    out = MaskCollator(cfg, (8, 64), seed=0, total_steps=10)(items(0, 32))
    check_batch(out, (8, 64), 32)
    assert 0 < out["hard_share"] < 1


def test_mask_batch_round_trip():
    labels = np.array([[0, 0, -1, 1], [1, -1, 0, 0]])
    batch = MaskBatch(labels < 0, labels=labels)
    out = to_index_tensors(batch, np.random.default_rng(0))
    assert out["target_idx"].tolist() == [[0, 1, 3], [2, 3, 0]]
    assert out["target_block"].tolist() == [[0, 0, 1], [0, 0, 1]]
    assert out["context_idx"].tolist() == [[2], [1]]
    with pytest.raises(ValueError):
        MaskBatch(labels < 0)


def test_oversampling_narrows_the_context_sizes_that_batching_equalises():
    """oversample=2 keeps typical candidates: far less context is cut than with oversample=1."""

    def kept(oversample: float) -> float:
        collator = MaskCollator(MultiBlockMask(oversample=oversample), (8, 64), seed=0, total_steps=10)
        shares = []
        for step in range(8):
            sizes = collator.sampler.draw(np.random.default_rng(step), 64, 0.0).context.sum(1)
            shares.append(sizes.min() / sizes.mean())
        return float(np.mean(shares))

    assert kept(2.0) > 0.75 > 0.65 > kept(1.0)


@pytest.mark.parametrize("cfg", [RandomMask(masks_per_clip=3), MultiBlockMask(masks_per_clip=3),
                                 CurriculumMask(masks_per_clip=3)])
def test_masks_per_clip_draws_independent_masks_for_each_clip(cfg):
    out = MaskCollator(cfg, (8, 32), seed=0, total_steps=10)(items(4, 5, (8, 32)))
    assert out["spec"].shape[0] == 5
    check_batch(out, (8, 32), 15)
    ctx = out["context_idx"].reshape(5, 3, -1)
    assert all(not torch.equal(ctx[b, 0], ctx[b, 1]) for b in range(5)), "a clip's draws differ"


def test_masks_per_clip_belongs_to_the_curriculum_not_its_parts():
    from ajepa.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="set masking.masks_per_clip instead"):
        load_config(None, ["masking.strategy=curriculum", "masking.easy.masks_per_clip=2"])
    assert load_config(None, ["masking.strategy=curriculum", "masking.masks_per_clip=2"]).masking.masks_per_clip == 2
