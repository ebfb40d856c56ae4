"""The JEPA objective: target normalisation, the prediction loss, optional extra terms.

Each value of a design axis is one registered entry: a loss is one function in ``LOSSES``
(keyed by the ``kind`` of its config type in ajepa/config.py), a target normalisation one
in ``TARGET_NORMS``. `tests/test_models.py` checks every declared choice against exactly one
entry here and each loss against a hand computation.

:class:`JEPAObjective` owns all of it and returns *named terms*: ``loss`` (what is
minimised) plus each component, so a new regulariser is one term here and the training
loop logs it as ``train/<name>`` without knowing it exists.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ajepa.config import CosineLoss, L1Loss, L2Loss, LossConfig, SmoothL1Loss, TargetConfig

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NormFn = Callable[[torch.Tensor], torch.Tensor]

# Loss between predictions and targets [B, N, D], averaged over target patches. Element-wise
# losses average over all elements (I-JEPA's convention, equal to the per-patch mean
# averaged over patches); cosine is 1 - cos per patch, averaged.
LOSSES: dict[type, Callable[..., LossFn]] = {
    SmoothL1Loss: lambda cfg: lambda pred, target: F.smooth_l1_loss(pred, target, beta=cfg.beta),
    L2Loss: lambda cfg: F.mse_loss,
    L1Loss: lambda cfg: F.l1_loss,
    CosineLoss: lambda cfg: lambda pred, target: (1 - F.cosine_similarity(pred, target, dim=-1)).mean(),
}


def make_loss(cfg: LossConfig) -> LossFn:
    """The prediction loss a loss config declares."""
    try:
        return LOSSES[type(cfg)](cfg)
    except KeyError:
        raise ValueError(f"no loss registered for {type(cfg).__name__}") from None


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


class JEPAObjective(nn.Module):
    """Turns the model's outputs into named loss terms.

    ``patch``: the prediction loss at the target patches (A-JEPA).
    ``utterance`` (when ``loss.utterance_weight > 0``): EAT's utterance loss (Chen et al.
    2024), the MSE between the mean of the context encoder's outputs and the mean of the
    whole clip's target features: it shapes exactly the pooled clip embedding a linear
    probe reads.
    ``variance`` / ``covariance`` (when ``loss.variance_weight`` / ``covariance_weight`` > 0):
    VICReg's terms (Bardes et al. 2022) on the context encoder's output tokens, pooled over
    the batch: a hinge keeping every feature's standard deviation at 1 or more, and the
    squared off-diagonal covariances. An EMA-target JEPA has no explicit guard against
    dimensional collapse; these are one, as an ablation axis.
    ``loss`` is the weighted sum, the one value that is minimised.
    """

    def __init__(self, loss: LossConfig, target: TargetConfig):
        super().__init__()
        self.patch_loss = make_loss(loss)
        self.normalise_target = target_norm(target.norm)
        self.utterance_weight = loss.utterance_weight
        self.variance_weight = loss.variance_weight
        self.covariance_weight = loss.covariance_weight

    def forward(self, prediction: torch.Tensor, targets: torch.Tensor, context: torch.Tensor,
                clip_targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """prediction/targets [B*M, T, D]; context [B*M, C, D]; clip_targets [B*M, D]."""
        terms = {"patch": self.patch_loss(prediction.float(), targets.float())}
        if self.utterance_weight:
            terms["utterance"] = F.mse_loss(context.float().mean(1), clip_targets.float())
        if self.variance_weight or self.covariance_weight:
            terms.update(variance_covariance(context.float().reshape(-1, context.shape[-1])))
        terms["loss"] = (terms["patch"] + self.utterance_weight * terms.get("utterance", 0.0)
                         + self.variance_weight * terms.get("variance", 0.0)
                         + self.covariance_weight * terms.get("covariance", 0.0))
        return terms


def variance_covariance(z: torch.Tensor, eps: float = 1e-4) -> dict[str, torch.Tensor]:
    """VICReg's variance and covariance terms of [N, D] features (N > 1 rows):
    mean_d relu(1 - sqrt(var_d + eps)) and sum_{i != j} cov_ij^2 / D (unbiased covariance)."""
    z = z - z.mean(0)
    n, d = z.shape
    std = torch.sqrt(z.var(0) + eps)
    cov = (z.T @ z) / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return {"variance": F.relu(1 - std).mean(), "covariance": off_diagonal.pow(2).sum() / d}


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
