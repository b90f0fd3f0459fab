"""Building blocks shared by the model families.

Everything here is plain PyTorch. Module attribute names follow PySlowFast where a block exists there
(``SqueezeExcite3d.fc1/fc2``), so that state-dict keys of released checkpoints load without renaming.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as torch_checkpoint

from pmv.errors import ConfigError

# PySlowFast's BatchNorm defaults (Caffe2 momentum 0.9 == PyTorch momentum 0.1).
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the whole residual branch for a random subset of samples.

    Survivors are scaled by ``1 / keep_prob`` so the expected value is unchanged and eval needs no rescaling.
    """
    if drop_prob <= 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(mask_shape).bernoulli_(keep_prob)
    return x * mask / keep_prob


class DropPath(nn.Module):
    """Stochastic depth as a module (no parameters, so it adds no state-dict keys)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def drop_path_rates(total_rate: float, num_blocks: int) -> list[float]:
    """Linearly increasing drop-path rates over ``num_blocks`` blocks, 0 for the first (as MViT/UniFormer)."""
    if num_blocks <= 1:
        return [0.0] * num_blocks
    return [total_rate * i / (num_blocks - 1) for i in range(num_blocks)]


class Swish(nn.Module):
    """x * sigmoid(x). ``F.silu`` computes it with a memory-lean backward, like PySlowFast's SwishEfficient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """Scale a channel count and round it to a multiple of ``divisor`` (X3D / EfficientNet rule).

    Rounds to the nearest multiple, but never more than 10% below the exact product.
    """
    if not multiplier:
        return int(width)
    exact = width * multiplier
    rounded = max(min_width or divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return int(rounded)


class SqueezeExcite3d(nn.Module):
    """Squeeze-and-excitation: global average, 1x1x1 conv down, ReLU, 1x1x1 conv up, sigmoid gate.

    ``fc1``/``fc2`` are the PySlowFast key names. The squeeze width is ``round_width(channels, ratio)``.
    """

    def __init__(self, channels: int, ratio: float = 0.0625):
        super().__init__()
        squeezed = round_width(channels, ratio)
        self.fc1 = nn.Conv3d(channels, squeezed, 1, bias=True)
        self.fc2 = nn.Conv3d(squeezed, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3, 4), keepdim=True)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(gate))))
        return x * gate


def conv3d(
    dim_in: int,
    dim_out: int,
    kernel: Iterable[int] | int,
    stride: Iterable[int] | int = 1,
    groups: int = 1,
    bias: bool = False,
) -> nn.Conv3d:
    """A Conv3d with "same" padding for odd kernels (``k // 2`` per axis), no bias by default (BN follows)."""
    kernel = _triple(kernel)
    return nn.Conv3d(
        dim_in,
        dim_out,
        kernel_size=kernel,
        stride=_triple(stride),
        padding=tuple(k // 2 for k in kernel),
        groups=groups,
        bias=bias,
    )


def batch_norm3d(channels: int, zero_init: bool = False) -> nn.BatchNorm3d:
    """BatchNorm3d with PySlowFast's eps/momentum.

    ``zero_init`` marks the last BN of a residual branch: :func:`init_resnet_weights` sets its gamma to 0 so
    each block starts as the identity (PySlowFast's ``ZERO_INIT_FINAL_BN``).
    """
    bn = nn.BatchNorm3d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    bn.zero_init_gamma = zero_init  # type: ignore[attr-defined]
    return bn


class ConvBnAct(nn.Sequential):
    """conv3d -> BatchNorm3d -> activation, for small models that have no reference key layout."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        kernel: Iterable[int] | int,
        stride: Iterable[int] | int = 1,
        groups: int = 1,
        act: Callable[[], nn.Module] | None = nn.ReLU,
    ):
        super().__init__()
        self.conv = conv3d(dim_in, dim_out, kernel, stride, groups)
        self.bn = batch_norm3d(dim_out)
        if act is not None:
            self.act = act()


def init_resnet_weights(model: nn.Module, fc_init_std: float = 0.01, zero_init_final_bn: bool = True) -> None:
    """PySlowFast's ResNet/X3D initialisation.

    Convs: MSRA (He normal, fan_out, ReLU gain; Caffe2's ``MSRAFill``), bias 0. BatchNorm: gamma 1, beta 0,
    except gamma 0 on BNs built with ``zero_init=True`` (last BN of each residual branch). Linear: normal with
    ``fc_init_std`` (0.01), bias 0.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            zero = zero_init_final_bn and getattr(module, "zero_init_gamma", False)
            if module.weight is not None:
                nn.init.constant_(module.weight, 0.0 if zero else 1.0)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=fc_init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def init_transformer_weights(model: nn.Module, std: float = 0.02) -> None:
    """ViT-style initialisation (MViT, UniFormer): Linear truncated normal ``std``, bias 0; LayerNorm 1/0."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def checkpointed(module: nn.Module, *inputs, enabled: bool = True):
    """Run ``module(*inputs)``, recomputing its activations in backward when ``enabled`` and grads are on.

    Non-reentrant checkpointing works with inputs that do not require grad, keyword-free modules and DDP.
    """
    if enabled and torch.is_grad_enabled() and module.training:
        return torch_checkpoint.checkpoint(module, *inputs, use_reentrant=False)
    return module(*inputs)


def checkpoint_flags(num_blocks_per_stage: list[int], act_checkpoint: bool, checkpoint_blocks=None) -> list[list[bool]]:
    """Which blocks to checkpoint: all when ``checkpoint_blocks`` is empty, else the first n of each stage.

    ``checkpoint_blocks`` mirrors UniFormer's ``CHECKPOINT_NUM`` (a count per stage).
    """
    flags = []
    for stage, count in enumerate(num_blocks_per_stage):
        if not act_checkpoint:
            flags.append([False] * count)
            continue
        if not checkpoint_blocks:
            limit = count
        else:  # stages beyond the given list are not checkpointed
            limit = int(checkpoint_blocks[stage]) if stage < len(checkpoint_blocks) else 0
        flags.append([i < limit for i in range(count)])
    return flags


class ResBlock(nn.Module):
    """Residual block in PySlowFast's layout: ``branch2`` (the transform), optional projection shortcut
    ``branch1`` + ``branch1_bn`` (when channels or spatial stride change), sum, ReLU.

    ``stride`` is spatial (applied as 1 x s x s, like the transform's strided conv). ``drop_path`` drops the
    whole ``branch2`` output per sample in training (PySlowFast's ``DROPCONNECT_RATE``).
    """

    def __init__(self, dim_in: int, dim_out: int, stride: int, branch2: nn.Module, drop_path: float = 0.0):
        super().__init__()
        if dim_in != dim_out or stride != 1:
            self.branch1 = nn.Conv3d(dim_in, dim_out, kernel_size=1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = batch_norm3d(dim_out)
        self.branch2 = branch2
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.drop_path(self.branch2(x))
        shortcut = self.branch1_bn(self.branch1(x)) if hasattr(self, "branch1") else x
        return F.relu(shortcut + residual)


class PathwayStage(nn.Module):
    """One ResNet stage over one or more pathways; blocks are named ``pathway{p}_res{i}`` (PySlowFast keys).

    ``forward`` takes and returns a list with one tensor per pathway. ``checkpoint`` lists, per pathway and
    block, whether to recompute that block's activations in backward (activation checkpointing).
    """

    def __init__(self, blocks: Sequence[Sequence[nn.Module]], checkpoint: Sequence[Sequence[bool]] | None = None):
        super().__init__()
        self.num_blocks = [len(b) for b in blocks]
        for pathway, pathway_blocks in enumerate(blocks):
            for index, block in enumerate(pathway_blocks):
                self.add_module(f"pathway{pathway}_res{index}", block)
        self.checkpoint = [list(c) for c in checkpoint] if checkpoint else [[False] * n for n in self.num_blocks]

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for pathway, x in enumerate(inputs):
            for index in range(self.num_blocks[pathway]):
                block = getattr(self, f"pathway{pathway}_res{index}")
                x = checkpointed(block, x, enabled=self.checkpoint[pathway][index])
            outputs.append(x)
        return outputs


class PathwayStems(nn.Module):
    """The stem of every pathway, named ``pathway{p}_stem`` (PySlowFast keys); list in, list out."""

    def __init__(self, stems: Sequence[nn.Module]):
        super().__init__()
        self.num_pathways = len(stems)
        for pathway, stem in enumerate(stems):
            self.add_module(f"pathway{pathway}_stem", stem)

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [getattr(self, f"pathway{p}_stem")(x) for p, x in enumerate(inputs)]


@dataclass(frozen=True)
class InputSpec:
    """What a model's ``forward`` takes, so tools (FLOPs, benchmarks, export) can build example inputs.

    kind:
      * ``"clip"``: one tensor ``N x C x T x H x W``.
      * ``"slowfast"``: one clip tensor (the Fast pathway, T frames); the Slow pathway (T / alpha frames) is
        sampled inside the model. A list ``[slow, fast]`` is accepted too. T must be a multiple of ``alpha``.
      * ``"audio_visual"``: ``(clip, audio)`` with the clip as for ``"slowfast"`` and ``audio`` a log-mel
        spectrogram ``N x 1 x audio_frames x audio_mel_bins`` (time rows, frequency columns).
    """

    kind: str = "clip"
    num_frames: int = 16
    crop: tuple[int, int] = (224, 224)  # H x W the model was built (and published) for; any size runs
    channels: int = 3
    alpha: int = 1  # frame-rate ratio Fast/Slow; T must be a multiple of it
    audio_frames: int = 0
    audio_mel_bins: int = 0

    def example_inputs(
        self, batch: int = 1, input_size: tuple[int, int, int] | None = None, dtype=torch.float32
    ) -> tuple[torch.Tensor, ...]:
        """Random positional arguments for ``forward`` at ``input_size`` (T, H, W; default: the built size)."""
        t, h, w = input_size if input_size is not None else (self.num_frames, *self.crop)
        clip = torch.randn(batch, self.channels, t, h, w, dtype=dtype)
        if self.kind == "audio_visual":
            audio = torch.randn(batch, 1, self.audio_frames, self.audio_mel_bins, dtype=dtype)
            return (clip, audio)
        return (clip,)


def build_with_options(cls: Callable[..., nn.Module], model_name: str, **options) -> nn.Module:
    """``cls(**options)``, turning an unknown option into a ConfigError that lists the valid ones."""
    allowed = [name for name in inspect.signature(cls).parameters if name not in ("self",)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"model {model_name!r} has no option {', '.join(map(repr, unknown))}; valid options: {', '.join(allowed)}"
        )
    return cls(**options)


def num_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _triple(value: Iterable[int] | int) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"expected 3 values (T, H, W), got {value}")
    return value  # type: ignore[return-value]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


__all__ = [
    "InputSpec",
    "PathwayStage",
    "PathwayStems",
    "ResBlock",
    "BN_EPS",
    "BN_MOMENTUM",
    "ConvBnAct",
    "DropPath",
    "SqueezeExcite3d",
    "Swish",
    "batch_norm3d",
    "build_with_options",
    "ceil_div",
    "checkpoint_flags",
    "checkpointed",
    "conv3d",
    "drop_path",
    "drop_path_rates",
    "init_resnet_weights",
    "init_transformer_weights",
    "num_parameters",
    "round_width",
]
