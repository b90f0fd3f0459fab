"""SlowFast R50 and AVSlowFast R50 in PySlowFast's key layout: ``slowfast_r50``, ``avslowfast_r50``.

Input convention (``model.input_spec``):

* ``slowfast_r50(clip)``: ``clip`` is ``N x 3 x T x H x W``, the Fast pathway (T = 32 frames at stride 2 for 8x8).
  The Slow pathway, T / alpha frames, is picked inside with PySlowFast's rule
  ``linspace(0, T - 1, T // alpha)``. A list ``[slow, fast]`` is accepted too. T must be a multiple of alpha.
* ``avslowfast_r50(clip, audio)``: the clip as above, ``audio`` a log-mel spectrogram ``N x 1 x T_audio x F``
  (time rows, mel columns; 128 x 80 in the seed recipe). ``N x 2 x T_audio x F`` carries a time-shifted
  *negative* in channel 1: then, in training, the audio-visual synchronisation (AVS) losses are computed and
  left in ``model.aux_losses`` (a dict; add its sum to the classification loss). Logits always use the
  positive audio only.

Both return logits ``N x K`` in train and eval. Heads pool adaptively, so any H x W runs.

Architecture facts follow PySlowFast (``video_model_builder.py``, ``resnet_helper.py``, ``stem_helper.py``) and the
seed's AVSlowFast (``MViT/slowfast/models/*_av.py``); the code is our own. Deliberate differences from the seed's
AVSlowFast: positive/negative audio are stacked along the batch as [all positives; all negatives] (the seed's
reshape interleaves them and then splits the batch in half, mixing the two), and when the audio time axis does not
reduce to exactly the Slow pathway's length (a clip or spectrogram of another length than the recipe's), the
audio-to-visual fusion is average-pooled to that length instead of failing.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pmv.errors import ConfigError
from pmv.models.heads import ResNetBasicHead
from pmv.models.layers import (
    InputSpec,
    PathwayStage,
    PathwayStems,
    ResBlock,
    batch_norm3d,
    build_with_options,
    checkpoint_flags,
    init_resnet_weights,
)
from pmv.models.registry import register_model

STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Temporal kernel of the stem and of res2..res5, per pathway (PySlowFast's "slowfast" basis; audio is 2-D).
SLOW_TEMPORAL_KERNELS = (1, 1, 1, 3, 3)
FAST_TEMPORAL_KERNELS = (5, 3, 3, 3, 3)
AUDIO_TEMPORAL_KERNELS = (1, 1, 1, 1, 1)


class ResNetStem(nn.Module):
    """conv (T x 7 x 7, stride 1x2x2) -> BN -> ReLU -> max pool 1x3x3 stride 1x2x2 (total stride 4)."""

    def __init__(self, dim_in: int, dim_out: int, temporal_kernel: int):
        super().__init__()
        self.conv = nn.Conv3d(
            dim_in, dim_out, (temporal_kernel, 7, 7), stride=(1, 2, 2), padding=(temporal_kernel // 2, 3, 3), bias=False
        )
        self.bn = batch_norm3d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        return F.max_pool3d(x, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))


class AudioStem(nn.Module):
    """Separate 9-tap convs along time (``conv_t``) and frequency (``conv_f``), summed, BN, ReLU; no stride."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.conv_t = nn.Conv3d(dim_in, dim_out, (1, 9, 1), padding=(0, 4, 0), bias=False)
        self.conv_f = nn.Conv3d(dim_in, dim_out, (1, 1, 9), padding=(0, 0, 4), bias=False)
        self.bn = batch_norm3d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv_t(x) + self.conv_f(x)))


