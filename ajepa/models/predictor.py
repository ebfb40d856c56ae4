"""The narrow transformer that predicts target-block representations from the context."""

from __future__ import annotations

import torch
from torch import nn

from ajepa.models.vit import PositionalEmbedding, _init_weights, gather_tokens, transformer_blocks


def block_attention_mask(num_context: int, target_block: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, L, L] mask (True = may attend) of the ``shared_context`` pattern.

    Context tokens attend to context tokens; the mask tokens of block m attend to the
    context and to block m's mask tokens only. So no block sees another, without
    repeating the context per block. Unlike I-JEPA, context tokens do not attend to mask
    tokens, which makes their predictor states shared by all blocks.
    """
    batch = target_block.shape[0]
    context = target_block.new_full((batch, num_context), -1)
    owner = torch.cat([context, target_block], dim=1)  # -1 = context token
    allowed = (owner[:, None, :] == -1) | (owner[:, :, None] == owner[:, None, :])
    return allowed[:, None]


def per_block_attention_mask(num_context: int, target_block: torch.Tensor, num_blocks: int) -> torch.Tensor:
    """Boolean [B, 1, L, L] mask of the ``per_block`` pattern over ``num_blocks`` copies of
    the context followed by the mask tokens: copy m and block m's mask tokens attend only
    to each other. That is I-JEPA's loop of one predictor pass per block, run as one pass."""
    batch = target_block.shape[0]
    copies = torch.arange(num_blocks, device=target_block.device).repeat_interleave(num_context)
    owner = torch.cat([copies.expand(batch, -1), target_block], dim=1)
    return (owner[:, None, :] == owner[:, :, None])[:, None]


class Predictor(nn.Module):
    """Context features -> predicted target features (A-JEPA / I-JEPA predictor).

    Projects context tokens to the predictor width, appends one learnable mask token per
    target position (each with its positional embedding), runs transformer blocks, and
    projects the mask tokens' outputs back to the encoder width.
    """

    def __init__(
        self,
        grid: tuple[int, int],
        encoder_dim: int,
        dim: int = 384,
        depth: int = 6,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        pos_embed: str = "sincos",
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        attention: str = "per_block",
    ):
        super().__init__()
        if attention not in ("per_block", "shared_context"):
            raise ValueError(f"unknown predictor attention {attention!r}: choose per_block or shared_context")
        self.attention = attention
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = PositionalEmbedding(tuple(grid), dim, pos_embed)
        self.blocks = transformer_blocks(dim, depth, heads, mlp_ratio, qkv_bias, drop_path)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.proj = nn.Linear(dim, encoder_dim)
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self,
        context: torch.Tensor,
        context_idx: torch.Tensor,
        target_idx: torch.Tensor,
        target_block: torch.Tensor | None = None,
        num_blocks: int | None = None,
    ) -> torch.Tensor:
        """Predicted features [B, T, encoder_dim] at ``target_idx``. ``target_block`` [B, T]
        names each target's block (None: one block, nothing to keep apart); ``num_blocks``
        is its count, given by the collator so that no device value is read here."""
        pos = self.pos_embed().to(context.dtype)
        ctx = self.embed(context) + gather_tokens(pos.expand(context.shape[0], -1, -1), context_idx)
        batch, num_targets = target_idx.shape
        masks = self.mask_token.to(ctx.dtype).expand(batch, num_targets, -1)
        masks = masks + gather_tokens(pos.expand(batch, -1, -1), target_idx)
        # one block needs no mask: both patterns are then I-JEPA's single pass
        if target_block is not None and num_blocks is None:
            raise ValueError("target_block needs num_blocks (the collator's batch['num_blocks'])")
        attn_mask = None
        if target_block is not None and self.attention == "per_block" and num_blocks > 1:
            attn_mask = per_block_attention_mask(ctx.shape[1], target_block, num_blocks)
            ctx = ctx.repeat(1, num_blocks, 1)
        elif target_block is not None:
            attn_mask = block_attention_mask(ctx.shape[1], target_block)
        x = torch.cat([ctx, masks], dim=1)
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return self.proj(self.norm(x[:, ctx.shape[1]:]))


def predictor_from_config(model_cfg, grid: tuple[int, int]) -> Predictor:
    return Predictor(
        grid=grid,
        encoder_dim=model_cfg.encoder_dim,
        dim=model_cfg.predictor_dim,
        depth=model_cfg.predictor_depth,
        heads=model_cfg.predictor_heads,
        mlp_ratio=model_cfg.mlp_ratio,
        pos_embed=model_cfg.pos_embed,
        qkv_bias=model_cfg.qkv_bias,
        drop_path=model_cfg.drop_path,
        attention=model_cfg.predictor_attention,
    )
