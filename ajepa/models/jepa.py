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
        self.target_input = cfg.target.input

    def train(self, mode: bool = True) -> "AJEPA":
        super().train(mode)
        self.target_encoder.eval()  # targets never see dropout/drop-path noise
        return self

    @torch.no_grad()
    def targets(self, spec: torch.Tensor, target_idx: torch.Tensor,
                target_block: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised target-encoder features at the target positions [B*M, T, D] and each
        row's clip-level mean [B*M, D] (what the utterance loss compares the context with).

        ``target.input = full``: the target encoder sees the whole spectrogram, once per clip
        (with M masks per clip, ``target_idx`` has M rows per clip that share its features);
        the mean is over all patches. ``targets_only``: it sees only each row's target
        patches (Riou et al. 2024), so it runs once per row; the mean is over those patches.
        With several blocks (``target_block`` given) a patch may be listed twice: the copy
        is hidden from attention, so it changes nothing and comes out equal to the original.
        """
        views = masks_per_clip(spec, target_idx)  # checks the row count
        if self.target_input == "targets_only":
            clips = spec.repeat_interleave(views, dim=0) if views > 1 else spec
            first = None if target_block is None else first_occurrence(target_idx)
            h = self.target_encoder(clips, keep_idx=target_idx, key_keep=first, num_layers_out=self.avg_last_k)
            h = self.objective.normalise_target(h)
            if first is None:
                return h, h.mean(1)
            weight = first.to(h.dtype)[..., None]
            return h, (h * weight).sum(1) / weight.sum(1)
        h = self.objective.normalise_target(self.target_encoder(spec, num_layers_out=self.avg_last_k))
        # a clip's M rows of indices gathered at once, instead of copying its features M times
        rows = gather_tokens(h, target_idx.reshape(spec.shape[0], -1))
        clip_mean = h.mean(1)
        if views > 1:
            clip_mean = clip_mean.repeat_interleave(views, dim=0)
        return rows.reshape(target_idx.shape[0], target_idx.shape[1], h.shape[-1]), clip_mean

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
        targets, clip_targets = self.targets(spec, target_idx, target_block)
        views = masks_per_clip(spec, context_idx)
        context = self.context_encoder(spec.repeat_interleave(views, dim=0) if views > 1 else spec,
                                       keep_idx=context_idx)
        prediction = self.predictor(context, context_idx, target_idx, target_block, num_blocks)
        terms = self.objective(prediction, targets, context, clip_targets)
        return terms, targets

    @torch.no_grad()
    def ema_update(self, momentum: float) -> None:
        """target <- momentum * target + (1 - momentum) * context."""
        target = list(self.target_encoder.parameters())
        online = list(self.context_encoder.parameters())
        torch._foreach_lerp_(target, online, 1.0 - momentum)


def first_occurrence(index: torch.Tensor) -> torch.Tensor:
    """BoolTensor like ``index`` [R, T]: True where the entry is the first of its value in its row."""
    same = index[:, :, None] == index[:, None, :]  # [R, T, T]
    earlier = torch.ones(index.shape[1], index.shape[1], dtype=torch.bool, device=index.device).tril(-1)
    return ~(same & earlier).any(-1)


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
