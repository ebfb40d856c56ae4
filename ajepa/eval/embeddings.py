"""Frozen-encoder embeddings: extraction, pooling and an on-disk cache.

A linear probe is cheap only if the encoder runs once per clip: embeddings are
extracted once per (encoder weights, task, pooling) and every probe fit (each L2
strength, each fold, each solver) reads the cached arrays. The cache key hashes the
encoder's weights themselves (not a file name), so a retrained checkpoint at the same
path can never be served stale embeddings, and two copies of one checkpoint share them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ajepa.models.vit import SpectrogramViT, adapt_to_grid

# Bump when extraction or pooling changes meaning: it is part of every cache key.
EMBEDDING_VERSION = 1


@dataclass
class Embeddings:
    """One split's pooled features ``[N, D]`` with labels and the items' ``index`` values."""

    features: np.ndarray
    labels: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def take(self, positions: np.ndarray) -> "Embeddings":
        return Embeddings(self.features[positions], self.labels[positions], self.index[positions])

    @staticmethod
    def concat(parts: Iterable["Embeddings"]) -> "Embeddings":
        parts = list(parts)
        return Embeddings(
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.index for p in parts]),
        )


def pool_tokens(tokens: torch.Tensor, grid: tuple[int, int], pooling: str) -> torch.Tensor:
    """Patch features ``[B, H*W, D]`` (raster order) -> clip embedding.

    'mean': ``[B, D]``, the average over all patches (A-JEPA, Audio-MAE linear probe).
    'freq_concat': ``[B, H*D]``, mean over time within each frequency row, rows
    concatenated from the lowest band up (M2D): keeps where in frequency a feature sits.
    'mean_max': ``[B, H*D]``, EVAR's temporal pooling of M2D-style frame features: each time
    column's rows concatenated into one frame vector, then mean + max over time (summed),
    so a short event is not averaged away by the silence around it.
    """
    if pooling == "mean":
        return tokens.mean(1)
    if pooling in ("freq_concat", "mean_max"):
        rows, cols = grid
        batch, count, dim = tokens.shape
        if count != rows * cols:
            raise ValueError(f"{pooling} pooling needs all {rows}x{cols} patches, got {count} tokens")
        frames = tokens.reshape(batch, rows, cols, dim).permute(0, 2, 1, 3).reshape(batch, cols, rows * dim)
        if pooling == "freq_concat":
            return frames.mean(1)
        return frames.mean(1) + frames.amax(1)
    raise ValueError(f"unknown pooling {pooling!r}: choose 'mean', 'freq_concat' or 'mean_max' (eval.probe.pooling)")


def encoder_for_input(encoder: SpectrogramViT, spec_shape: tuple[int, ...]) -> SpectrogramViT:
    """The encoder itself if the spectrogram fits its grid, else an adapted copy.

    Tasks use their own clip length (ESC-50: 5 s -> 8x32 patches) while pretraining used
    another (10 s -> 8x64), see :func:`ajepa.models.vit.adapt_to_grid`.
    """
    patch = encoder.patch_embed.patch_size
    grid = (int(spec_shape[-2]) // patch[0], int(spec_shape[-1]) // patch[1])
    if 0 in grid:
        raise ValueError(
            f"task spectrograms of {tuple(spec_shape[-2:])} are smaller than one {patch} patch: "
            "raise the task's target_frames"
        )
    return encoder if grid == tuple(encoder.grid) else adapt_to_grid(encoder, grid)


def encode_tokens(encoder: SpectrogramViT, spec: torch.Tensor, avg_last_k: int, input_mode: str,
                  adapted: dict) -> tuple[torch.Tensor, tuple[int, int]]:
    """Patch features ``[B, H*W, D]`` (raster order) of ``spec`` and their grid ``(H, W)``.

    'whole': one pass over the whole spectrogram (``encoder_for_input``). 'chunks': the time
    axis is cut into pieces of the encoder's own input length (its grid's columns), the last
    one shorter; each piece is encoded alone and the pieces' columns are joined in time, so
    every patch sits at a time position the encoder was pretrained on (sin-cos positions past
    the pretraining input were never seen; learned ones would be interpolated). A tail
    shorter than one patch is dropped, as a single pass drops it too. ``adapted`` caches one
    encoder per piece shape across batches.
    """
    if input_mode not in ("whole", "chunks"):
        raise ValueError(f"unknown probe input {input_mode!r}: choose 'whole' or 'chunks' (eval.probe.input)")
    patch_time = encoder.patch_embed.patch_size[1]
    width = encoder.grid[1] * patch_time if input_mode == "chunks" else spec.shape[-1]
    pieces = [spec[..., start:start + width] for start in range(0, spec.shape[-1], width)]
    pieces = [piece for piece in pieces if piece.shape[-1] >= patch_time] or pieces[:1]
    columns = []
    for piece in pieces:
        shape = tuple(piece.shape[-2:])
        if shape not in adapted:
            adapted[shape] = encoder_for_input(encoder, tuple(piece.shape)).to(spec.device).eval()
        model = adapted[shape]
        tokens = model(piece, num_layers_out=avg_last_k)
        rows, cols = model.grid
        columns.append(tokens.reshape(tokens.shape[0], rows, cols, tokens.shape[-1]))
    joined = torch.cat(columns, dim=2)
    batch, rows, cols, dim = joined.shape
    return joined.reshape(batch, rows * cols, dim), (rows, cols)


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """SHA-1 of the encoder's class, grid and every weight (names, shapes, dtypes, bytes)."""
    digest = hashlib.sha1()
    digest.update(type(encoder).__name__.encode())
    digest.update(repr(tuple(getattr(encoder, "grid", ()))).encode())
    for name, value in sorted(encoder.state_dict().items()):
        value = value.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def _label_array(labels: list[torch.Tensor]) -> np.ndarray:
    stacked = torch.stack([torch.as_tensor(x) for x in labels])
    return stacked.float().numpy() if stacked.dim() == 2 else stacked.long().numpy()


