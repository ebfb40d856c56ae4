"""Spectrogram Vision Transformer for any (frequency x time) patch grid.

Built from timm's transformer `Block` (fused scaled-dot-product attention). The grid is
a constructor argument, never a constant: 8x64 for 128x1024 AudioSet clips, 8x32 for
ESC-50, 8x8 for Speech Commands, or anything a config asks for.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed 1-D sin-cos embedding (Transformer / MAE convention) of shape [len, dim]."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.double()[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """2-D sin-cos embedding over the actual (H freq, W time) grid, raster order, [H*W, dim].

    Half of the channels encode the frequency row, half the time column, so the same code
    serves 8x64 and 8x6 grids alike (no interpolation from a pretraining grid needed).
    """
    if dim % 4:
        raise ValueError(f"2-D sin-cos embedding needs a dimension divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    return torch.cat([sincos_1d(rows.flatten(), dim // 2), sincos_1d(cols.flatten(), dim // 2)], dim=1)


class PositionalEmbedding(nn.Module):
    """Fixed 2-D sin-cos or learned per-patch positions, shape [1, H*W, dim]."""

    def __init__(self, grid: tuple[int, int], dim: int, kind: str = "sincos"):
        super().__init__()
        self.kind = kind
        table = sincos_2d(grid, dim)[None]
        if kind == "sincos":
            self.register_buffer("table", table, persistent=False)
        elif kind == "learned":
            self.table = nn.Parameter(table.clone())  # sin-cos init, then learned
        else:
            raise ValueError(f"unknown positional embedding {kind!r}: choose 'sincos' or 'learned'")

    def forward(self) -> torch.Tensor:
        return self.table


class PatchEmbed(nn.Module):
    """[B, 1, F, T] spectrogram -> [B, H*W, dim] tokens; a remainder below one patch is dropped."""

    def __init__(self, patch_size: tuple[int, int], dim: int):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.proj = nn.Conv2d(1, dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.proj(spec).flatten(2).transpose(1, 2)


def transformer_blocks(dim: int, depth: int, heads: int, mlp_ratio: float, qkv_bias: bool,
                       drop_path: float) -> nn.ModuleList:
    """Pre-norm timm blocks with drop-path rising linearly to `drop_path` (encoder and predictor)."""
    rates = torch.linspace(0, drop_path, depth).tolist()
    return nn.ModuleList(Block(dim, heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=r) for r in rates)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, N, D], idx [B, K] -> [B, K, D] (idx may also be [1, K] or [K] to broadcast)."""
    if idx.dim() == 1:
        idx = idx[None]
    idx = idx.expand(x.shape[0], -1)
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


