"""Attention helpers shared by the transformer models (MViTv2, UniFormer).

* ``multi_head_attention``: one entry point for softmax attention with an optional additive float bias, computed
  either by ``torch.nn.functional.scaled_dot_product_attention`` (``impl="sdpa"``, picks flash / memory-efficient
  kernels on GPU) or by the explicit ``softmax(q k^T * scale + bias) v`` (``impl="math"``, the reference).
  ``impl="auto"`` (the models' default) picks per call with :func:`choose_attention_impl` (device, dtype and
  how the CPU computes bf16).
* Decomposed relative positions of MViTv2 (separate tables for T, H and W), turned into an additive bias so they can
  go through SDPA as ``attn_mask``.
* ``DepthwiseConv3d``: a depthwise Conv3d kept in fp32 under autocast (cuDNN's low-precision kernels are slow).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ATTENTION_IMPLS = ("auto", "sdpa", "math")
_LOW_PRECISION = (torch.bfloat16, torch.float16)


def check_attention_impl(impl: str) -> str:
    from pmv.errors import ConfigError

    if impl not in ATTENTION_IMPLS:
        raise ConfigError(f"attention_impl={impl!r} is not known; use one of {', '.join(ATTENTION_IMPLS)}")
    return impl


def cpu_bf16_support() -> str:
    """How this CPU computes bf16: ``"amx"`` (AMX tiles), ``"avx512_bf16"`` (AVX512-BF16 dot products, no AMX) or
    ``"none"`` (converted to fp32 inside the kernels). Probed once."""
    if _BF16_SUPPORT[0] is None:
        if bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()):
            _BF16_SUPPORT[0] = "amx"
        elif bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()):
            _BF16_SUPPORT[0] = "avx512_bf16"
        else:
            _BF16_SUPPORT[0] = "none"
    return _BF16_SUPPORT[0]


_BF16_SUPPORT: list = [None]


def choose_attention_impl(q: torch.Tensor) -> str:
    """The faster path for these inputs, as measured (``benchmarks/models.py --bf16-attention``): ``"math"`` on a
    CPU with AVX512-BF16 but no AMX when the attention runs in bf16/fp16 (autocast or half inputs), ``"sdpa"``
    everywhere else.

    Why, bf16 forwards on three hosts of this VM: with AVX512-BF16 (the issue's measurement) SDPA was 1.5x slower
    than the explicit path for UniFormer-S (0.266 s vs 0.173 s) and 1.2x for MViTv2-S (0.522 s vs 0.431 s); with
    AMX (SDPA's CPU kernel then uses the tiles) SDPA was the faster one, 1.16-1.23x for UniFormer-S and 1.11-1.12x
    for MViTv2-S; without native bf16 too (UniFormer-S 0.29 vs 0.22 clips/s, MViTv2-S 0.15 vs 0.12, one thread).
    In fp32 and on GPUs SDPA is the faster one.
    """
    if q.device.type != "cpu" or cpu_bf16_support() != "avx512_bf16":
        return "sdpa"
    if q.dtype in _LOW_PRECISION:
        return "math"
    if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") in _LOW_PRECISION:
        return "math"
    return "sdpa"


def multi_head_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    impl: str = "sdpa",
    dropout: float = 0.0,
) -> torch.Tensor:
    """Softmax attention over ``(B, heads, N, head_dim)`` tensors, scale ``head_dim ** -0.5``.

    ``bias`` (broadcastable to ``(B, heads, Nq, Nk)``) is added to the scaled logits before the softmax.
    """
    scale = q.shape[-1] ** -0.5
    if impl == "auto":
        impl = choose_attention_impl(q)
    if impl == "sdpa":
        if bias is not None:
            bias = bias.to(q.dtype)  # SDPA wants the float mask in the query dtype (e.g. under autocast)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, scale=scale)
    if impl == "math":
        logits = (q * scale) @ k.transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        weights = logits.softmax(dim=-1)
        if dropout > 0.0:
            weights = F.dropout(weights, p=dropout)
        return weights @ v
    raise ValueError(f"unknown attention impl {impl!r}; use one of {ATTENTION_IMPLS}")


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly resample a ``(L, C)`` relative-position table to ``(length, C)`` (no-op when L == length)."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.t().unsqueeze(0), size=length, mode="linear", align_corners=False)
    return resized.squeeze(0).t()


def rel_pos_table_length(q_size: int, k_size: int) -> int:
    """Entries a decomposed rel-pos table needs along one axis: every offset between a query and a key."""
    return 2 * max(q_size, k_size) - 1


def rel_pos_indices(q_size: int, k_size: int, device: torch.device | None = None) -> torch.Tensor:
    """``(q_size, k_size)`` indices into a table of ``rel_pos_table_length`` entries.

    When query and key grids differ (pooled keys), coordinates of the coarser grid are stretched onto the finer
    one so that an offset means the same physical distance in every block (MViTv2).
    """
    q_ratio = max(k_size / q_size, 1.0)
    k_ratio = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size, device=device)[:, None] * q_ratio
    k_coords = torch.arange(k_size, device=device)[None, :] * k_ratio
    return (q_coords - k_coords + (k_size - 1) * k_ratio).long()


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    q_shape: tuple[int, int, int],
    k_shape: tuple[int, int, int],
    rel_pos_t: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
) -> torch.Tensor:
    """MViTv2 decomposed relative-position term as an additive attention bias.

    ``q``: ``(B, heads, Tq*Hq*Wq, C)`` queries of the grid tokens only (no cls token), unscaled.
    Returns ``(B, heads, Tq*Hq*Wq, Tk*Hk*Wk)``: ``q . R_t[t_q, t_k] + q . R_h[h_q, h_k] + q . R_w[w_q, w_k]``.
    Tables whose length does not fit the grids are linearly resampled (so other input sizes work).
    """
    (qt, qh, qw), (kt, kh, kw) = q_shape, k_shape
    batch, heads, _, dim = q.shape
    r_t = resize_rel_pos(rel_pos_t, rel_pos_table_length(qt, kt))[rel_pos_indices(qt, kt, q.device)]
    r_h = resize_rel_pos(rel_pos_h, rel_pos_table_length(qh, kh))[rel_pos_indices(qh, kh, q.device)]
    r_w = resize_rel_pos(rel_pos_w, rel_pos_table_length(qw, kw))[rel_pos_indices(qw, kw, q.device)]
    grid_q = q.reshape(batch, heads, qt, qh, qw, dim)
    bias_t = torch.einsum("bnthwc,tkc->bnthwk", grid_q, r_t.to(q.dtype))
    bias_h = torch.einsum("bnthwc,hkc->bnthwk", grid_q, r_h.to(q.dtype))
    bias_w = torch.einsum("bnthwc,wkc->bnthwk", grid_q, r_w.to(q.dtype))
    bias = (
        bias_t[..., :, None, None]
        + bias_h[..., None, :, None]
        + bias_w[..., None, None, :]
    )
    return bias.reshape(batch, heads, qt * qh * qw, kt * kh * kw)


class DepthwiseConv3d(nn.Conv3d):
    """A depthwise (channel-wise) Conv3d that runs in fp32 even under autocast.

    cuDNN's bf16/fp16 weight-gradient kernels for depthwise 3D convolutions are very slow: on an H200 they took
    ~95% of a bf16 UniFormer-S training step, which ran 2.5x slower than the same step in fp32. These convs are a
    small share of the FLOPs, so computing them in fp32 costs little; the output goes back to the input dtype.
    Used for MViT's Q/K/V pooling and UniFormer's position / local-aggregation convs. State-dict keys are those of
    a plain ``nn.Conv3d``.
    """

    def __init__(self, channels: int, kernel_size, stride=1, padding=0, bias: bool = True):
        super().__init__(channels, channels, kernel_size, stride, padding, groups=channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "meta" and torch.is_autocast_enabled(x.device.type):  # meta has no autocast
            with torch.autocast(x.device.type, enabled=False):
                return super().forward(x.float()).to(x.dtype)
        return super().forward(x)
