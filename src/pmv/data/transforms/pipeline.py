"""Train and test clip pipelines built from :class:`TransformConfig` / :class:`TestConfig` (seed 2.2, 2.4, 3.2).

Train (``build_train_transform``), on the decoded uint8 ``T x H x W x 3`` frames at whatever size they come:
RandAugment (if set; full-frame semantics) -> short-side jitter (+ auto-adjust) and random (rect) crop, OR the
Inception-style crop when ``scale_relative``/``aspect_relative`` are set -> horizontal flip -> normalise ->
random erasing. Test (``build_test_transform``): short side ``test.short_side`` (auto-adjust if set) -> one crop
along the long side (index 0/1/2) or at a relative position -> normalise.

Resize, crop and RandAugment are one sampling pass: the output pixels are mapped to source coordinates (resize
``src = (dst + 0.5) * in / out - 0.5`` clamped to the frame, as ``F.interpolate(align_corners=False)``) and read
with :func:`~pmv.data.transforms.randaugment.evaluate_augmented` (pixel-major), so a 720x1280 frame is never resized whole.
Without RandAugment the result equals ``short_side_resize`` + ``crop`` (float rounding aside).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from pmv.config.schema import TestConfig, TransformConfig
from pmv.data.transforms import functional as TF
from pmv.data.transforms.erasing import ERASE_MODES, random_erasing
from pmv.data.transforms.randaugment import _evaluate_pixel_major, parse_randaugment, sample_augment_ops
from pmv.errors import ConfigError

__all__ = ["resize_coordinates", "TrainTransform", "TestTransform", "build_train_transform", "build_test_transform"]

_INTERPOLATIONS = ("bilinear", "bicubic")


def resize_coordinates(start: int, count: int, in_size: int, out_size: int) -> torch.Tensor:
    """Source coordinates of output pixels ``start .. start + count - 1`` of a resize ``in_size -> out_size``
    (``align_corners=False``, clamped to ``[0, in_size - 1]`` as ``F.interpolate`` does)."""
    dst = torch.arange(start, start + count, dtype=torch.float32)
    if in_size == out_size:
        return dst
    scale = in_size / out_size
    return ((dst + 0.5) * scale - 0.5).clamp_(0.0, in_size - 1.0)


def _normalize_pixel_major(
    values: torch.Tensor, mean: torch.Tensor, inv_std: torch.Tensor, out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Pixel-major float ``H x W x T x C`` on 0..255 -> normalised ``C x T x H x W`` (into ``out`` if given).

    The subtraction writes the transposed layout (one pass over the values), the scaling runs in place on it."""
    height, width, num_frames, channels = values.shape
    if out is None:
        out = torch.empty((channels, num_frames, height, width), dtype=torch.float32)
    elif out.shape != (channels, num_frames, height, width) or not out.is_contiguous():
        raise TF.TransformError(f"out must be a contiguous {channels}x{num_frames}x{height}x{width} tensor")
    torch.sub(values, mean.expand(num_frames, channels).contiguous(), out=out.permute(2, 3, 1, 0))
    return out.mul_(inv_std.view(channels, 1, 1, 1))


