"""A-JEPA: context encoder, EMA target encoder and predictor, with the JEPA objective."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ajepa.config import TrainConfig
from ajepa.models.objectives import JEPAObjective, effective_rank
from ajepa.models.predictor import predictor_from_config
from ajepa.models.vit import encoder_from_config, gather_tokens


class AJEPA(nn.Module):
    """The pretraining model. `forward` returns the named loss terms of one batch and its targets."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        grid = cfg.grid
        self.context_encoder = encoder_from_config(cfg.model, grid)
        self.target_encoder = copy.deepcopy(self.context_encoder)
        self.target_encoder.requires_grad_(False)
        self.predictor = predictor_from_config(cfg.model, grid)
        self.objective = JEPAObjective(cfg.loss, cfg.target)
        self.avg_last_k = cfg.target.avg_last_k

    def train(self, mode: bool = True) -> "AJEPA":
        super().train(mode)
        self.target_encoder.eval()  # targets never see dropout/drop-path noise
        return self

    @torch.no_grad()
    def targets(self, spec: torch.Tensor, target_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised target-encoder features of the full spectrogram: those at the target
        positions [B*M, T, D] and their mean over all patches of each clip [B, D].

        The target encoder runs once per clip; with M masks per clip (``target_idx`` has
        M rows per clip) its features are shared by the clip's M rows.
        """
        h = self.objective.normalise_target(self.target_encoder(spec, num_layers_out=self.avg_last_k))
        masks_per_clip(spec, target_idx)  # checks the row count
        # a clip's M rows of indices gathered at once, instead of copying its features M times
        rows = gather_tokens(h, target_idx.reshape(spec.shape[0], -1))
        return rows.reshape(target_idx.shape[0], target_idx.shape[1], h.shape[-1]), h.mean(1)

    def forward(
        self,
        spec: torch.Tensor,
        context_idx: torch.Tensor,
        target_idx: torch.Tensor,
        target_block: torch.Tensor | None = None,
        num_blocks: int | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Returns (terms, targets): the objective's named loss terms (``terms["loss"]`` is
        minimised, see :class:`JEPAObjective`) and the targets, for the collapse monitor.

        The index tensors may hold M rows per clip (rows ``b*M .. b*M+M-1`` are clip b's
        masks, see ``ajepa.masks.MaskCollator``): the context encoder and predictor then
        run on every row and the loss averages over all of them.
        """
        targets, clip_targets = self.targets(spec, target_idx)
        views = masks_per_clip(spec, context_idx)
        context = self.context_encoder(spec.repeat_interleave(views, dim=0) if views > 1 else spec,
                                       keep_idx=context_idx)
        prediction = self.predictor(context, context_idx, target_idx, target_block, num_blocks)
        terms = self.objective(prediction, targets, context, clip_targets.repeat_interleave(views, dim=0))
        return terms, targets

    @torch.no_grad()
    def ema_update(self, momentum: float) -> None:
        """target <- momentum * target + (1 - momentum) * context."""
        target = list(self.target_encoder.parameters())
        online = list(self.context_encoder.parameters())
        torch._foreach_lerp_(target, online, 1.0 - momentum)


def masks_per_clip(spec: torch.Tensor, index: torch.Tensor) -> int:
    """M, the number of mask rows per clip: ``index`` has ``M * B`` rows for B clips."""
    clips, rows = spec.shape[0], index.shape[0]
    if rows % clips:
        raise ValueError(f"{rows} mask rows for {clips} clips: expected a whole number of masks per clip")
    return rows // clips


@torch.no_grad()
def collapse_stats(targets: torch.Tensor) -> dict[str, float]:
    """Per-channel std of target features across tokens, and their effective rank."""
    flat = targets.float().reshape(-1, targets.shape[-1])
    return {"target_std": float(flat.std(0).mean()), "target_rank": effective_rank(flat)}
