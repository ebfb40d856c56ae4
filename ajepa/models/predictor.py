"""The narrow transformer that predicts target-block representations from the context."""

from __future__ import annotations

import torch
from torch import nn

from ajepa.models.vit import PositionalEmbedding, _init_weights, gather_tokens, transformer_blocks


def block_attention_mask(num_context: int, target_block: torch.Tensor) -> torch.Tensor:
    """Boolean [B, 1, L, L] mask (True = may attend) for predicting several blocks in one pass.

    Context tokens attend to context tokens; the mask tokens of block m attend to the
    context and to block m's mask tokens only. So each block is predicted as if alone
    (as I-JEPA's one-forward-per-block loop does), without repeating the context M times.
    Unlike I-JEPA, context tokens do not attend to mask tokens, which makes their
    predictor states shared by all blocks.
    """
    batch = target_block.shape[0]
    context = target_block.new_full((batch, num_context), -1)
    owner = torch.cat([context, target_block], dim=1)  # -1 = context token
    allowed = (owner[:, None, :] == -1) | (owner[:, :, None] == owner[:, None, :])
    return allowed[:, None]


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
    ):
        super().__init__()
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
    ) -> torch.Tensor:
        pos = self.pos_embed().to(context.dtype)
        ctx = self.embed(context) + gather_tokens(pos.expand(context.shape[0], -1, -1), context_idx)
        batch, num_targets = target_idx.shape
        masks = self.mask_token.to(ctx.dtype).expand(batch, num_targets, -1)
        masks = masks + gather_tokens(pos.expand(batch, -1, -1), target_idx)
        x = torch.cat([ctx, masks], dim=1)
        # one block needs no mask; callers pass target_block=None then (the collator's
        # num_blocks says so without a device sync)
        attn_mask = None if target_block is None else block_attention_mask(ctx.shape[1], target_block)
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
    )