class SpectrogramViT(nn.Module):
    """Pre-norm ViT encoder over spectrogram patches.

    ``forward(spec, keep_idx, key_keep, num_layers_out)``:
    - ``keep_idx [B, K]`` — encode only these patches (the JEPA context); positions are
      added before selection, so each token keeps its place in the grid.
    - ``key_keep [B, N]`` (bool; ``[B, K]``, over the kept tokens, with ``keep_idx``) —
      False marks tokens that no token may attend to (A-JEPA's regularized masking; a
      repeated target patch in ``AJEPA.targets``); their outputs come from attending to others.
    - ``num_layers_out = k`` — return the average of the last k blocks' normed outputs.
    """

    def __init__(
        self,
        grid: tuple[int, int],
        patch_size: tuple[int, int] = (16, 16),
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        pos_embed: str = "sincos",
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.grid = tuple(grid)
        self.num_patches = grid[0] * grid[1]
        self.dim = dim
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.pos_embed = PositionalEmbedding(self.grid, dim, pos_embed)
        self.blocks = transformer_blocks(dim, depth, heads, mlp_ratio, qkv_bias, drop_path)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(_init_weights)

    def forward(
        self,
        spec: torch.Tensor,
        keep_idx: torch.Tensor | None = None,
        key_keep: torch.Tensor | None = None,
        num_layers_out: int = 1,
    ) -> torch.Tensor:
        x = self.patch_embed(spec)
        if x.shape[1] != self.num_patches:
            raise ValueError(
                f"spectrogram {tuple(spec.shape[-2:])} gives {x.shape[1]} patches, but this encoder "
                f"was built for a {self.grid[0]}x{self.grid[1]} grid: check frontend.target_frames"
            )
        x = x + self.pos_embed().to(x.dtype)
        if keep_idx is not None:
            x = gather_tokens(x, keep_idx)
        attn_mask = None if key_keep is None else key_keep[:, None, None, :]
        outputs = []
        first_kept = len(self.blocks) - num_layers_out
        for i, block in enumerate(self.blocks):
            x = block(x, attn_mask=attn_mask)
            if i >= first_kept:
                outputs.append(self.norm(x))
        return outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(0)


def _init_weights(module: nn.Module) -> None:
    """ViT/MAE initialisation: truncated-normal linears, xavier-like patch projection."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        w = module.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def encoder_from_config(model_cfg, grid: tuple[int, int]) -> SpectrogramViT:
    """Build the encoder described by a `ModelConfig` for a given patch grid."""
    return SpectrogramViT(
        grid=grid,
        patch_size=tuple(model_cfg.patch_size),
        dim=model_cfg.encoder_dim,
        depth=model_cfg.encoder_depth,
        heads=model_cfg.encoder_heads,
        mlp_ratio=model_cfg.mlp_ratio,
        pos_embed=model_cfg.pos_embed,
        qkv_bias=model_cfg.qkv_bias,
        drop_path=model_cfg.drop_path,
    )


def vit_flops_per_token(dim: int, depth: int, tokens: int, mlp_ratio: float = 4.0) -> float:
    """Forward FLOPs per token of a ViT (2 x MACs): QKV/proj/MLP matmuls plus attention."""
    matmul = 2 * depth * (4 * dim * dim + 2 * mlp_ratio * dim * dim)
    attention = 2 * depth * 2 * tokens * dim
    return float(matmul + attention)


__all__ = [
    "SpectrogramViT", "PatchEmbed", "PositionalEmbedding", "sincos_2d", "gather_tokens",
    "encoder_from_config", "vit_flops_per_token", "adapt_to_grid",
]


def adapt_to_grid(encoder: SpectrogramViT, grid: tuple[int, int]) -> SpectrogramViT:
    """A copy of `encoder` for another patch grid (e.g. 8x64 pretraining -> 8x32 ESC-50).

    Sin-cos positions are recomputed for the new grid. Learned positions keep their
    values where the grids overlap (frequency rows and the earliest time columns) and are
    bilinearly interpolated along an axis that grows.
    """
    import copy

    import torch.nn.functional as F

    grid = tuple(grid)
    if grid == encoder.grid:
        return copy.deepcopy(encoder)
    adapted = copy.deepcopy(encoder)
    adapted.grid, adapted.num_patches = grid, grid[0] * grid[1]
    old = encoder.pos_embed
    if old.kind == "sincos":
        adapted.pos_embed = PositionalEmbedding(grid, encoder.dim, "sincos").to(old.table.device)
        return adapted
    table = old.table.detach().reshape(1, *encoder.grid, encoder.dim).permute(0, 3, 1, 2)
    rows, cols = max(grid[0], encoder.grid[0]), max(grid[1], encoder.grid[1])
    if (rows, cols) != encoder.grid:
        table = F.interpolate(table, size=(rows, cols), mode="bilinear", align_corners=False)
    table = table[:, :, : grid[0], : grid[1]].permute(0, 2, 3, 1).reshape(1, -1, encoder.dim)
    adapted.pos_embed = PositionalEmbedding(grid, encoder.dim, "learned").to(table.device)
    adapted.pos_embed.table.data.copy_(table)
    return adapted
