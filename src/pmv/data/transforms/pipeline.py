"""Train and test clip pipelines built from :class:`TransformConfig` / :class:`TestConfig` (seed 2.2, 2.4, 3.2).

Train (``build_train_transform``), on the decoded uint8 ``T x H x W x 3`` frames at whatever size they come:
RandAugment (if set; full-frame semantics) -> short-side jitter (+ auto-adjust) and random (rect) crop, OR the
Inception-style crop when ``scale_relative``/``aspect_relative`` are set -> horizontal flip -> normalise ->
random erasing. Test (``build_test_transform``): short side ``test.short_side`` (auto-adjust if set) -> one crop
along the long side (index 0/1/2) or at a relative position -> normalise.

Train: resize, crop, flip and RandAugment's geometric ops are ONE ``cv2.warpAffine`` per frame from the decoded
frame into the crop (the composed map of output pixels to source pixels; resize ``src = (dst + 0.5) * in / out -
0.5``, as ``F.interpolate(align_corners=False)``), then RandAugment's colour ops as lookup tables on the crop, then
the normalisation (which also applies the last table) writes the float ``C x T x h x w`` clip. A clip's
``num_sample`` copies are drawn first and then made in one pass over the frames (``TrainTransform.copies``, with
:func:`~pmv.data.transforms.randaugment.plan_warp` and :func:`~pmv.data.transforms.randaugment.render`).

Test: ``cv2.resize`` of each frame to the test size (OpenCV's bit-exact bilinear, so it equals
:func:`~pmv.data.transforms.functional.short_side_resize`), the crop, the normalisation.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from pmv.config.schema import TestConfig, TransformConfig
from pmv.data.transforms import functional as TF
from pmv.data.transforms.erasing import ERASE_MODES, Erasure, apply_erasing, draw_erasing
from pmv.data.transforms.randaugment import AugmentOp, parse_randaugment, plan_warp, render, sample_augment_ops
from pmv.errors import ConfigError

__all__ = [
    "resize_matrix", "CopyDraw", "TrainTransform", "TestTransform", "build_train_transform", "build_test_transform",
]  # fmt: skip

_INTERPOLATIONS = ("bilinear", "bicubic")


def resize_matrix(top: int, left: int, in_hw: Sequence[int], out_hw: Sequence[int]) -> np.ndarray:
    """3 x 3 map from a pixel of the crop at ``(top, left)`` of a resize ``in_hw -> out_hw`` to the source pixel:
    ``src = (dst + 0.5) * in / out - 0.5`` per axis (``align_corners=False``; pixel centres at integers)."""
    scale_y, scale_x = in_hw[0] / out_hw[0], in_hw[1] / out_hw[1]
    return np.array(
        [[scale_x, 0.0, (left + 0.5) * scale_x - 0.5], [0.0, scale_y, (top + 0.5) * scale_y - 0.5], [0.0, 0.0, 1.0]]
    )


_PLANES = threading.local()


def _split_planes(channels: int, rows: int, width: int) -> list[np.ndarray]:
    """This thread's uint8 planes for ``cv2.split``, kept from call to call: fresh ones cost their page faults on
    every clip (7% of a train copy here)."""
    planes = getattr(_PLANES, "planes", None)
    if planes is None or len(planes) != channels or planes[0].shape != (rows, width):
        planes = _PLANES.planes = [np.empty((rows, width), dtype=np.uint8) for _ in range(channels)]
    return planes


def normalize_frames(
    frames: np.ndarray,
    mean_255: Sequence[float],
    inv_std_255: Sequence[float],
    out: Optional[torch.Tensor] = None,
    table: Optional[np.ndarray] = None,
) -> torch.Tensor:
    """uint8 ``T x h x w x 3`` frames (numpy, rows may be strided) -> float ``3 x T x h x w`` ``(x - mean) / std``
    on the 0..255 scale, into ``out`` if given. ``table``: a uint8 lookup table (``(1 | T) x 256 x 3``, shared or
    per frame) applied first, in the same pass.

    ``cv2.split``, then per channel one convert-and-scale (``cv2.addWeighted``), or with a table one float lookup
    (``cv2.LUT`` of the table's values normalised): the layout change and the arithmetic in one pass each, about
    3x faster than torch's strided copy."""
    num_frames, height, width, channels = frames.shape
    if out is None:
        out = torch.empty((channels, num_frames, height, width), dtype=torch.float32)
    elif out.shape != (channels, num_frames, height, width) or not out.is_contiguous() or out.dtype != torch.float32:
        raise TF.TransformError(f"out must be a contiguous float32 {channels}x{num_frames}x{height}x{width} tensor")
    planes_out = out.numpy()
    mean, scale = np.asarray(mean_255, dtype=np.float64), np.asarray(inv_std_255, dtype=np.float64)
    lookup = None if table is None else ((table.astype(np.float64) - mean) * scale).astype(np.float32)
    # A contiguous clip with one table (or none) for all frames is one image of T*h rows: one pass per channel.
    whole = frames.flags.c_contiguous and (lookup is None or lookup.shape[0] == 1)
    rows = num_frames * height if whole else height
    images = [frames.reshape(rows, width, channels)] if whole else list(frames)
    planes = _split_planes(channels, rows, width)
    for i, image in enumerate(images):
        cv2.split(image, planes)
        for c, plane in enumerate(planes):
            target = planes_out[c].reshape(rows, width) if whole else planes_out[c, i]
            if lookup is None:
                cv2.addWeighted(plane, scale[c], plane, 0.0, -mean[c] * scale[c], dst=target, dtype=cv2.CV_32F)
            else:
                cv2.LUT(plane, np.ascontiguousarray(lookup[i if lookup.shape[0] > 1 else 0, :, c]), dst=target)
    return out


@dataclass(frozen=True)
class CopyDraw:
    """The random choices of one augmented copy: RandAugment's ops, the crop (+ flip) map, the erasures."""

    ops: list[AugmentOp]
    matrix: np.ndarray  # 3 x 3, crop pixel -> frame pixel
    erasures: list[Erasure]


def _check_mean_std(mean: Sequence[float], std: Sequence[float]) -> tuple[list[float], list[float]]:
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(f"data.mean and data.std need 3 values each (R, G, B; std > 0), got {mean} and {std}")
    return [float(m) * 255.0 for m in mean], [1.0 / (float(s) * 255.0) for s in std]


def _check_frames(frames: torch.Tensor, what: str) -> None:
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise TF.TransformError(f"{what} needs uint8 frames T x H x W x 3, got {frames.dtype} {tuple(frames.shape)}")


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

    def source_matrix(self, height: int, width: int, generator: Optional[torch.Generator] = None) -> np.ndarray:
        """Draw the crop (and the flip) and return the 3 x 3 map from its pixels to the frame's pixels."""
        out_h, out_w = self.crop
        if self.inception:
            top, left, box_h, box_w = TF.inception_crop_box(height, width, self.scale, self.ratio, generator)
            matrix = resize_matrix(0, 0, (box_h, box_w), self.crop)
            matrix[:2, 2] += (left, top)
        else:
            low, high = self.config.jitter_scales
            if self.config.auto_adjust:
                low, high = TF.adjust_jitter_scales(low, high, self.crop, (height, width))
            size = TF.sample_jitter_scale(low, high, generator, self.config.inverse_uniform)
            resized_h, resized_w = TF.short_side_resize_shape(height, width, size)
            top, left = TF.random_crop_offsets(resized_h, resized_w, self.crop, generator)
            matrix = resize_matrix(top, left, (height, width), (resized_h, resized_w))
        if self.config.random_flip and TF.uniform(generator, 0.0, 1.0) < 0.5:
            # the mirrored crop reads its columns right to left: output x -> w - 1 - x
            matrix = matrix @ np.array([[-1.0, 0.0, out_w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        return matrix

    def draw(self, height: int, width: int, num_frames: int, generator: Optional[torch.Generator] = None) -> CopyDraw:
        """Everything random about one augmented copy of a ``num_frames x height x width`` clip, in the seed's draw
        order: RandAugment's ops, the crop, the flip, the erasing (with its noise)."""
        ops = sample_augment_ops(self.policy, generator) if self.policy else []
        matrix = self.source_matrix(height, width, generator)
        config = self.config
        erasures = []
        if config.erase_prob > 0:
            shape = (3, num_frames, *self.crop)
            erasures = draw_erasing(shape, generator, config.erase_prob, config.erase_mode, config.erase_count)
        return CopyDraw(ops, matrix, erasures)

    def copies(
        self,
        frames: torch.Tensor,
        count: int,
        generator: Optional[torch.Generator] = None,
        out: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """``count`` augmented copies of one clip (repeated augmentation): float ``count x C x T x h x w``, into
        ``out`` if given. The same clips as ``count`` calls in turn with the same generator, made in one pass over
        the frames (each decoded frame is read while it is in the cache, once for all copies)."""
        _check_frames(frames, "train transform")
        num_frames, height, width = frames.shape[:3]
        shape = (count, 3, num_frames, *self.crop)
        if out is None:
            out = torch.empty(shape, dtype=torch.float32)
        elif tuple(out.shape) != shape or not out.is_contiguous() or out.dtype != torch.float32:
            raise TF.TransformError(f"out must be a contiguous float32 {'x'.join(map(str, shape))} tensor")
        draws = [self.draw(height, width, num_frames, generator) for _ in range(count)]
        plans = [
            plan_warp(draw.ops, draw.matrix, (height, width), self.crop, self.config.interpolation,
                      self.config.randaugment_interpolation)
            for draw in draws
        ]  # fmt: skip
        for made, draw, slot in zip(render(frames.numpy(), plans, leave_tables=True), draws, out):
            normalize_frames(made.image, self._mean_255, self._inv_std_255, slot, made.table)
            apply_erasing(slot, draw.erasures)
        return out

    def __call__(
        self, frames: torch.Tensor, generator: Optional[torch.Generator] = None, out: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """One augmented copy; ``out``: a contiguous float ``C x T x h x w`` tensor to write the clip into."""
        if out is not None and (out.dim() != 4 or not out.is_contiguous()):
            raise TF.TransformError(f"out must be a contiguous float32 C x T x h x w tensor, got {tuple(out.shape)}")
        return self.copies(frames, 1, generator, None if out is None else out.unsqueeze(0))[0]

    def __repr__(self) -> str:
        kind = f"inception crop {self.scale} {self.ratio}" if self.inception else f"jitter {self.config.jitter_scales}"
        return f"TrainTransform({kind} -> {self.crop[0]}x{self.crop[1]}, randaugment={self.config.randaugment!r})"


class TestTransform:
    """``transform(frames, spatial_index=None) -> float C x T x h x w``: short side resize, one test crop, normalise.

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

    def crop_offsets(self, resized_h: int, resized_w: int, spatial_index: Optional[int] = None) -> tuple[int, int]:
        """Offsets of the crop in the resized frame (``spatial_index`` overrides this transform's index)."""
        if self.relative_position is not None:
            return TF.relative_crop_offsets(resized_h, resized_w, self.crop, self.relative_position)
        index = self.spatial_index if spatial_index is None else spatial_index
        return TF.long_side_crop_offsets(resized_h, resized_w, self.crop, index)

    def __call__(self, frames: torch.Tensor, spatial_index: Optional[int] = None) -> torch.Tensor:
        """uint8 ``T x H x W x 3`` frames -> the normalised float ``C x T x h x w`` test clip: the test resize
        (skipped when the frames already have that size), the crop ``spatial_index`` (default: this transform's)
        along the long side or at the relative position, the normalisation."""
        _check_frames(frames, "test transform")
        height, width = frames.shape[1], frames.shape[2]
        resized_h, resized_w = self.resized_shape(height, width)
        source = frames.numpy()
        if (resized_h, resized_w) != (height, width):
            resized = np.empty((frames.shape[0], resized_h, resized_w, 3), dtype=np.uint8)
            for t in range(frames.shape[0]):
                cv2.resize(np.ascontiguousarray(source[t]), (resized_w, resized_h), dst=resized[t],
                           interpolation=cv2.INTER_LINEAR)  # fmt: skip
            source = resized
        top, left = self.crop_offsets(resized_h, resized_w, spatial_index)
        crop_h, crop_w = self.crop
        return normalize_frames(source[:, top : top + crop_h, left : left + crop_w], self._mean_255, self._inv_std_255)

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