@torch.no_grad()
def extract_embeddings(
    encoder: SpectrogramViT,
    dataset: Dataset,
    pooling: str = "mean",
    avg_last_k: int = 1,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    input_mode: str = "whole",
) -> Embeddings:
    """Run the frozen encoder over ``dataset`` (items ``{"spec", "label", "index"}``), pooled.

    The encoder's train/eval mode is restored afterwards, so the Trainer's live encoder
    is left as it was. On CUDA the forward runs under bf16 autocast; features are float32.
    """
    if len(dataset) == 0:
        raise ValueError("cannot extract embeddings from an empty dataset")
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    depth = len(encoder.blocks)
    if avg_last_k > depth:
        raise ValueError(f"eval.probe.avg_last_k={avg_last_k} exceeds the encoder depth {depth}")
    # private generator: extracting embeddings leaves the global RNG untouched
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, generator=torch.Generator())
    adapted, features, labels, index = {}, [], [], []
    was_training = encoder.training
    encoder.eval()
    try:
        for batch in loader:
            spec = batch["spec"].to(device)
            autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
            with autocast:
                tokens, grid = encode_tokens(encoder, spec, avg_last_k, input_mode, adapted)
            features.append(pool_tokens(tokens.float(), grid, pooling).cpu())
            labels.extend(batch["label"])
            index.append(torch.as_tensor(batch["index"]).long())
    finally:
        encoder.train(was_training)
    return Embeddings(torch.cat(features).numpy(), _label_array(labels), torch.cat(index).numpy())


class EmbeddingCache:
    """Embeddings stored as ``<folder>/<key>.pt`` (plain tensors, loaded weights-only).

    ``folder=None`` keeps nothing on disk (the Trainer's periodic evaluation, whose encoder
    changes every time, has no use for it).
    """

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder is not None else None

    @staticmethod
    def key(encoder_hash: str, data_key: str, pooling: str, avg_last_k: int, input_mode: str = "whole") -> str:
        fields = {"v": EMBEDDING_VERSION, "encoder": encoder_hash, "data": data_key,
                  "pooling": pooling, "avg_last_k": avg_last_k}
        if input_mode != "whole":  # keys of 'whole' stay as they were, so existing caches still serve
            fields["input"] = input_mode
        payload = json.dumps(fields, sort_keys=True)
        return hashlib.sha1(payload.encode()).hexdigest()[:24]

    def path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.pt"

    def load(self, key: str) -> Embeddings | None:
        path = self.path(key)
        if path is None or not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            return Embeddings(state["features"].numpy(), state["labels"].numpy(), state["index"].numpy())
        except Exception:  # a truncated or foreign file: extract again rather than fail
            return None

    def save(self, key: str, embeddings: Embeddings) -> None:
        path = self.path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(
            {"features": torch.from_numpy(embeddings.features), "labels": torch.from_numpy(embeddings.labels),
             "index": torch.from_numpy(embeddings.index)},
            tmp,
        )
        os.replace(tmp, path)


__all__ = [
    "Embeddings", "EmbeddingCache", "pool_tokens", "encoder_for_input", "encode_tokens", "encoder_fingerprint",
    "extract_embeddings", "EMBEDDING_VERSION",
]
