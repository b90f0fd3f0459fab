"""UniFormer-S for video, and the frame-level UniFormer-S of the paper's temporal study.

``uniformer_s`` follows Sense-X UniFormer (``video_classification/slowfast/models/uniformer.py``, UniFormer-S 16x4)
key for key, so its ``.pth`` files (``{"model": state_dict}``) load strictly:

* 4 stages, depths 3/4/8/3, widths 64/128/320/512, head dim 64 (1/2/5/8 heads), MLP ratio 4.
* Patch embeds: Conv3d 3x4x4 stride 2x4x4 (temporal pad 1) then three Conv3d 1x2x2 stride 1x2x2, each followed by
  a LayerNorm over channels.
* Stages 1-2 are ``CBlock``s (local relation aggregation: BN, 1x1x1 conv, depthwise 5x5x5 conv, 1x1x1 conv), stages
  3-4 ``SABlock``s (global self-attention over all T*H*W tokens through SDPA). Every block starts with a dynamic
  position encoding, a depthwise 3x3x3 conv added to its input.
* Final BatchNorm3d, global mean over T, H, W, Linear head. Logits out (no softmax) in train and eval.

Every layer is a convolution or acts per token, so any H x W works (portrait crops need no change); H and W that
are multiples of 32 use every pixel.

``uniformer_s_frame`` is the seed's frame-level variant (``UNIFORMER.FRAME_BASE``): the same network in 2D, i.e.
the image UniFormer-S (patch embeds 4x4 stride 4 then 2x2 stride 2, depthwise 3x3 position conv, 5x5 local
aggregation, BatchNorm2d). Frames are folded into the batch and processed independently; the final feature maps
are averaged over time and space before the (linear) head, which equals averaging the per-frame logits. Its state
dict has the image UniFormer-S layout, so ImageNet UniFormer-S weights load into it (head aside).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn as nn

from pmv.errors import ConfigError
from pmv.models.attention import DepthwiseConv3d, check_attention_impl, multi_head_attention
from pmv.models.layers import DropPath, checkpoint_flags, checkpointed, drop_path_rates
from pmv.models.registry import register_model

logger = logging.getLogger(__name__)

UNIFORMER_S_DEPTHS = (3, 4, 8, 3)
UNIFORMER_S_DIMS = (64, 128, 320, 512)
HEAD_DIM = 64
MLP_RATIO = 4.0
SA_LN_EPS = 1e-6  # LayerNorm inside SABlocks; the patch-embed LayerNorms keep PyTorch's 1e-5


class _Ops:
    """The 3D (video) or 2D (per-frame) flavour of the convolutions and batch norms."""

    def __init__(self, spatial_dims: int):
        self.dims = spatial_dims
        self.conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        self.batch_norm = nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d

    def depthwise(self, dim: int, kernel: int) -> nn.Module:
        if self.dims == 3:
            return DepthwiseConv3d(dim, kernel, 1, kernel // 2)
        return nn.Conv2d(dim, dim, kernel, 1, kernel // 2, groups=dim)

    def pointwise(self, dim_in: int, dim_out: int) -> nn.Module:
        return self.conv(dim_in, dim_out, 1)


class PatchEmbed(nn.Module):
    """A strided conv then a LayerNorm over channels (``norm`` is declared first, as in the reference keys)."""

    def __init__(self, proj: nn.Module, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.proj = proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        last = x.dim() - 1  # a non-negative dim: the TorchScript-based ONNX exporter mis-writes movedim(-1, 1)
        return self.norm(x.movedim(1, last)).movedim(last, 1)


class ConvMlp(nn.Module):
    def __init__(self, ops: _Ops, dim: int, hidden: int):
        super().__init__()
        self.fc1 = ops.pointwise(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = ops.pointwise(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CBlock(nn.Module):
    """Local MHRA: the "attention" is a depthwise 5x5(x5) conv between two pointwise convs, on BN-normed input."""

    def __init__(self, ops: _Ops, dim: int, drop_path: float = 0.0):
        super().__init__()
        self.pos_embed = ops.depthwise(dim, 3)
        self.norm1 = ops.batch_norm(dim)
        self.conv1 = ops.pointwise(dim, dim)
        self.conv2 = ops.pointwise(dim, dim)
        self.attn = ops.depthwise(dim, 5)
        self.drop_path = DropPath(drop_path)
        self.norm2 = ops.batch_norm(dim)
        self.mlp = ConvMlp(ops, dim, int(dim * MLP_RATIO))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Attention(nn.Module):
    """Global multi-head self-attention over a token sequence ``(B, N, C)``."""

    def __init__(self, dim: int, num_heads: int, attention_impl: str = "auto"):
        super().__init__()
        self.num_heads = num_heads
        self.attention_impl = check_attention_impl(attention_impl)
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        out = multi_head_attention(q, k, v, impl=self.attention_impl)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class SABlock(nn.Module):
    """Global MHRA: position conv, then a pre-norm transformer block over all (T*)H*W tokens."""

    def __init__(self, ops: _Ops, dim: int, drop_path: float = 0.0, attention_impl: str = "auto"):
        super().__init__()
        self.pos_embed = ops.depthwise(dim, 3)
        self.norm1 = nn.LayerNorm(dim, eps=SA_LN_EPS)
        self.attn = Attention(dim, dim // HEAD_DIM, attention_impl)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=SA_LN_EPS)
        self.mlp = Mlp(dim, int(dim * MLP_RATIO))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        shape = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens)))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        return tokens.transpose(1, 2).reshape(shape)


class UniFormer(nn.Module):
    """UniFormer over clips ``(N, 3, T, H, W)``; ``frame_level=True`` runs it per frame in 2D and averages over T."""

    # For pmv.models.checkpoint: the classifier, and its init when a checkpoint's class count differs.
    classifier_keys = ("head.weight", "head.bias")
    head_init_std = 0.02

    def __init__(
        self,
        num_classes: int = 400,
        input_size: tuple[int, int, int] = (16, 224, 224),
        depths: Sequence[int] = UNIFORMER_S_DEPTHS,
        dims: Sequence[int] = UNIFORMER_S_DIMS,
        drop_path: float = 0.1,
        dropout: float = 0.0,
        act_checkpoint: bool = False,
        checkpoint_blocks: Sequence[int] = (),
        attention_impl: str = "auto",
        frame_level: bool = False,
    ):
        super().__init__()
        if len(depths) != 4 or len(dims) != 4:
            raise ConfigError(f"UniFormer needs 4 stage depths and widths, got depths={list(depths)} dims={list(dims)}")
        if checkpoint_blocks and len(checkpoint_blocks) != 4:
            raise ConfigError(f"checkpoint_blocks={list(checkpoint_blocks)} needs one count per stage (4 stages)")
        if any(d % HEAD_DIM for d in dims[2:]):
            raise ConfigError(f"UniFormer attention stages need widths divisible by {HEAD_DIM}, got {list(dims)}")
        self.num_classes = num_classes
        self.input_size = tuple(int(v) for v in input_size)  # informational: the network is size-agnostic
        self.frame_level = frame_level
        ops = _Ops(2 if frame_level else 3)

        if frame_level:
            first = nn.Conv2d(3, dims[0], 4, 4)
        else:
            first = nn.Conv3d(3, dims[0], (3, 4, 4), (2, 4, 4), (1, 0, 0))
        self.patch_embed1 = PatchEmbed(first, dims[0])
        for stage in (2, 3, 4):
            down = ops.conv(dims[stage - 2], dims[stage - 1], (2,) * 2 if frame_level else (1, 2, 2),
                            (2,) * 2 if frame_level else (1, 2, 2))
            setattr(self, f"patch_embed{stage}", PatchEmbed(down, dims[stage - 1]))

        rates = iter(drop_path_rates(drop_path, sum(depths)))
        for stage, depth in enumerate(depths, start=1):
            if stage <= 2:
                blocks = [CBlock(ops, dims[stage - 1], next(rates)) for _ in range(depth)]
            else:
                blocks = [SABlock(ops, dims[stage - 1], next(rates), attention_impl) for _ in range(depth)]
            setattr(self, f"blocks{stage}", nn.ModuleList(blocks))
        self.norm = ops.batch_norm(dims[-1])
        self.head_dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dims[-1], num_classes)
        self.num_features = dims[-1]
        self.checkpoint_flags = checkpoint_flags(list(depths), act_checkpoint, list(checkpoint_blocks) or None)
        self._init_weights()

    def _init_weights(self) -> None:
        # UniFormer: Linear truncated normal 0.02 / bias 0, LayerNorm 1/0; convs and BNs keep PyTorch defaults.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def set_attention_impl(self, impl: str) -> None:
        """Switch the global-attention blocks between ``"auto"`` (per device and dtype), ``"sdpa"`` and ``"math"``."""
        check_attention_impl(impl)
        for module in self.modules():
            if isinstance(module, Attention):
                module.attention_impl = impl

    def forward_features(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Pooled features ``(N, 512)``: mean over T, H, W of the final (batch-normed) feature map."""
        if isinstance(x, (list, tuple)):  # PySlowFast passes a list of pathways; UniFormer has one
            (x,) = x
        batch, frames = x.shape[0], x.shape[2]
        if self.frame_level:
            x = x.transpose(1, 2).flatten(0, 1)  # (N*T, 3, H, W): frames are independent samples
        for stage in range(1, 5):
            x = getattr(self, f"patch_embed{stage}")(x)
            for block, use_checkpoint in zip(getattr(self, f"blocks{stage}"), self.checkpoint_flags[stage - 1]):
                x = checkpointed(block, x, enabled=use_checkpoint)
        x = self.norm(x).flatten(2).mean(-1)
        if self.frame_level:
            x = x.reshape(batch, frames, -1).mean(1)
        return x

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        return self.head(self.head_dropout(self.forward_features(x)))

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Inflate 2D conv kernels (image / frame-level UniFormer weights) into this 3D model.

        As the reference's pretrained loading: a 2D kernel is repeated over the 3D kernel's T taps and divided by
        T, so a clip of identical frames gives the 2D response. Other keys pass unchanged.
        """
        if self.frame_level:
            return state_dict
        own = self.state_dict()
        adapted = dict(state_dict)
        for key, value in state_dict.items():
            target = own.get(key)
            if target is None or value.ndim != 4 or target.ndim != 5:
                continue
            taps = target.shape[2]
            if value.shape[:2] == target.shape[:2] and value.shape[2:] == target.shape[3:]:
                adapted[key] = value.unsqueeze(2).repeat(1, 1, taps, 1, 1) / taps
                logger.info("inflated %s from %s to %s", key, tuple(value.shape), tuple(target.shape))
        return adapted


def _build(frame_level: bool, **kwargs) -> UniFormer:
    return UniFormer(frame_level=frame_level, **kwargs)


@register_model
def uniformer_s(
    num_classes: int = 400,
    input_size: tuple[int, int, int] = (16, 224, 224),
    drop_path: float = 0.1,
    dropout: float = 0.0,
    act_checkpoint: bool = False,
    checkpoint_blocks: Sequence[int] = (),
    attention_impl: str = "auto",
    stage_depths: Sequence[int] = UNIFORMER_S_DEPTHS,
) -> UniFormer:
    """UniFormer-S 16x4 for video (21.4M parameters at 400 classes); any crop size.

    ``dropout`` is a head dropout; the reference UniFormer has none (it ignores MODEL.DROPOUT_RATE), hence 0.
    ``act_checkpoint`` with ``checkpoint_blocks=[0, 0, 1, 0]`` recomputes the first block of stage 3 in backward
    (the seed's MODEL.CHECKPOINT_NUM); an empty ``checkpoint_blocks`` checkpoints every block.
    """
    return _build(
        False,
        num_classes=num_classes,
        input_size=input_size,
        depths=stage_depths,
        drop_path=drop_path,
        dropout=dropout,
        act_checkpoint=act_checkpoint,
        checkpoint_blocks=checkpoint_blocks,
        attention_impl=attention_impl,
    )


@register_model
def uniformer_s_frame(
    num_classes: int = 400,
    input_size: tuple[int, int, int] = (16, 224, 224),
    drop_path: float = 0.1,
    dropout: float = 0.0,
    act_checkpoint: bool = False,
    checkpoint_blocks: Sequence[int] = (),
    attention_impl: str = "auto",
    stage_depths: Sequence[int] = UNIFORMER_S_DEPTHS,
) -> UniFormer:
    """Frame-level UniFormer-S (seed ``UNIFORMER.FRAME_BASE``): a 2D UniFormer-S on every frame, averaged over T.

    No temporal modelling at all: the clip's logits are the mean of its frames' logits. Use it as the
    "no temporal information" baseline of the temporal study.
    """
    return _build(
        True,
        num_classes=num_classes,
        input_size=input_size,
        depths=stage_depths,
        drop_path=drop_path,
        dropout=dropout,
        act_checkpoint=act_checkpoint,
        checkpoint_blocks=checkpoint_blocks,
        attention_impl=attention_impl,
    )
