"""Embedding extraction, pooling, the disk cache, and one encoder pass per clip per task."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ajepa.audio.features import Frontend
from ajepa.config import EvalConfig, FrontendConfig
from ajepa.data.datasets import ClipDataset, ClipRecord, WaveArray
from ajepa.eval.embeddings import (
    EmbeddingCache,
    Embeddings,
    encoder_fingerprint,
    encoder_for_input,
    extract_embeddings,
    pool_tokens,
)
from ajepa.eval.run import cached_task_embeddings, embed_task
from ajepa.models.vit import SpectrogramViT


def tiny_encoder(grid=(2, 4), seed=0):
    torch.manual_seed(seed)
    return SpectrogramViT(grid, (8, 8), dim=16, depth=2, heads=2).eval()


class TensorSet(torch.utils.data.Dataset):
    def __init__(self, n, frames=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.spec = torch.randn(n, 1, 16, frames, generator=g)
        self.labels = torch.arange(n) % 3

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"spec": self.spec[i], "label": self.labels[i], "index": i}


def test_mean_and_freq_concat_pooling():
    tokens = torch.arange(6.0).reshape(1, 6, 1)  # grid 2 rows x 3 cols, raster order
    assert pool_tokens(tokens, (2, 3), "mean").tolist() == [[2.5]]
    assert pool_tokens(tokens, (2, 3), "freq_concat").tolist() == [[1.0, 4.0]]  # row means, low band first
    tokens = torch.randn(2, 6, 4)
    out = pool_tokens(tokens, (2, 3), "freq_concat")
    assert out.shape == (2, 8) and torch.allclose(out[:, 4:], tokens[:, 3:].mean(1))
    with pytest.raises(ValueError, match="freq_concat"):
        pool_tokens(tokens[:, :5], (2, 3), "freq_concat")
    with pytest.raises(ValueError, match="eval.probe.pooling"):
        pool_tokens(tokens, (2, 3), "max")


def test_mean_max_pooling_is_evar_temporal_pooling_of_row_concatenated_frames():
    tokens = torch.tensor([[0.0, 5.0, 1.0, 2.0, 2.0, 8.0]]).reshape(1, 6, 1)  # rows [0 5 1], [2 2 8]
    # frame vectors (row0, row1) per time column: (0,2), (5,2), (1,8); mean (2,4) + max (5,8)
    assert pool_tokens(tokens, (2, 3), "mean_max").tolist() == [[7.0, 12.0]]
    with pytest.raises(ValueError, match="mean_max"):
        pool_tokens(tokens[:, :5], (2, 3), "mean_max")


def test_extract_matches_a_manual_forward_and_restores_mode():
    encoder = tiny_encoder().train()
    data = TensorSet(10)
    emb = extract_embeddings(encoder, data, "mean", avg_last_k=2, batch_size=4)
    assert encoder.training  # the caller's mode is restored
    with torch.no_grad():
        expected = encoder.eval()(data.spec, num_layers_out=2).mean(1)
    assert emb.features.shape == (10, 16) and np.allclose(emb.features, expected.numpy(), atol=1e-5)
    assert emb.labels.tolist() == data.labels.tolist() and emb.index.tolist() == list(range(10))
    with pytest.raises(ValueError, match="avg_last_k"):
        extract_embeddings(encoder, data, avg_last_k=3)


def test_extract_adapts_to_a_task_grid_without_touching_the_encoder():
    encoder = tiny_encoder()
    emb = extract_embeddings(encoder, TensorSet(4, frames=48), "freq_concat")
    assert emb.features.shape == (4, 2 * 16)
    assert encoder.grid == (2, 4)


def test_chunked_input_encodes_pretraining_length_pieces_and_joins_them_in_time():
    encoder = tiny_encoder()  # grid 2 x 4 of 8 x 8 patches: pretraining input 32 frames
    data = TensorSet(3, frames=76)  # 32 + 32 + 8, plus a 4-frame tail shorter than a patch
    emb = extract_embeddings(encoder, data, "mean_max", input_mode="chunks")
    with torch.no_grad():
        pieces = [encoder(data.spec[..., :32]), encoder(data.spec[..., 32:64]),
                  encoder_for_input(encoder, (3, 1, 16, 8))(data.spec[..., 64:72])]
    columns = torch.cat([p.reshape(3, 2, -1, 16) for p in pieces], dim=2)  # [B, rows, 4+4+1, D]
    expected = pool_tokens(columns.reshape(3, 2 * 9, 16), (2, 9), "mean_max")
    assert emb.features.shape == (3, 2 * 16) and np.allclose(emb.features, expected.numpy(), atol=1e-5)
    whole = extract_embeddings(encoder, data, "mean_max")  # one pass: positions 4..8 extrapolated
    assert not np.allclose(whole.features, emb.features, atol=1e-3)
    short = TensorSet(3, frames=32)  # no longer than the pretraining input: both modes agree
    assert np.allclose(extract_embeddings(encoder, short, "mean", input_mode="chunks").features,
                       extract_embeddings(encoder, short, "mean").features, atol=1e-6)
    with pytest.raises(ValueError, match="eval.probe.input"):
        extract_embeddings(encoder, data, input_mode="windows")
    assert EmbeddingCache.key("e", "d", "mean", 1, "chunks") != EmbeddingCache.key("e", "d", "mean", 1)


def test_fingerprint_follows_the_weights():
    encoder = tiny_encoder()
    same = copy.deepcopy(encoder)
    assert encoder_fingerprint(encoder) == encoder_fingerprint(same)
    with torch.no_grad():
        same.blocks[1].mlp.fc2.bias[0] += 1e-3
    assert encoder_fingerprint(encoder) != encoder_fingerprint(same)


def test_cache_round_trip(tmp_path):
    emb = Embeddings(np.random.rand(5, 3).astype(np.float32), np.arange(5), np.arange(5))
    cache = EmbeddingCache(tmp_path)
    key = EmbeddingCache.key("enc", "data", "mean", 1)
    assert cache.load(key) is None
    cache.save(key, emb)
    back = cache.load(key)
    assert np.array_equal(back.features, emb.features) and np.array_equal(back.labels, emb.labels)
    assert key != EmbeddingCache.key("enc", "data", "freq_concat", 1)
    assert EmbeddingCache(None).load(key) is None


# --------------------------------------------------------------------------- task level


def cv_task(tmp_path=None, clips=15, folds=3):
    """An ESC-50-like task: every clip is in one test fold and in the other folds' training sets."""
    rng = np.random.default_rng(0)
    waves = rng.normal(scale=0.1, size=(clips, 4000)).astype(np.float32)
    if tmp_path is not None:
        np.save(tmp_path / "waves.npy", waves)
        array = WaveArray(16000, path=tmp_path / "waves.npy")
    else:
        array = WaveArray(16000, waves)
    frontend = Frontend(FrontendConfig(num_mel_bins=16, target_frames=32, norm="none"), 16000, None)
    records = [ClipRecord(None, (i % 3,), fold=i % folds, wave_index=i) for i in range(clips)]
    full = ClipDataset(records, frontend, num_classes=3, waves=array)
    fold_list = []
    for k in range(folds):
        train = full.subset([i for i in range(clips) if i % folds != k])
        test = full.subset([i for i in range(clips) if i % folds == k])
        fold_list.append(SimpleNamespace(name=f"fold{k + 1}", train=train, val=None, test=test))
    return SimpleNamespace(name="cv", num_classes=3, multilabel=False, metric="acc", folds=fold_list)


