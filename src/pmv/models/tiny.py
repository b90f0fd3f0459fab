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

Two relatives for the paper's studies, small enough for a CPU:

* ``tiny_frame``: the same network with every temporal kernel 1 and no temporal stride, so it sees frames one by
  one and averages their features (the role of ``uniformer_s_frame`` next to ``uniformer_s``): the order of the
  frames cannot change its output.
* ``tiny_av``: ``tiny`` plus an audio pathway on the log-mel spectrogram, following AVSlowFast in miniature
  (``input_spec.kind == "audio_visual"``, ``forward(clip, audio)``): audio features (mean over frequency, a 1-D
  conv along time, pooled to the visual frame rate) are *added* to the visual features after the second unit
  (the A->V fusion), DropPathway skips that addition now and then in training, and when ``audio`` carries a
  time-shifted negative in channel 1 (``N x 2 x T_audio x F``) the audio-visual synchronisation loss of
  AVSlowFast is left in ``model.aux_losses``. Pooled audio features join the classifier. ``modality="audio"``
  makes the audio-only model of the audio study (same audio pathway, the clip ignored).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pmv.errors import ConfigError
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

    def __init__(self, dim_in: int, dim_out: int, spatial_stride: int, temporal_stride: int, temporal_kernel: int = 3):
        super().__init__()
        self.spatial = ConvBnAct(dim_in, dim_out, (1, 3, 3), stride=(1, spatial_stride, spatial_stride))
        self.temporal = ConvBnAct(dim_out, dim_out, (temporal_kernel, 1, 1), stride=(temporal_stride, 1, 1))

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
        frame_level: bool = False,
    ):
        super().__init__()
        del drop_path, checkpoint_blocks  # accepted for a uniform builder signature; no residual blocks here
        self.num_classes = num_classes
        self.input_spec = InputSpec(kind="clip", num_frames=input_size[0], crop=(input_size[1], input_size[2]))
        self.coord_channels = coord_channels
        self.position_bins = position_bins
        self.act_checkpoint = act_checkpoint
        self.frame_level = frame_level
        stem_in = 3 + (2 if coord_channels else 0)
        self.stem = ConvBnAct(stem_in, widths[0], (1, 3, 3), stride=(1, 2, 2))
        # Frame-level: kernel 1 and stride 1 in time, so frames never meet before the final average over time.
        kernel, stride = (1, 1) if frame_level else (3, 2)
        self.blocks = nn.ModuleList(
            [
                SpatioTemporalUnit(widths[0], widths[1], spatial_stride=2, temporal_stride=1, temporal_kernel=kernel),
                SpatioTemporalUnit(widths[1], widths[2], spatial_stride=2, temporal_stride=stride, temporal_kernel=kernel),
                SpatioTemporalUnit(widths[2], widths[3], spatial_stride=2, temporal_stride=stride, temporal_kernel=kernel),
            ]
        )
        self.head = LinearHead(widths[3] * position_bins, num_classes, dropout)
        init_resnet_weights(self, fc_init_std=0.01, zero_init_final_bn=False)

    def stem_input(self, clip: torch.Tensor) -> torch.Tensor:
        return torch.cat([clip, coordinate_planes(clip)], dim=1) if self.coord_channels else clip

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Average over time and width, keep ``position_bins`` bands along the height (top ... bottom)."""
        return F.adaptive_avg_pool3d(x, (1, self.position_bins, 1)).flatten(1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if isinstance(clip, (list, tuple)):
            (clip,) = clip
        x = self.stem(self.stem_input(clip))
        for block in self.blocks:
            x = checkpointed(block, x, enabled=self.act_checkpoint)
        return self.head(self.pooled(x))


def valid_sync_pairs(audio: torch.Tensor, var_thresh: float, duplicate_thresh: float) -> torch.Tensor:
    """Pairs usable for the AV-sync loss (AVSlowFast's mask): both spectrograms of ``N x 2 x T x F`` vary more
    than ``var_thresh`` and are not near-duplicates (cosine below ``duplicate_thresh``) of each other."""
    with torch.no_grad():
        flat = audio.flatten(2)
        loud = (flat.std(dim=2) ** 2 > var_thresh).all(dim=1)
        similarity = (F.normalize(flat[:, 0], dim=1) * F.normalize(flat[:, 1], dim=1)).sum(dim=1)
        return loud & (similarity < duplicate_thresh)


def sync_loss(ref: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, mask: torch.Tensor, margin: float) -> torch.Tensor:
    """AVSlowFast's AVS loss on projected features ``N x D``: L2-normalised x 0.5, pull ``ref`` to ``pos``, push it
    at least ``margin`` from ``neg``; ``(sum ||r-p||^2 + sum clamp(margin - ||r-n||, 0)^2) / (2 * pairs)``."""
    ref, pos, neg = (F.normalize(v, dim=1) * 0.5 for v in (ref, pos, neg))
    pos_loss = ((ref - pos)[mask] ** 2).sum()
    neg_loss = (torch.clamp(margin - (ref - neg)[mask].norm(dim=1), min=0) ** 2).sum()
    return (pos_loss + neg_loss) / (2 * mask.sum() + 1e-8)


MODALITIES = ("audio_visual", "audio")


class TinyAudioVisualNet(nn.Module):
    """``tiny``'s visual pathway + a small 2-D conv audio pathway, A->V fusion after the second visual unit,
    DropPathway, the AV-sync loss, and a classifier on [visual bands, pooled audio]. Returns logits."""

    def __init__(
        self,
        num_classes: int = 400,
        input_size: tuple[int, int, int] = (16, 128, 96),
        widths: tuple[int, int, int, int] = (12, 24, 40, 64),
        audio_widths: tuple[int, int, int] = (16, 32, 48),
        position_bins: int = 3,
        audio_frames: int = 128,
        audio_mel_bins: int = 80,
        modality: str = "audio_visual",
        fusion: bool = True,
        drop_pathway: float = 0.5,
        sync_dim: int = 32,
        sync_weight: float = 1.0,
        sync_margin: float = 0.99,
        sync_var_thresh: float = 0.01,
        sync_duplicate_thresh: float = 0.99999,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        act_checkpoint: bool = False,
        checkpoint_blocks: list[int] | None = None,
    ):
        super().__init__()
        if modality not in MODALITIES:
            raise ConfigError(f"tiny_av modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
        self.num_classes = num_classes
        self.modality = modality
        self.input_spec = InputSpec(
            kind="audio_visual", num_frames=input_size[0], crop=(input_size[1], input_size[2]),
            audio_frames=audio_frames, audio_mel_bins=audio_mel_bins,
        )
        self.fusion = fusion and modality == "audio_visual"
        self.drop_pathway = drop_pathway
        self.sync_weight, self.sync_margin = sync_weight, sync_margin
        self.sync_var_thresh, self.sync_duplicate_thresh = sync_var_thresh, sync_duplicate_thresh
        self.aux_losses: dict[str, torch.Tensor] = {}
        # Audio: N x 1 x T_audio x F, time on H and frequency on W, as AVSlowFast lays it out; stride 2 per stage.
        layers, channels = [], 1
        for width in audio_widths:
            layers.append(nn.Sequential(nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
                                        nn.BatchNorm2d(width), nn.ReLU(inplace=True)))
            channels = width
        self.audio = nn.Sequential(*layers)
        head_in = audio_widths[-1]
        if modality == "audio_visual":
            self.visual = TinyVideoNet(num_classes, input_size, widths, position_bins, dropout=dropout,
                                       act_checkpoint=act_checkpoint)
            self.visual.head = nn.Identity()  # the joint head below classifies
            head_in += widths[3] * position_bins
            # A->V: mean over frequency, a 1-D conv along time to the visual width after unit 2, + BN (zero-init
            # scale, so training starts from the visual model), added over H x W.
            self.a2v = nn.Sequential(nn.Conv1d(audio_widths[-1], widths[2], 3, padding=1, bias=False),
                                     nn.BatchNorm1d(widths[2]))
            self.sync_visual = nn.Linear(widths[2], sync_dim)
            self.sync_audio = nn.Linear(audio_widths[-1], sync_dim)
        self.head = LinearHead(head_in, num_classes, dropout)
        init_resnet_weights(self, fc_init_std=0.01, zero_init_final_bn=False)
        if modality == "audio_visual":
            nn.init.zeros_(self.a2v[1].weight)

    def _split_inputs(self, clip, audio):
        if audio is None:
            if not isinstance(clip, (list, tuple)) or len(clip) != 2:
                raise ConfigError("tiny_av takes (clip, audio): a clip N x 3 x T x H x W and a log-mel spectrogram "
                                  "N x 1 x T_audio x F; enable data.audio so the loader returns audio")
            clip, audio = clip
        if audio.ndim != 4 or audio.shape[1] not in (1, 2):
            raise ConfigError(f"tiny_av expects audio N x 1 x T_audio x F (or N x 2 x ... with a misaligned "
                              f"negative), got shape {tuple(audio.shape)}")
        return clip, audio

    def forward(self, clip, audio: torch.Tensor | None = None) -> torch.Tensor:
        clip, audio = self._split_inputs(clip, audio)
        batch = audio.shape[0]
        with_negative = audio.shape[1] == 2
        compute_sync = self.training and with_negative and self.modality == "audio_visual"
        # Positives first, negatives after, along the batch; negatives only feed the sync loss.
        audio_in = torch.cat([audio[:, 0:1], audio[:, 1:2]], dim=0) if compute_sync else audio[:, 0:1]
        audio_feat = self.audio(audio_in)  # B x C x T' x F'
        audio_pooled = audio_feat.mean(dim=(2, 3))
        self.aux_losses = {}
        if self.modality == "audio":
            return self.head(audio_pooled[:batch])

        net = self.visual
        x = net.stem(net.stem_input(clip))
        x = checkpointed(net.blocks[0], x, enabled=net.act_checkpoint)
        x = checkpointed(net.blocks[1], x, enabled=net.act_checkpoint)
        if compute_sync:
            mask = valid_sync_pairs(audio, self.sync_var_thresh, self.sync_duplicate_thresh)
            ref = self.sync_visual(x.mean(dim=(2, 3, 4)))
            pos = self.sync_audio(audio_pooled[:batch])
            neg = self.sync_audio(audio_pooled[batch:])
            self.aux_losses["av_sync"] = self.sync_weight * sync_loss(ref, pos, neg, mask, self.sync_margin)
        if self.fusion:
            # DropPathway: in training, now and then no audio reaches the visual pathway for a whole iteration.
            drop = self.training and self.drop_pathway > 0 and float(torch.rand(())) < self.drop_pathway
            a2v = self.a2v(audio_feat[:batch].mean(dim=3))  # B x C x T'
            a2v = F.adaptive_avg_pool1d(a2v, x.shape[2])  # to the visual frame rate at this stage
            x = x + F.relu(a2v)[..., None, None] * (0.0 if drop else 1.0)  # x 0 keeps the graph the same (DDP)
        x = checkpointed(net.blocks[2], x, enabled=net.act_checkpoint)
        return self.head(torch.cat([net.pooled(x), audio_pooled[:batch]], dim=1))


@register_model
def tiny(num_classes: int = 400, input_size=(16, 128, 96), **options) -> TinyVideoNet:
    """A small (2+1)-D CNN with CoordConv and band pooling, for CPU demos and tests (56 k params at 8 classes)."""
    return build_with_options(TinyVideoNet, "tiny", num_classes=num_classes, input_size=tuple(input_size), **options)


@register_model
def tiny_frame(num_classes: int = 400, input_size=(16, 128, 96), **options) -> TinyVideoNet:
    """``tiny`` without temporal modelling: per-frame features averaged over time (the temporal study)."""
    options.setdefault("frame_level", True)
    return build_with_options(TinyVideoNet, "tiny_frame", num_classes=num_classes, input_size=tuple(input_size),
                              **options)


@register_model
def tiny_av(num_classes: int = 400, input_size=(16, 128, 96), **options) -> TinyAudioVisualNet:
    """``tiny`` + a log-mel audio pathway (A->V fusion, DropPathway, AV-sync loss): AVSlowFast for a CPU."""
    return build_with_options(TinyAudioVisualNet, "tiny_av", num_classes=num_classes, input_size=tuple(input_size),
                              **options)
