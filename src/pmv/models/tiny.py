"""``tiny``: a small, fast 3-D CNN for CPU demos and tests (56 k parameters at 8 classes, 131 k at 400).

The CPU demo's synthetic classes differ by (a) the direction of motion and (b) *where* along the tall axis the
action happens (top vs bottom of a portrait frame). Two design choices follow:

* It sees motion: after a cheap spatial stem, every unit is a factorised (2+1)-D conv, a 1x3x3 spatial conv then
  a 3x1x1 temporal conv, so features compare neighbouring frames (direction of motion) from the first unit on.
* It sees absolute vertical position. Convolutions are translation-equivariant and a global average pool then
  throws away *where* a feature fired, so "moving square at the top" and "at the bottom" would look the same.
  Two cheap fixes are combined: CoordConv (normalised y and x planes in [-1, 1] concatenated to the RGB input
  at the stem, so filters can respond differently by position) and a coarse positional pool (features are
  averaged over ``position_bins`` horizontal bands along H instead of one global average, and the bands are
  concatenated before the classifier).

Both are size-agnostic: the coordinate planes are built for the input's H x W and the band pool is adaptive,
so the model accepts any H x W (portrait or landscape) and any T >= 1.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pmv.models.heads import LinearHead
from pmv.models.layers import (
    ConvBnAct,
    InputSpec,
    build_with_options,
    checkpointed,
    init_resnet_weights,
)
from pmv.models.registry import register_model


def coordinate_planes(clip: torch.Tensor) -> torch.Tensor:
    """``N x 2 x T x H x W`` planes holding each pixel's y and x, normalised to [-1, 1] (top/left = -1)."""
    n, _, t, h, w = clip.shape
    ys = torch.linspace(-1.0, 1.0, h, device=clip.device, dtype=clip.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=clip.device, dtype=clip.dtype)
    y_plane = ys.view(1, 1, 1, h, 1).expand(n, 1, t, h, w)
    x_plane = xs.view(1, 1, 1, 1, w).expand(n, 1, t, h, w)
    return torch.cat([y_plane, x_plane], dim=1)


class SpatioTemporalUnit(nn.Module):
    """(2+1)-D conv unit: 1x3x3 spatial conv (spatial stride) -> BN -> ReLU -> 3x1x1 temporal conv -> BN -> ReLU."""

    def __init__(self, dim_in: int, dim_out: int, spatial_stride: int, temporal_stride: int):
        super().__init__()
        self.spatial = ConvBnAct(dim_in, dim_out, (1, 3, 3), stride=(1, spatial_stride, spatial_stride))
        self.temporal = ConvBnAct(dim_out, dim_out, (3, 1, 1), stride=(temporal_stride, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.spatial(x))


class TinyVideoNet(nn.Module):
    """CoordConv 1x3x3 stem, three (2+1)-D units, band pooling along H, linear classifier. Returns logits."""

    def __init__(
        self,
        num_classes: int = 400,
        input_size: tuple[int, int, int] = (16, 128, 96),
        widths: tuple[int, int, int, int] = (12, 24, 40, 64),
        position_bins: int = 3,
        coord_channels: bool = True,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        act_checkpoint: bool = False,
        checkpoint_blocks: list[int] | None = None,
    ):
        super().__init__()
        del drop_path, checkpoint_blocks  # accepted for a uniform builder signature; no residual blocks here
        self.num_classes = num_classes
        self.input_spec = InputSpec(kind="clip", num_frames=input_size[0], crop=(input_size[1], input_size[2]))
        self.coord_channels = coord_channels
        self.position_bins = position_bins
        self.act_checkpoint = act_checkpoint
        stem_in = 3 + (2 if coord_channels else 0)
        self.stem = ConvBnAct(stem_in, widths[0], (1, 3, 3), stride=(1, 2, 2))
        self.blocks = nn.ModuleList(
            [
                SpatioTemporalUnit(widths[0], widths[1], spatial_stride=2, temporal_stride=1),
                SpatioTemporalUnit(widths[1], widths[2], spatial_stride=2, temporal_stride=2),
                SpatioTemporalUnit(widths[2], widths[3], spatial_stride=2, temporal_stride=2),
            ]
        )
        self.head = LinearHead(widths[3] * position_bins, num_classes, dropout)
        init_resnet_weights(self, fc_init_std=0.01, zero_init_final_bn=False)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if isinstance(clip, (list, tuple)):
            (clip,) = clip
        x = torch.cat([clip, coordinate_planes(clip)], dim=1) if self.coord_channels else clip
        x = self.stem(x)
        for block in self.blocks:
            x = checkpointed(block, x, enabled=self.act_checkpoint)
        # Average over time and width, keep `position_bins` bands along the height (top ... bottom).
        bands = F.adaptive_avg_pool3d(x, (1, self.position_bins, 1))
        return self.head(bands.flatten(1))


@register_model
def tiny(num_classes: int = 400, input_size=(16, 128, 96), **options) -> TinyVideoNet:
    """A small (2+1)-D CNN with CoordConv and band pooling, for CPU demos and tests (56 k params at 8 classes)."""
    return build_with_options(TinyVideoNet, "tiny", num_classes=num_classes, input_size=tuple(input_size), **options)