def count_clips(encoder):
    seen = []
    encoder.patch_embed.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    return seen


def test_each_clip_is_encoded_once_per_task():
    task = cv_task()
    encoder = tiny_encoder()
    seen = count_clips(encoder)
    out = embed_task(encoder, task, EvalConfig())
    assert sum(seen) == 15  # not 3 folds x 15
    assert [len(out[(f"fold{k}", "train")]) for k in (1, 2, 3)] == [10, 10, 10]
    # clip 0 is test in fold1 and train in fold2 (position 0 there): the same vector
    assert np.array_equal(out[("fold1", "test")].features[0], out[("fold2", "train")].features[0])
    assert out[("fold2", "train")].labels.tolist() == [i % 3 for i in range(15) if i % 3 != 1]


def test_disk_cache_serves_the_second_call(tmp_path):
    task = cv_task(tmp_path)
    encoder = tiny_encoder()
    cache = EmbeddingCache(tmp_path / "emb")
    first = cached_task_embeddings(encoder, task, EvalConfig(), cache)
    assert len(list((tmp_path / "emb").glob("*.pt"))) == 1
    seen = count_clips(encoder)
    second = cached_task_embeddings(encoder, task, EvalConfig(), cache)
    assert seen == []
    for key in first:
        assert np.array_equal(first[key].features, second[key].features)
        assert np.array_equal(first[key].labels, second[key].labels)
    other = tiny_encoder(seed=1)  # other weights: a miss, a second file
    cached_task_embeddings(other, task, EvalConfig(), cache)
    assert len(list((tmp_path / "emb").glob("*.pt"))) == 2


def test_unnameable_data_is_never_cached_on_disk(tmp_path):
    task = cv_task()  # in-memory waves without a file: no stable name
    cached_task_embeddings(tiny_encoder(), task, EvalConfig(), EmbeddingCache(tmp_path / "emb"))
    assert not (tmp_path / "emb").exists()
