"""MViTv2-S (16x4) with decomposed relative positions, for square and portrait (rectangular) crops.

Layout and state-dict keys follow PySlowFast's MViTv2 (``MVITv2_S_16x4.yaml``), so its checkpoints load as they
are; the portrait changes follow the PMV seed fork:

* The relative-position tables are sized from H and W separately (``rel_pos_h``: ``2 * max(H_q, H_kv) - 1`` rows,
  ``rel_pos_w`` likewise with W), so a 256x192 build has tables of 127 / 95 rows in block 0.
* :meth:`MViT.adapt_state_dict` linearly resamples ``rel_pos_*`` tables whose length differs, so weights trained
  at 256x192 load into a 224x224 model and the other way round.
* At run time the model is not tied to the size it was built for: when the token grid differs, the tables are
  resampled on the fly (as the seed's ``get_rel_pos`` does), so any clip whose H and W are multiples of 32 runs
  (e.g. a 224x224-built model tested on 288x192 crops). Accuracy away from the built size is of course not
  guaranteed; the first such call is logged.

Attention goes through ``scaled_dot_product_attention`` with the rel-pos term as an additive float mask
(``attention_impl="sdpa"``); ``attention_impl="math"`` is the explicit softmax path used as the reference;
``attention_impl="auto"`` (the default) takes the explicit path on CPU under bf16/fp16, where it is faster.
The forward returns logits (no softmax) in train and eval.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pmv.errors import ConfigError
from pmv.models.attention import (
    DepthwiseConv3d,
    check_attention_impl,
    decomposed_rel_pos_bias,
    multi_head_attention,
    rel_pos_table_length,
    resize_rel_pos,
)
from pmv.models.layers import DropPath, checkpoint_flags, checkpointed, drop_path_rates
from pmv.models.registry import register_model

logger = logging.getLogger(__name__)

Grid = tuple[int, int, int]

# MViTv2-S: 4 stages of (blocks, width, heads); each later stage starts with a 2x spatial query pooling.
MVITV2_S_STAGE_DEPTHS = (1, 2, 11, 2)
MVITV2_S_STAGE_DIMS = (96, 192, 384, 768)
MVITV2_S_STAGE_HEADS = (1, 2, 4, 8)
PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING = (3, 7, 7), (2, 4, 4), (1, 3, 3)
POOL_KERNEL = (3, 3, 3)
KV_STRIDE_FIRST_STAGE = (1, 8, 8)  # POOL_KV_STRIDE_ADAPTIVE: divided by each query stride down the net
LN_EPS = 1e-6


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _pooled_grid(grid: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> Grid:
    return tuple(_conv_out(n, k, s, k // 2) for n, k, s in zip(grid, kernel, stride))  # type: ignore[return-value]


def _norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LN_EPS)


def _pool_tokens(x: torch.Tensor, pool: nn.Module, grid: Grid) -> tuple[torch.Tensor, Grid]:
    """Pool the grid tokens of ``(B, heads, 1 + T*H*W, C)`` with a 3D op; the cls token (index 0) passes as is."""
    cls_token, tokens = x[:, :, :1], x[:, :, 1:]
    batch, heads, _, channels = tokens.shape
    tokens = tokens.reshape(batch * heads, *grid, channels).permute(0, 4, 1, 2, 3)
    tokens = pool(tokens)
    new_grid = tuple(tokens.shape[2:])
    tokens = tokens.flatten(2).transpose(1, 2).reshape(batch, heads, -1, channels)
    return torch.cat((cls_token, tokens), dim=2), new_grid  # type: ignore[return-value]


class PatchEmbed(nn.Module):
    """Conv3d 3x7x7 stride 2x4x4: ``(B, 3, T, H, W)`` -> tokens ``(B, T/2 * H/4 * W/4, 96)`` and their grid."""

    def __init__(self, dim_in: int = 3, dim_out: int = 96):
        super().__init__()
        self.proj = nn.Conv3d(dim_in, dim_out, PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])  # type: ignore[return-value]


class Mlp(nn.Module):
    def __init__(self, dim_in: int, hidden: int, dim_out: int):
        super().__init__()
        self.fc1 = nn.Linear(dim_in, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PoolingAttention(nn.Module):
    """MViTv2 multi-head pooling attention: conv-pooled Q/K/V, decomposed rel-pos, residual pooling of Q.

    ``input_grid`` (T, H, W) is the token grid this block is built for; it sizes the rel-pos tables.
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        num_heads: int,
        input_grid: Grid,
        stride_q: Grid,
        stride_kv: Grid,
        attention_impl: str = "auto",
    ):
        super().__init__()
        self.num_heads = num_heads
        self.dim_out = dim_out
        head_dim = dim_out // num_heads
        self.attention_impl = check_attention_impl(attention_impl)
        q_grid = _pooled_grid(input_grid, POOL_KERNEL, stride_q)
        kv_grid = _pooled_grid(input_grid, POOL_KERNEL, stride_kv)
        # Parameters before submodules: the state-dict order then matches PySlowFast's.
        self.rel_pos_h = nn.Parameter(torch.zeros(rel_pos_table_length(q_grid[1], kv_grid[1]), head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(rel_pos_table_length(q_grid[2], kv_grid[2]), head_dim))
        self.rel_pos_t = nn.Parameter(torch.zeros(rel_pos_table_length(q_grid[0], kv_grid[0]), head_dim))
        self.qkv = nn.Linear(dim_in, 3 * dim_out, bias=True)
        self.proj = nn.Linear(dim_out, dim_out)
        padding = tuple(k // 2 for k in POOL_KERNEL)
        for name, stride in (("q", stride_q), ("k", stride_kv), ("v", stride_kv)):
            pool = DepthwiseConv3d(head_dim, POOL_KERNEL, stride, padding, bias=False)
            setattr(self, f"pool_{name}", pool)
            setattr(self, f"norm_{name}", _norm(head_dim))

    def forward(self, x: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, Grid]:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, q_grid = _pool_tokens(q, self.pool_q, grid)
        k, k_grid = _pool_tokens(k, self.pool_k, grid)
        v, _ = _pool_tokens(v, self.pool_v, grid)
        q, k, v = self.norm_q(q), self.norm_k(k), self.norm_v(v)

        bias = decomposed_rel_pos_bias(
            q[:, :, 1:], q_grid, k_grid, self.rel_pos_t, self.rel_pos_h, self.rel_pos_w
        )
        bias = F.pad(bias, (1, 0, 1, 0))  # the cls token's row and column get no positional term
        out = multi_head_attention(q, k, v, bias, impl=self.attention_impl)
        # Residual pooling: add the pooled queries back (grid tokens only).
        out = torch.cat((out[:, :, :1], out[:, :, 1:] + q[:, :, 1:]), dim=2)
        out = out.transpose(1, 2).reshape(batch, -1, self.dim_out)
        return self.proj(out), q_grid


class MultiScaleBlock(nn.Module):
    """Pre-norm block: pooling attention (+ max-pooled, projected skip), then MLP; drop path on both branches."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        num_heads: int,
        input_grid: Grid,
        stride_q: Grid,
        stride_kv: Grid,
        drop_path: float = 0.0,
        mlp_ratio: float = 4.0,
        attention_impl: str = "auto",
    ):
        super().__init__()
        self.norm1 = _norm(dim_in)
        self.attn = PoolingAttention(dim_in, dim_out, num_heads, input_grid, stride_q, stride_kv, attention_impl)
        self.drop_path = DropPath(drop_path)
        self.norm2 = _norm(dim_out)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio), dim_out)
        if dim_in != dim_out:
            self.proj = nn.Linear(dim_in, dim_out)
        self.skip_pool = None
        if any(s > 1 for s in stride_q):
            kernel = tuple(s + 1 if s > 1 else s for s in stride_q)
            self.skip_pool = nn.MaxPool3d(kernel, stride_q, tuple(k // 2 for k in kernel))

    def forward(self, x: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, Grid]:
        x_norm = self.norm1(x)
        attended, new_grid = self.attn(x_norm, grid)
        if hasattr(self, "proj"):
            x = self.proj(x_norm)  # MViTv2 "dim_mul_in_att": the skip takes the normed, projected input
        if self.skip_pool is not None:
            x = _pool_tokens(x.unsqueeze(1), self.skip_pool, grid)[0].squeeze(1)
        x = x + self.drop_path(attended)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, new_grid


class TransformerHead(nn.Module):
    """Dropout then Linear on the cls feature (``head.projection``); logits out, no softmax."""

    def __init__(self, dim_in: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(dim_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.dropout(x))


class MViT(nn.Module):
    """MViTv2 for clips ``(N, 3, T, H, W)``; returns logits ``(N, num_classes)``."""

    # For pmv.models.checkpoint: the classifier, and its init when a checkpoint's class count differs.
    classifier_keys = ("head.projection.weight", "head.projection.bias")
    head_init_std = 0.02

    def __init__(
        self,
        num_classes: int = 400,
        input_size: tuple[int, int, int] = (16, 224, 224),
        stage_depths: Sequence[int] = MVITV2_S_STAGE_DEPTHS,
        stage_dims: Sequence[int] = MVITV2_S_STAGE_DIMS,
        stage_heads: Sequence[int] = MVITV2_S_STAGE_HEADS,
        drop_path: float = 0.2,
        dropout: float = 0.5,
        act_checkpoint: bool = False,
        checkpoint_blocks: Sequence[int] = (),
        attention_impl: str = "auto",
    ):
        super().__init__()
        frames, height, width = (int(v) for v in input_size)
        if frames < 1 or height % 32 or width % 32 or height <= 0 or width <= 0:
            raise ConfigError(
                f"MViT input_size (T, H, W) = {tuple(input_size)}: H and W must be positive multiples of 32 "
                "(patch stride 4, then three 2x poolings) and T >= 1; pick a crop size like 224x224 or 256x192"
            )
        if not (len(stage_depths) == len(stage_dims) == len(stage_heads)):
            raise ConfigError("MViT stage_depths, stage_dims and stage_heads must have one entry per stage")
        if checkpoint_blocks and len(checkpoint_blocks) != len(stage_depths):
            raise ConfigError(
                f"checkpoint_blocks={list(checkpoint_blocks)} needs one count per stage ({len(stage_depths)} stages)"
            )
        self.num_classes = num_classes
        self.input_size = (frames, height, width)
        self.patch_grid: Grid = (
            _conv_out(frames, PATCH_KERNEL[0], PATCH_STRIDE[0], PATCH_PADDING[0]),
            _conv_out(height, PATCH_KERNEL[1], PATCH_STRIDE[1], PATCH_PADDING[1]),
            _conv_out(width, PATCH_KERNEL[2], PATCH_STRIDE[2], PATCH_PADDING[2]),
        )
        self._warned_grids: set[Grid] = set()

        self.cls_token = nn.Parameter(torch.zeros(1, 1, stage_dims[0]))
        self.patch_embed = PatchEmbed(3, stage_dims[0])
        rates = drop_path_rates(drop_path, sum(stage_depths))
        flags = checkpoint_flags(list(stage_depths), act_checkpoint, list(checkpoint_blocks) or None)
        self.checkpoint_flags = [flag for stage in flags for flag in stage]

        self.blocks = nn.ModuleList()
        grid, dim, kv_stride = self.patch_grid, stage_dims[0], KV_STRIDE_FIRST_STAGE
        for stage, depth in enumerate(stage_depths):
            for i in range(depth):
                stride_q: Grid = (1, 2, 2) if stage > 0 and i == 0 else (1, 1, 1)
                if stride_q != (1, 1, 1):
                    kv_stride = tuple(max(kv // q, 1) for kv, q in zip(kv_stride, stride_q))  # type: ignore
                block = MultiScaleBlock(
                    dim,
                    stage_dims[stage],
                    stage_heads[stage],
                    grid,
                    stride_q,
                    kv_stride,
                    drop_path=rates[len(self.blocks)],
                    attention_impl=attention_impl,
                )
                self.blocks.append(block)
                grid = _pooled_grid(grid, POOL_KERNEL, stride_q)
                dim = stage_dims[stage]
        self.norm = _norm(dim)
        self.head = TransformerHead(dim, num_classes, dropout)
        self.num_features = dim
        self._init_weights()

    def _init_weights(self) -> None:
        # PySlowFast MViT: truncated normal 0.02 for Linear/Conv weights, rel-pos tables and the cls token;
        # Linear biases 0, LayerNorm 1/0. Conv biases keep PyTorch's default.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv3d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for name, param in self.named_parameters():
            if name == "cls_token" or ".rel_pos_" in name:
                nn.init.trunc_normal_(param, std=0.02)

    def set_attention_impl(self, impl: str) -> None:
        """Switch every block between ``"auto"`` (per device and dtype), ``"sdpa"`` and ``"math"`` (same weights,
        same result up to rounding)."""
        check_attention_impl(impl)
        for module in self.modules():
            if isinstance(module, PoolingAttention):
                module.attention_impl = impl

    def forward_features(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """The normed cls-token feature ``(N, 768)`` that the head classifies."""
        if isinstance(x, (list, tuple)):  # PySlowFast passes a list of pathways; MViT has one
            (x,) = x
        tokens, grid = self.patch_embed(x)
        if grid != self.patch_grid and grid not in self._warned_grids:
            self._warned_grids.add(grid)
            logger.info(
                "MViT built for token grid %s (input %s) runs on grid %s: rel-pos tables are resampled",
                self.patch_grid, self.input_size, grid,
            )
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        for block, use_checkpoint in zip(self.blocks, self.checkpoint_flags):
            tokens, grid = checkpointed(block, tokens, grid, enabled=use_checkpoint)
        return self.norm(tokens)[:, 0]

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Resample ``rel_pos_*`` tables whose length differs from this model's (other crop size / T)."""
        own = self.state_dict()
        adapted = dict(state_dict)
        for key, value in state_dict.items():
            if ".rel_pos_" not in key or key not in own:
                continue
            target = own[key]
            if value.ndim == 2 and value.shape[1] == target.shape[1] and value.shape[0] != target.shape[0]:
                adapted[key] = resize_rel_pos(value.float(), target.shape[0]).to(value.dtype)
                logger.info("interpolated %s from %d to %d rows", key, value.shape[0], target.shape[0])
        return adapted


@register_model
def mvitv2_s(
    num_classes: int = 400,
    input_size: tuple[int, int, int] = (16, 224, 224),
    drop_path: float = 0.2,
    dropout: float = 0.5,
    act_checkpoint: bool = False,
    checkpoint_blocks: Sequence[int] = (),
    attention_impl: str = "auto",
    stage_depths: Sequence[int] = MVITV2_S_STAGE_DEPTHS,
) -> MViT:
    """MViTv2-S 16x4 (34.5M parameters at 400 classes).

    ``input_size`` (T, H, W) sizes the rel-pos tables (H, W multiples of 32; portrait crops like 256x192 work).
    ``act_checkpoint`` recomputes block activations in backward (all blocks, or the first ``checkpoint_blocks[s]``
    blocks of stage s). ``stage_depths`` (default 1, 2, 11, 2) can be reduced for quick experiments.
    """
    return MViT(
        num_classes=num_classes,
        input_size=input_size,
        stage_depths=stage_depths,
        drop_path=drop_path,
        dropout=dropout,
        act_checkpoint=act_checkpoint,
        checkpoint_blocks=checkpoint_blocks,
        attention_impl=attention_impl,
    )