class BottleneckTransform(nn.Module):
    """T x 1 x 1 -> BN -> ReLU -> 1 x 3 x 3 (carries the spatial stride) -> BN -> ReLU -> 1 x 1 x 1 -> BN."""

    def __init__(self, dim_in: int, dim_out: int, dim_inner: int, temporal_kernel: int, stride: int):
        super().__init__()
        self.a = nn.Conv3d(dim_in, dim_inner, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False)
        self.a_bn = batch_norm3d(dim_inner)
        self.b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)
        self.b_bn = batch_norm3d(dim_inner)
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = batch_norm3d(dim_out, zero_init=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.a_bn(self.a(x)))
        x = F.relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class TimeFreqTransform(nn.Module):
    """AVSlowFast's audio bottleneck: parallel 3-tap time (``t``) and frequency (``f``) convs, concatenated, 1x1x1 ``out``."""

    def __init__(self, dim_in: int, dim_out: int, dim_inner: int, temporal_kernel: int, stride: int):
        super().__init__()
        del temporal_kernel  # the audio "T" axis has length 1; time runs along H
        self.t = nn.Conv3d(dim_in, dim_inner, (1, 3, 1), stride=(1, stride, stride), padding=(0, 1, 0), bias=False)
        self.t_bn = batch_norm3d(dim_inner)
        self.f = nn.Conv3d(dim_in, dim_inner, (1, 1, 3), stride=(1, stride, stride), padding=(0, 0, 1), bias=False)
        self.f_bn = batch_norm3d(dim_inner)
        self.out = nn.Conv3d(2 * dim_inner, dim_out, 1, bias=False)
        self.out_bn = batch_norm3d(dim_out, zero_init=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_t = F.relu(self.t_bn(self.t(x)))
        x_f = F.relu(self.f_bn(self.f(x)))
        return self.out_bn(self.out(torch.cat([x_t, x_f], dim=1)))


def _stage(
    dims_in: Sequence[int],
    dims_out: Sequence[int],
    dims_inner: Sequence[int],
    temporal_kernels: Sequence[int],
    strides: Sequence[int],
    transforms: Sequence[type],
    depth: int,
    drop_path: float,
    checkpoint: Sequence[bool],
) -> PathwayStage:
    """A multi-pathway ResNet stage: ``depth`` blocks per pathway, the stride in each pathway's first block."""
    blocks = []
    for p in range(len(dims_in)):
        pathway_blocks = []
        for i in range(depth):
            dim_in = dims_in[p] if i == 0 else dims_out[p]
            stride = strides[p] if i == 0 else 1
            transform = transforms[p](dim_in, dims_out[p], dims_inner[p], temporal_kernels[p], stride)
            pathway_blocks.append(ResBlock(dim_in, dims_out[p], stride, transform, drop_path))
        blocks.append(pathway_blocks)
    return PathwayStage(blocks, [list(checkpoint)] * len(dims_in))


class FuseFastToSlow(nn.Module):
    """Lateral connection: a strided temporal conv maps Fast features to Slow's frame rate; concatenated to Slow."""

    def __init__(self, dim_fast: int, ratio: int, kernel: int, alpha: int):
        super().__init__()
        self.conv_f2s = nn.Conv3d(
            dim_fast, dim_fast * ratio, (kernel, 1, 1), stride=(alpha, 1, 1), padding=(kernel // 2, 0, 0), bias=False
        )
        self.bn = batch_norm3d(dim_fast * ratio)

    def forward(self, pathways: list[torch.Tensor]) -> list[torch.Tensor]:
        slow, fast = pathways
        lateral = F.relu(self.bn(self.conv_f2s(fast)))
        return [torch.cat([slow, lateral], dim=1), fast]


def _split_visual(clip, alpha: int, model_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(slow, fast) from a Fast-rate clip or from a [slow, fast] list; checks the frame counts fit alpha."""
    if isinstance(clip, (list, tuple)):
        if len(clip) != 2:
            raise ConfigError(f"{model_name} takes one clip tensor or a [slow, fast] list, got {len(clip)} tensors")
        slow, fast = clip
    else:
        fast = clip
        frames = fast.shape[2]
        if frames < alpha or frames % alpha:
            raise ConfigError(
                f"{model_name} needs a frame count that is a multiple of alpha={alpha}, got T={frames}; "
                f"set data.num_frames to a multiple of {alpha}"
            )
        index = torch.linspace(0, frames - 1, frames // alpha, device=fast.device).long()
        slow = fast.index_select(2, index)
    if fast.shape[2] != slow.shape[2] * alpha:
        raise ConfigError(
            f"{model_name}: the Fast pathway must have alpha={alpha} times the Slow pathway's frames, "
            f"got slow T={slow.shape[2]}, fast T={fast.shape[2]}"
        )
    return slow, fast


class SlowFast(nn.Module):
    """Two-pathway ResNet (Feichtenhofer et al., ICCV 2019) with Fast->Slow lateral fusion after s1..s4."""

    def __init__(
        self,
        num_classes: int = 400,
        input_size: tuple[int, int, int] = (32, 224, 224),
        depth: int = 50,
        width: int = 64,
        alpha: int = 4,
        beta_inv: int = 8,
        fusion_ratio: int = 2,
        fusion_kernel: int = 7,
        dropout: float = 0.5,
        drop_path: float = 0.0,
        act_checkpoint: bool = False,
        checkpoint_blocks: list[int] | None = None,
    ):
        super().__init__()
        if depth not in STAGE_DEPTHS:
            raise ConfigError(f"SlowFast depth {depth} is not supported; use one of {sorted(STAGE_DEPTHS)}")
        self.num_classes = num_classes
        self.alpha = alpha
        self.input_spec = InputSpec(kind="slowfast", num_frames=input_size[0], crop=tuple(input_size[1:]), alpha=alpha)
        depths = STAGE_DEPTHS[depth]
        flags = checkpoint_flags(list(depths), act_checkpoint, checkpoint_blocks)
        fast_width = width // beta_inv
        lateral = fast_width * fusion_ratio  # channels the lateral conv adds to Slow, per unit width

        self.s1 = PathwayStems(
            [ResNetStem(3, width, SLOW_TEMPORAL_KERNELS[0]), ResNetStem(3, fast_width, FAST_TEMPORAL_KERNELS[0])]
        )
        self.s1_fuse = FuseFastToSlow(fast_width, fusion_ratio, fusion_kernel, alpha)
        slow_in, fast_in = width + lateral, fast_width
        for stage in range(4):
            multiplier = 2**stage  # res2: x1 ... res5: x8
            slow_out, fast_out = width * 4 * multiplier, fast_width * 4 * multiplier
            stride = 1 if stage == 0 else 2
            block = _stage(
                dims_in=(slow_in, fast_in),
                dims_out=(slow_out, fast_out),
                dims_inner=(width * multiplier, fast_width * multiplier),
                temporal_kernels=(SLOW_TEMPORAL_KERNELS[stage + 1], FAST_TEMPORAL_KERNELS[stage + 1]),
                strides=(stride, stride),
                transforms=(BottleneckTransform, BottleneckTransform),
                depth=depths[stage],
                drop_path=drop_path * (stage + 2) / 5,
                checkpoint=flags[stage],
            )
            self.add_module(f"s{stage + 2}", block)
            if stage < 3:
                self.add_module(f"s{stage + 2}_fuse", FuseFastToSlow(fast_out, fusion_ratio, fusion_kernel, alpha))
                slow_in, fast_in = slow_out + fast_out * fusion_ratio, fast_out
        self.head = ResNetBasicHead([slow_out, fast_out], num_classes, dropout)
        init_resnet_weights(self, fc_init_std=0.01, zero_init_final_bn=True)

    def forward(self, clip) -> torch.Tensor:
        x = list(_split_visual(clip, self.alpha, "slowfast"))
        x = self.s1_fuse(self.s1(x))
        x = self.s2_fuse(self.s2(x))
        x = self.s3_fuse(self.s3(x))
        x = self.s4_fuse(self.s4(x))
        x = self.s5(x)
        return self.head(x)


class AudioVisualSync(nn.Module):
    """AVS loss (AVSlowFast): project pooled visual (``ref_fc``) and audio (``query_fc``) features to a small space;
    pull a clip towards its own audio and push it at least ``margin`` away from time-shifted audio."""

    def __init__(self, ref_dim: int, query_dim: int, proj_dim: int):
        super().__init__()
        self.ref_fc = nn.Linear(ref_dim, proj_dim)
        self.query_fc = nn.Linear(query_dim, proj_dim)

    def forward(
        self, ref: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, mask: torch.Tensor, margin: float
    ) -> torch.Tensor:
        # Unit vectors scaled by 0.5 so squared distances fall in [0, 1].
        ref = F.normalize(self.ref_fc(ref.mean(dim=(2, 3, 4))), dim=1) * 0.5
        pos = F.normalize(self.query_fc(pos.mean(dim=(2, 3, 4))), dim=1) * 0.5
        neg = F.normalize(self.query_fc(neg.mean(dim=(2, 3, 4))), dim=1) * 0.5
        pos_loss = ((ref - pos)[mask] ** 2).sum()
        neg_dist = (ref - neg)[mask].norm(dim=1)
        neg_loss = (torch.clamp(margin - neg_dist, min=0) ** 2).sum()
        return (pos_loss + neg_loss) / (2 * mask.sum() + 1e-8)


class FuseAV(nn.Module):
    """One AVSlowFast junction: optional Fast->Slow lateral (``conv_f2s``/``bn_f2s``), optional Audio->SlowFast
    addition (``conv_a2fs_i``/``bn_a2fs_i``: mean over frequency, 1-D convs along time, the last strided to the
    Slow frame rate, broadcast-added over H x W), and optionally the AVS loss module ``avs``."""

    def __init__(
        self,
        dim_slow: int,
        dim_fast: int,
        dim_audio: int,
        fusion_ratio: int,
        fusion_kernel: int,
        alpha: int,
        audio_fusion_dim: int,
        audio_fusion_kernel: int,
        audio_alpha: int,
        audio_fusion_convs: int,
        use_fs: bool,
        use_afs: bool,
        use_avs: bool,
        avs_proj_dim: int,
    ):
        super().__init__()
        self.use_fs, self.use_afs, self.audio_fusion_convs = use_fs, use_afs, audio_fusion_convs
        fused_dim = dim_slow + dim_fast * fusion_ratio
        if use_fs:
            self.conv_f2s = nn.Conv3d(
                dim_fast,
                dim_fast * fusion_ratio,
                (fusion_kernel, 1, 1),
                stride=(alpha, 1, 1),
                padding=(fusion_kernel // 2, 0, 0),
                bias=False,
            )
            self.bn_f2s = batch_norm3d(dim_fast * fusion_ratio)
        if use_afs:
            channels = dim_audio
            for i in range(audio_fusion_convs):
                last = i == audio_fusion_convs - 1
                out = fused_dim if last else audio_fusion_dim
                conv = nn.Conv3d(
                    channels,
                    out,
                    (1, audio_fusion_kernel, 1),
                    stride=(1, audio_alpha if last else 1, 1),
                    padding=(0, audio_fusion_kernel // 2, 0),
                    bias=False,
                )
                self.add_module(f"conv_a2fs_{i}", conv)
                self.add_module(f"bn_a2fs_{i}", batch_norm3d(out))
                channels = out
        if use_avs:
            self.avs = AudioVisualSync(fused_dim, fused_dim, avs_proj_dim)

    def audio_to_visual(self, audio: torch.Tensor) -> torch.Tensor:
        """``N x C x 1 x T_a x F`` audio features -> ``N x C' x T' x 1 x 1`` (time moved to the video T axis)."""
        x = audio.mean(dim=-1, keepdim=True)
        for i in range(self.audio_fusion_convs):
            x = F.relu(getattr(self, f"bn_a2fs_{i}")(getattr(self, f"conv_a2fs_{i}")(x)))
        return x.permute(0, 1, 3, 2, 4)

    def forward(
        self, pathways: list[torch.Tensor], add_audio: bool, batch: int
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Fuse; return the new pathways and what the AVS loss needs (``fs``, ``a_pos``, ``a_neg``).

        ``batch`` is the video batch size; audio rows beyond it are the misaligned negatives.
        """
        slow, fast, audio = pathways
        fused, cache = slow, {}
        if self.use_fs:
            fused = torch.cat([slow, F.relu(self.bn_f2s(self.conv_f2s(fast)))], dim=1)
        cache["fs"] = fused
        if self.use_afs:
            audio_feat = self.audio_to_visual(audio)
            cache["a_pos"], cache["a_neg"] = audio_feat[:batch], audio_feat[batch:]
            positive = audio_feat[:batch]
            if positive.shape[2] != fused.shape[2]:
                positive = F.adaptive_avg_pool3d(positive, (fused.shape[2], 1, 1))
            # A dropped pathway still joins the graph (times 0) so every parameter gets a gradient (DDP).
            fused = fused + (positive if add_audio else positive * 0.0)
        return [fused, fast, audio], cache


class AVSlowFast(nn.Module):
    """Three-pathway (Slow, Fast, Audio) ResNet (Xiao et al., 2020) with Fast->Slow and Audio->SlowFast fusion."""

    def __init__(
        self,
        num_classes: int = 400,
        input_size: tuple[int, int, int] = (32, 224, 224),
        depth: int = 50,
        width: int = 64,
        alpha: int = 8,
        beta_inv: int = 8,
        fusion_ratio: int = 2,
        fusion_kernel: int = 5,
        audio_alpha: int = 32,
        audio_beta_inv: int = 2,
        audio_fusion_dim: int = 64,
        audio_fusion_kernel: int = 5,
        audio_fusion_convs: int = 2,
        audio_timefreq_stages: int = 2,
        audio_frames: int = 128,
        audio_mel_bins: int = 80,
        fs_fusion: Sequence[bool] = (False, False, True, True),
        afs_fusion: Sequence[bool] = (False, False, True, True),
        avs_flag: Sequence[bool] = (False, False, True, True, True),
        avs_proj_dim: int = 64,
        avs_var_thresh: float = 0.01,
        avs_duplicate_thresh: float = 0.99999,
        avs_margin: float = 0.99,
        drop_pathway: float = 0.8,
        dropout: float = 0.5,
        drop_path: float = 0.0,
        act_checkpoint: bool = False,
        checkpoint_blocks: list[int] | None = None,
    ):
        super().__init__()
        if depth not in STAGE_DEPTHS:
            raise ConfigError(f"AVSlowFast depth {depth} is not supported; use one of {sorted(STAGE_DEPTHS)}")
        self.num_classes = num_classes
        self.alpha = alpha
        self.fs_fusion, self.afs_fusion, self.avs_flag = list(fs_fusion), list(afs_fusion), list(avs_flag)
        self.avs_var_thresh, self.avs_duplicate_thresh, self.avs_margin = avs_var_thresh, avs_duplicate_thresh, avs_margin
        self.drop_pathway = drop_pathway
        self.input_spec = InputSpec(
            kind="audio_visual",
            num_frames=input_size[0],
            crop=tuple(input_size[1:]),
            alpha=alpha,
            audio_frames=audio_frames,
            audio_mel_bins=audio_mel_bins,
        )
        self.aux_losses: dict[str, torch.Tensor] = {}
        depths = STAGE_DEPTHS[depth]
        flags = checkpoint_flags(list(depths), act_checkpoint, checkpoint_blocks)
        fast_width, audio_width = width // beta_inv, width // audio_beta_inv
        audio_strides = (1, 2, 2, 2)

        self.s1 = PathwayStems(
            [
                ResNetStem(3, width, SLOW_TEMPORAL_KERNELS[0]),
                ResNetStem(3, fast_width, FAST_TEMPORAL_KERNELS[0]),
                AudioStem(1, audio_width),
            ]
        )

        def junction(index: int, dim_slow: int, dim_fast: int, dim_audio: int, reduction: int, fs: bool, afs: bool):
            return FuseAV(
                dim_slow,
                dim_fast,
                dim_audio,
                fusion_ratio,
                fusion_kernel,
                alpha,
                audio_fusion_dim,
                audio_fusion_kernel,
                audio_alpha // reduction,
                audio_fusion_convs,
                use_fs=fs,
                use_afs=afs,
                use_avs=self.avs_flag[index],
                avs_proj_dim=avs_proj_dim,
            )

        if self.fs_fusion[0] or self.afs_fusion[0]:
            self.s1_fuse = junction(0, width, fast_width, audio_width, 1, self.fs_fusion[0], self.afs_fusion[0])
        dims = (width, fast_width, audio_width)
        reduction = 1
        for stage in range(4):
            multiplier = 2**stage
            dims_out = (width * 4 * multiplier, fast_width * 4 * multiplier, audio_width * 4 * multiplier)
            slow_in = dims[0] + (dims[1] * fusion_ratio if self.fs_fusion[stage] else 0)
            stride = 1 if stage == 0 else 2
            audio_transform = TimeFreqTransform if stage < audio_timefreq_stages else BottleneckTransform
            block = _stage(
                dims_in=(slow_in, dims[1], dims[2]),
                dims_out=dims_out,
                dims_inner=(width * multiplier, fast_width * multiplier, audio_width * multiplier),
                temporal_kernels=(
                    SLOW_TEMPORAL_KERNELS[stage + 1],
                    FAST_TEMPORAL_KERNELS[stage + 1],
                    AUDIO_TEMPORAL_KERNELS[stage + 1],
                ),
                strides=(stride, stride, audio_strides[stage]),
                transforms=(BottleneckTransform, BottleneckTransform, audio_transform),
                depth=depths[stage],
                drop_path=drop_path * (stage + 2) / 5,
                checkpoint=flags[stage],
            )
            self.add_module(f"s{stage + 2}", block)
            reduction *= audio_strides[stage]
            dims = dims_out
            if stage < 3 and (self.fs_fusion[stage + 1] or self.afs_fusion[stage + 1]):
                fuse = junction(stage + 1, *dims, reduction, self.fs_fusion[stage + 1], self.afs_fusion[stage + 1])
                self.add_module(f"s{stage + 2}_fuse", fuse)
        if self.avs_flag[4]:
            # Used only for the AVS loss on res5 features; its output never reaches the head.
            self.s5_fuse = junction(4, *dims, reduction, True, True)
        self.head = ResNetBasicHead(list(dims), num_classes, dropout)
        init_resnet_weights(self, fc_init_std=0.01, zero_init_final_bn=True)

    def _split_inputs(self, clip, audio):
        if audio is None:
            if not isinstance(clip, (list, tuple)) or len(clip) not in (2, 3):
                raise ConfigError(
                    "avslowfast_r50 takes (clip, audio): a clip N x 3 x T x H x W and a log-mel spectrogram "
                    "N x 1 x T_audio x F; enable data.audio so the loader returns audio"
                )
            *visual, audio = clip
            clip = visual[0] if len(visual) == 1 else visual
        slow, fast = _split_visual(clip, self.alpha, "avslowfast_r50")
        if audio.ndim != 4 or audio.shape[1] not in (1, 2):
            raise ConfigError(
                f"avslowfast_r50 expects audio N x 1 x T_audio x F (or N x 2 x ... with a misaligned negative), "
                f"got shape {tuple(audio.shape)}"
            )
        return slow, fast, audio

    def _valid_pairs(self, audio: torch.Tensor) -> torch.Tensor:
        """Pairs usable for the AVS loss: both spectrograms non-silent and not near-duplicates of each other."""
        with torch.no_grad():
            flat = audio.flatten(2)  # N x 2 x (T*F)
            loud = (flat.std(dim=2) ** 2 > self.avs_var_thresh).all(dim=1)
            similarity = (F.normalize(flat[:, 0], dim=1) * F.normalize(flat[:, 1], dim=1)).sum(dim=1)
            return loud & (similarity < self.avs_duplicate_thresh)

    def forward(self, clip, audio: torch.Tensor | None = None) -> torch.Tensor:
        slow, fast, audio = self._split_inputs(clip, audio)
        batch = slow.shape[0]
        with_negative = audio.shape[1] == 2
        # Positives first, negatives after, along the batch; the audio pathway runs on both.
        audio_batch = torch.cat([audio[:, 0:1], audio[:, 1:2]], dim=0) if with_negative else audio
        x = [slow, fast, audio_batch.unsqueeze(2)]  # audio as N x 1 x 1 x T_audio x F

        # DropPathway: in training, now and then train without any Audio->SlowFast addition.
        drop_audio = self.training and self.drop_pathway > 0 and float(torch.rand(())) < self.drop_pathway
        runtime_afs = [flag and not drop_audio for flag in self.afs_fusion]
        # AVS is meaningless once the visual features have seen the audio: only up to the earliest fusion.
        earliest = next((i for i, flag in enumerate(runtime_afs) if flag), 4)
        compute_avs = self.training and with_negative
        caches: dict[int, dict[str, torch.Tensor]] = {}

        for index in range(4):
            if index > 0:
                x = getattr(self, f"s{index + 1}")(x)
            else:
                x = self.s1(x)
            fuse = getattr(self, f"s{index + 1}_fuse", None)
            if fuse is not None:
                x, caches[index] = fuse(x, add_audio=runtime_afs[index], batch=batch)
        x = self.s5(x)
        if compute_avs and self.avs_flag[4]:
            _, caches[4] = self.s5_fuse(x, add_audio=False, batch=batch)

        self.aux_losses = {}
        if compute_avs:
            mask = self._valid_pairs(audio)
            for index in range(5):
                if not self.avs_flag[index]:
                    continue
                fuse = getattr(self, f"s{index + 1}_fuse")
                cache = caches[index]
                loss = fuse.avs(cache["fs"], cache["a_pos"], cache["a_neg"], mask, self.avs_margin)
                # Stages after the earliest fusion still join the graph (times 0), as in the seed (DDP).
                self.aux_losses[f"s{index + 1}_avs"] = loss if index <= earliest else loss * 0.0
        slow_out, fast_out, audio_out = x
        return self.head([slow_out, fast_out, audio_out[:batch]])


@register_model
def slowfast_r50(num_classes: int = 400, input_size=(32, 224, 224), **options) -> SlowFast:
    """SlowFast R50 8x8: Fast 32 frames (stride 2), Slow 8 (alpha 4), beta 1/8, lateral kernel 7."""
    return build_with_options(SlowFast, "slowfast_r50", num_classes=num_classes, input_size=tuple(input_size), **options)


@register_model
def avslowfast_r50(num_classes: int = 400, input_size=(32, 224, 224), **options) -> AVSlowFast:
    """AVSlowFast R50 4x16 (the seed's ``AVSLOWFAST_4x16_R50``): Fast 32 frames, Slow 4 (alpha 8), audio 128x80 log-mel."""
    return build_with_options(
        AVSlowFast, "avslowfast_r50", num_classes=num_classes, input_size=tuple(input_size), **options
    )