def _check_mean_std(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(f"data.mean and data.std need 3 values each (R, G, B; std > 0), got {mean} and {std}")
    return torch.tensor(mean, dtype=torch.float32) * 255.0, 1.0 / (torch.tensor(std, dtype=torch.float32) * 255.0)


class TrainTransform:
    """``transform(frames uint8 T x H x W x 3, generator) -> float C x T x h x w`` (see the module docstring)."""

    def __init__(self, config: TransformConfig, mean: Sequence[float], std: Sequence[float]):
        self.config = config
        self.crop = TF._pair(config.train_crop, "transform.train_crop")
        self.inception = bool(config.scale_relative or config.aspect_relative)
        if self.inception:
            self.scale = tuple(config.scale_relative or (0.08, 1.0))
            self.ratio = tuple(config.aspect_relative or (3.0 / 4.0, 4.0 / 3.0))
            valid_scale = len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1]
            if not valid_scale or len(self.ratio) != 2 or min(self.ratio) <= 0:
                raise ConfigError(
                    "transform.scale_relative must be [min, max] with 0 < min <= max and transform.aspect_relative "
                    f"[min, max] > 0; got {config.scale_relative} and {config.aspect_relative}"
                )
        elif len(config.jitter_scales) != 2 or not 0 < config.jitter_scales[0] <= config.jitter_scales[1]:
            raise ConfigError(
                f"transform.jitter_scales must be [min, max] with 0 < min <= max, got {config.jitter_scales}"
            )
        for name in ("interpolation", "randaugment_interpolation"):
            if getattr(config, name) not in _INTERPOLATIONS:
                raise ConfigError(f"transform.{name} must be one of {_INTERPOLATIONS}, got {getattr(config, name)!r}")
        if config.erase_mode not in ERASE_MODES:
            raise ConfigError(f"transform.erase_mode must be one of {ERASE_MODES}, got {config.erase_mode!r}")
        if not 0.0 <= config.erase_prob <= 1.0:
            raise ConfigError(f"transform.erase_prob must lie in [0, 1], got {config.erase_prob}")
        self.policy = parse_randaugment(config.randaugment) if config.randaugment else None
        self.mean, self.std = list(mean), list(std)
        self._mean_255, self._inv_std_255 = _check_mean_std(mean, std)

    def source_grid(
        self, height: int, width: int, generator: Optional[torch.Generator] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the crop and return the source coordinates ``(ys (h, 1), xs (1, w))`` of its pixels."""
        out_h, out_w = self.crop
        if self.inception:
            top, left, box_h, box_w = TF.inception_crop_box(height, width, self.scale, self.ratio, generator)
            ys = resize_coordinates(0, out_h, box_h, out_h) + top
            xs = resize_coordinates(0, out_w, box_w, out_w) + left
            return ys.view(-1, 1), xs.view(1, -1)
        low, high = self.config.jitter_scales
        if self.config.auto_adjust:
            low, high = TF.adjust_jitter_scales(low, high, self.crop, (height, width))
        size = TF.sample_jitter_scale(low, high, generator, self.config.inverse_uniform)
        resized_h, resized_w = TF.short_side_resize_shape(height, width, size)
        top, left = TF.random_crop_offsets(resized_h, resized_w, self.crop, generator)
        ys = resize_coordinates(top, out_h, height, resized_h)
        xs = resize_coordinates(left, out_w, width, resized_w)
        return ys.view(-1, 1), xs.view(1, -1)

    def __call__(
        self, frames: torch.Tensor, generator: Optional[torch.Generator] = None, out: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``out``: a contiguous float ``C x T x h x w`` tensor to write the clip into (e.g. one slot of a
        stack of copies), saving a copy."""
        if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
            raise TF.TransformError(
                f"train transform needs uint8 frames T x H x W x 3, got {frames.dtype} {tuple(frames.shape)}"
            )
        # Draw order follows the seed: RandAugment ops, crop, flip, erasing.
        ops = sample_augment_ops(self.policy, generator) if self.policy else []
        ys, xs = self.source_grid(frames.shape[1], frames.shape[2], generator)
        if self.config.random_flip and TF.uniform(generator, 0.0, 1.0) < 0.5:
            xs = xs.flip(1)  # mirrored crop = its columns read right to left: no extra pass over the clip
        values = _evaluate_pixel_major(
            frames, ops, ys, xs,
            interpolation=self.config.interpolation,
            geometric_interpolation=self.config.randaugment_interpolation,
        )  # fmt: skip
        clip = _normalize_pixel_major(values, self._mean_255, self._inv_std_255, out)
        if self.config.erase_prob > 0:
            config = self.config
            clip = random_erasing(clip, generator, config.erase_prob, config.erase_mode, config.erase_count)
        return clip

    def __repr__(self) -> str:
        kind = f"inception crop {self.scale} {self.ratio}" if self.inception else f"jitter {self.config.jitter_scales}"
        return f"TrainTransform({kind} -> {self.crop[0]}x{self.crop[1]}, randaugment={self.config.randaugment!r})"


class TestTransform:
    """``transform(frames) -> float C x T x h x w``: short side resize, one test crop, normalise.

    The crop sits at ``spatial_index`` along the long side (0 top/left, 1 centre, 2 bottom/right) or, when
    ``relative_position = (rh, rw)`` is given, at that relative position (the spatial-bias probe).
    """

    def __init__(
        self,
        test: TestConfig,
        mean: Sequence[float],
        std: Sequence[float],
        spatial_index: Optional[int] = None,
        relative_position: Optional[Sequence[float]] = None,
    ):
        self.test = test
        self.crop = TF._pair(test.crop, "test.crop")
        if test.short_side <= 0:
            raise ConfigError(f"test.short_side must be > 0, got {test.short_side}")
        self.spatial_index = test.spatial_index if spatial_index is None else spatial_index
        self.relative_position = None if relative_position is None else tuple(float(v) for v in relative_position)
        if self.relative_position is None and self.spatial_index not in (0, 1, 2):
            raise ConfigError(
                f"spatial index must be 0, 1 or 2 (top/left, centre, bottom/right), got {self.spatial_index}"
            )
        if self.relative_position is not None and (
            len(self.relative_position) != 2 or not all(0.0 <= r <= 1.0 for r in self.relative_position)
        ):
            raise ConfigError(f"relative crop position must be (rh, rw) in [0, 1], got {relative_position}")
        self._mean_255, self._inv_std_255 = _check_mean_std(mean, std)

    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """Frame size after the test resize (decoders can resize to exactly this ahead of time)."""
        size = self.test.short_side
        if self.test.auto_adjust:
            size = TF.adjust_jitter_scales(size, size, self.crop, (height, width))[0]
        return TF.short_side_resize_shape(height, width, size)

    def crop_offsets(self, resized_h: int, resized_w: int) -> tuple[int, int]:
        if self.relative_position is not None:
            return TF.relative_crop_offsets(resized_h, resized_w, self.crop, self.relative_position)
        return TF.long_side_crop_offsets(resized_h, resized_w, self.crop, self.spatial_index)

    def __call__(self, frames: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
            raise TF.TransformError(
                f"test transform needs uint8 frames T x H x W x 3, got {frames.dtype} {tuple(frames.shape)}"
            )
        height, width = frames.shape[1], frames.shape[2]
        resized_h, resized_w = self.resized_shape(height, width)
        top, left = self.crop_offsets(resized_h, resized_w)
        ys = resize_coordinates(top, self.crop[0], height, resized_h).view(-1, 1)
        xs = resize_coordinates(left, self.crop[1], width, resized_w).view(1, -1)
        values = _evaluate_pixel_major(frames, [], ys, xs, interpolation="bilinear")
        return _normalize_pixel_major(values, self._mean_255, self._inv_std_255)

    def __repr__(self) -> str:
        where = f"relative {self.relative_position}" if self.relative_position else f"index {self.spatial_index}"
        return f"TestTransform(short side {self.test.short_side} -> {self.crop[0]}x{self.crop[1]} at {where})"


def build_train_transform(config: TransformConfig, mean: Sequence[float], std: Sequence[float]) -> TrainTransform:
    """The training pipeline of a recipe: ``fn(frames uint8 T x H x W x 3, generator) -> float C x T x h x w``."""
    return TrainTransform(config, mean, std)


def build_test_transform(
    test: TestConfig,
    mean: Sequence[float],
    std: Sequence[float],
    spatial_index: Optional[int] = None,
    relative_position: Optional[Sequence[float]] = None,
) -> TestTransform:
    """The test pipeline for one spatial view: crop ``spatial_index`` (default ``test.spatial_index``) along the
    long side, or the crop at ``relative_position = (rh, rw)``."""
    return TestTransform(test, mean, std, spatial_index, relative_position)
