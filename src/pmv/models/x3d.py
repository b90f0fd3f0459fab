"""X3D (Feichtenhofer, CVPR 2020) in PySlowFast's key layout: ``x3d_xs``, ``x3d_s``, ``x3d_m``.

The three variants share one network (width factor 2.0, depth factor 2.2, bottleneck 2.25; 3.79 M parameters at
400 classes) and differ only in the clip they are trained on: XS 4x160x160, S 13x160x160, M 16x224x224 (T x H x W).
State-dict keys and shapes equal the seed's X3D-M listing (``statedict_x3d_m.txt``), so PySlowFast ``.pyth``
checkpoints load without renaming.

Layout: stem ``s1`` = 1x3x3 conv (stride 2 in H and W) + depthwise 5x1x1 temporal conv + BN + ReLU (no max pool);
stages ``s2..s5`` (24/48/96/192 channels, 3/5/11/7 blocks, spatial stride 2 in the first block of each, no temporal
stride); each block = 1x1x1 -> BN -> ReLU -> depthwise 3x3x3 -> BN -> SE (every other block) -> Swish -> 1x1x1 -> BN
(zero-init gamma) plus shortcut. The head pools adaptively, so any H x W runs (portrait or landscape), which
replaces the seed's pair of fixed portrait/landscape pools.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from pmv.models.heads import X3DHead
from pmv.models.layers import (
    InputSpec,
    PathwayStage,
    PathwayStems,
    ResBlock,
    SqueezeExcite3d,
    Swish,
    batch_norm3d,
    build_with_options,
    checkpoint_flags,
    init_resnet_weights,
    round_width,
)
from pmv.models.registry import register_model


class X3DStem(nn.Module):
    """Spatial 1x3x3 conv (stride 1x2x2), then a depthwise temporal conv, BN, ReLU."""

    def __init__(self, dim_in: int, dim_out: int, temporal_kernel: int = 5):
        super().__init__()
        self.conv_xy = nn.Conv3d(dim_in, dim_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv = nn.Conv3d(
            dim_out,
            dim_out,
            (temporal_kernel, 1, 1),
            padding=(temporal_kernel // 2, 0, 0),
            groups=dim_out,
            bias=False,
        )
        self.bn = batch_norm3d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(self.conv_xy(x))))


class X3DTransform(nn.Module):
    """The X3D bottleneck: 1x1x1 expand, depthwise 3x3x3 (carries the stride), optional SE, Swish, 1x1x1 project."""

    def __init__(self, dim_in: int, dim_out: int, dim_inner: int, stride: int, use_se: bool, se_ratio: float = 0.0625):
        super().__init__()
        self.a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.a_bn = batch_norm3d(dim_inner)
        self.b = nn.Conv3d(
            dim_inner, dim_inner, 3, stride=(1, stride, stride), padding=1, groups=dim_inner, bias=False
        )
        self.b_bn = batch_norm3d(dim_inner)
        if use_se:
            self.se = SqueezeExcite3d(dim_inner, se_ratio)
        self.b_act = Swish()
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = batch_norm3d(dim_out, zero_init=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.a_bn(self.a(x)))
        x = self.b_bn(self.b(x))
        if hasattr(self, "se"):
            x = self.se(x)
        x = self.b_act(x)
        return self.c_bn(self.c(x))


class X3D(nn.Module):
    """A single-pathway X3D network. ``forward(clip)`` with ``clip`` ``N x 3 x T x H x W`` returns logits ``N x K``."""

    def __init__(
        self,
        num_classes: int = 400,
        input_size: tuple[int, int, int] = (16, 224, 224),
        width_factor: float = 2.0,
        depth_factor: float = 2.2,
        bottleneck_factor: float = 2.25,
        dim_c1: int = 12,
        dim_c5: int = 2048,
        dropout: float = 0.5,
        drop_path: float = 0.0,
        act_checkpoint: bool = False,
        checkpoint_blocks: list[int] | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.input_spec = InputSpec(kind="clip", num_frames=input_size[0], crop=(input_size[1], input_size[2]))
        dim_stem = round_width(dim_c1, width_factor)
        self.s1 = PathwayStems([X3DStem(3, dim_stem)])

        # (base blocks, base width) per stage; widths double per stage from dim_c1 (res2 is not scaled).
        stage_widths = [dim_c1]
        for _ in range(3):
            stage_widths.append(round_width(stage_widths[-1], 2.0))
        base_blocks = [1, 2, 5, 3]
        depths = [int(math.ceil(depth_factor * b)) for b in base_blocks]
        flags = checkpoint_flags(depths, act_checkpoint, checkpoint_blocks)

        dim_in = dim_stem
        for stage, (width, depth) in enumerate(zip(stage_widths, depths)):
            dim_out = round_width(width, width_factor)
            dim_inner = int(bottleneck_factor * dim_out)
            # PySlowFast's drop-connect grows with depth: rate * (stage index from res2) / (stages + 1).
            stage_drop = drop_path * (stage + 2) / (len(depths) + 1)
            blocks = []
            for index in range(depth):
                stride = 2 if index == 0 else 1
                transform = X3DTransform(
                    dim_in if index == 0 else dim_out, dim_out, dim_inner, stride, use_se=(index % 2 == 0)
                )
                blocks.append(ResBlock(dim_in if index == 0 else dim_out, dim_out, stride, transform, stage_drop))
            self.add_module(f"s{stage + 2}", PathwayStage([blocks], [flags[stage]]))
            dim_in = dim_out

        self.head = X3DHead(dim_in, dim_inner, dim_c5, num_classes, dropout)
        init_resnet_weights(self, fc_init_std=0.01, zero_init_final_bn=True)

    def forward_features(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.s1([clip])
        for stage in (self.s2, self.s3, self.s4, self.s5):
            x = stage(x)
        return x[0]

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if isinstance(clip, (list, tuple)):  # PySlowFast passes single-pathway inputs as a one-element list
            (clip,) = clip
        return self.head(self.forward_features(clip))


def _x3d(name: str, num_classes: int, input_size, options) -> X3D:
    return build_with_options(X3D, name, num_classes=num_classes, input_size=tuple(input_size), **options)


@register_model
def x3d_xs(num_classes: int = 400, input_size=(4, 160, 160), **options) -> X3D:
    """X3D-XS: the X3D-M network trained on 4 frames (stride 12) at 160x160 (test crop 182)."""
    return _x3d("x3d_xs", num_classes, input_size, options)


@register_model
def x3d_s(num_classes: int = 400, input_size=(13, 160, 160), **options) -> X3D:
    """X3D-S: the X3D-M network trained on 13 frames (stride 6) at 160x160 (test crop 182)."""
    return _x3d("x3d_s", num_classes, input_size, options)


@register_model
def x3d_m(num_classes: int = 400, input_size=(16, 224, 224), **options) -> X3D:
    """X3D-M: 16 frames (stride 5) at 224x224 (test crop 256); the PMV-400 paper's CNN baseline."""
    return _x3d("x3d_m", num_classes, input_size, options)
