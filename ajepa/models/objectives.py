"""Registered losses and target normalisations: one entry per value of a design axis.

Adding a loss or a normalisation is one function here and one test; the config's
`Literal` lists the names, and `tests/test_models_objectives.py` checks each against a
hand computation.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NormFn = Callable[[torch.Tensor], torch.Tensor]


def make_loss(kind: str, beta: float = 1.0) -> LossFn:
    """Loss between predictions and targets [B, N, D], averaged over target patches.

    Element-wise losses are averaged over all elements (I-JEPA's convention, equal to the
    per-patch mean averaged over patches); cosine is 1 - cos per patch, averaged.
    """
    if kind == "smooth_l1":
        return lambda pred, target: F.smooth_l1_loss(pred, target, beta=beta)
    if kind == "l2":
        return F.mse_loss
    if kind == "l1":
        return F.l1_loss
    if kind == "cosine":
        return lambda pred, target: (1 - F.cosine_similarity(pred, target, dim=-1)).mean()
    raise ValueError(f"unknown loss {kind!r}: choose smooth_l1, l2, l1 or cosine")


def _standardise(h: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-6) -> torch.Tensor:
    mean = h.mean(dim=dims, keepdim=True)
    var = h.var(dim=dims, keepdim=True, unbiased=False)
    return (h - mean) / torch.sqrt(var + eps)


TARGET_NORMS: dict[str, NormFn] = {
    # I-JEPA / A-JEPA: each target token standardised over its features (no affine).
    "layer_norm": lambda h: F.layer_norm(h, h.shape[-1:], eps=1e-6),
    # Each feature channel standardised over the patches of one clip (instance norm).
    "patch_zscore": lambda h: _standardise(h, dims=(1,)),
    # Each feature channel standardised over all patches of the batch (no running stats).
    "batch_norm": lambda h: _standardise(h, dims=(0, 1)),
    "none": lambda h: h,
}


def target_norm(kind: str) -> NormFn:
    try:
        return TARGET_NORMS[kind]
    except KeyError:
        raise ValueError(f"unknown target norm {kind!r}: choose one of {sorted(TARGET_NORMS)}") from None


def effective_rank(features: torch.Tensor, max_rows: int = 2048) -> float:
    """exp(entropy of normalised singular values) of [N, D] features (Roy & Vetterli, 2007).

    A collapse monitor: near 1 when all tokens share one direction, up to min(N, D).
    """
    x = features.detach().float().reshape(-1, features.shape[-1])[:max_rows]
    x = x - x.mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return float(torch.exp(entropy))
