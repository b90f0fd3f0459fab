"""Spatial transforms of video clips: the seed's (PySlowFast + PMV) semantics, on plain torch tensors.

Layouts
-------
* ``frames``: ``T x H x W x 3`` uint8, as the video reader returns them.
* ``clip``: ``C x T x H x W`` (float, or uint8 where an op only slices). Every spatial op here works on the
  last two dimensions, so it also accepts any ``... x H x W`` tensor.

Values stay on the 0..255 scale until :func:`normalize`; resizing, cropping and flipping are linear per channel,
so normalising after them gives the same numbers as the seed (which normalises first) at lower cost. Resizing runs
on OpenCV (``cv2.resize``, bilinear, half-pixel centres as ``F.interpolate(align_corners=False)``): uint8 in gives
uint8-rounded values (OpenCV's bit-exact fixed point), float in gives float32.

Randomness always comes from an explicit ``torch.Generator`` argument (``None`` = torch's global generator),
so a clip's augmentation is reproducible from its generator state.

Sizes are ``(height, width)``. A crop that does not fit the frame raises :class:`TransformError` (the seed
silently returned a smaller crop, which later failed in collate).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from pmv.errors import PmvError

__all__ = [
    "TransformError",
    "uniform",
    "randint",
    "thwc_to_cthw",
    "sample_jitter_scale",
    "short_side_resize_shape",
    "short_side_resize",
    "random_short_side_scale_jitter",
    "adjust_jitter_scales",
    "crop",
    "random_crop_offsets",
    "random_crop",
    "inception_crop_box",
    "resized_crop",
    "random_resized_crop",
    "horizontal_flip",
    "random_horizontal_flip",
    "normalize",
    "long_side_crop_offsets",
    "long_side_crop",
    "relative_crop_offsets",
    "relative_position_crop",
]


class TransformError(PmvError, ValueError):
    """A transform cannot be applied to this input (crop larger than the frame, bad size or layout)."""


# --------------------------------------------------------------------------------------------------- randomness
def uniform(generator: Optional[torch.Generator], low: float, high: float) -> float:
    """One draw from U(low, high) (like ``np.random.uniform``: also fine when low > high)."""
    return low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()


def randint(generator: Optional[torch.Generator], low: int, high: int) -> int:
    """One integer from ``[low, high)`` (exclusive upper bound, like ``np.random.randint``)."""
    if high <= low:
        raise ValueError(f"randint needs high > low, got [{low}, {high})")
    return int(torch.randint(low, high, (), generator=generator).item())


# --------------------------------------------------------------------------------------------------- helpers
def _pair(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    values = tuple(int(v) for v in size)
    if len(values) != 2:
        raise TransformError(f"{name} must be an int or [height, width], got {list(size)}")
    if min(values) <= 0:
        raise TransformError(f"{name} must be positive, got {list(values)}")
    return values  # type: ignore[return-value]


def _check_fits(height: int, width: int, crop_h: int, crop_w: int, what: str) -> None:
    if crop_h > height or crop_w > width:
        raise TransformError(
            f"{what}: crop {crop_h}x{crop_w} (HxW) does not fit a {height}x{width} frame; resize the short side "
            "to at least the crop size first (turn auto_adjust on for rectangular crops)"
        )


def thwc_to_cthw(frames: torch.Tensor) -> torch.Tensor:
    """Reader frames ``T x H x W x 3`` -> clip ``3 x T x H x W`` (a view, no copy)."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise TransformError(f"expected frames T x H x W x 3, got shape {tuple(frames.shape)}")
    return frames.permute(3, 0, 1, 2)


_CV_MAX_CHANNELS = 512  # cv2.Mat's channel limit
CV_INTERPOLATION = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


def _resize(clip: torch.Tensor, out_h: int, out_w: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize the last two dims of ``... x H x W`` with ``cv2.resize`` (every leading plane alike, no antialias).

    The planes go to OpenCV as the channels of one ``H x W x N`` image: for uint8 its bilinear path is bit-exact
    and the same for any channel count, so this equals a per-frame resize of ``T x H x W x 3`` frames.
    """
    if interpolation not in CV_INTERPOLATION:
        raise TransformError(f"interpolation must be one of {tuple(CV_INTERPOLATION)}, got {interpolation!r}")
    lead, (height, width) = tuple(clip.shape[:-2]), clip.shape[-2:]
    planes = clip.reshape(-1, height, width)
    if planes.dtype not in (torch.uint8, torch.float32):
        planes = planes.float()
    image = np.ascontiguousarray(planes.permute(1, 2, 0).numpy())
    flag = CV_INTERPOLATION[interpolation]
    chunks = [  # cv2 drops a single channel's axis: put it back
        cv2.resize(image[..., i : i + _CV_MAX_CHANNELS], (out_w, out_h), interpolation=flag).reshape(out_h, out_w, -1)
        for i in range(0, image.shape[-1], _CV_MAX_CHANNELS)
    ]
    out = chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=-1)
    return torch.from_numpy(out).permute(2, 0, 1).reshape(*lead, out_h, out_w)


# --------------------------------------------------------------------------------------------------- scale jitter
def sample_jitter_scale(
    min_size: int, max_size: int, generator: Optional[torch.Generator] = None, inverse_uniform: bool = False
) -> int:
    """The seed's short-side size draw: ``round(U(min, max))``, or ``round(1 / U(1/max, 1/min))``."""
    if inverse_uniform:
        return int(round(1.0 / uniform(generator, 1.0 / max_size, 1.0 / min_size)))
    return int(round(uniform(generator, min_size, max_size)))


def short_side_resize_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Frame size after resizing the short side to ``size``: the long side is ``floor(long / short * size)``.

    Returns the input size when the short side already equals ``size`` (the seed then skips the resize).
    """
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def short_side_resize(clip: torch.Tensor, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize so the short side is ``size`` (bilinear, ``align_corners=False``, no antialias, as the seed).

    A no-op (the same tensor) when the short side already equals ``size``. uint8 in: uint8 out (rounded, OpenCV's
    bit-exact bilinear); float in: float32 out.
    """
    height, width = clip.shape[-2:]
    new_h, new_w = short_side_resize_shape(height, width, size)
    if (new_h, new_w) == (height, width):
        return clip
    return _resize(clip, new_h, new_w, interpolation)


def random_short_side_scale_jitter(
    clip: torch.Tensor,
    min_size: int,
    max_size: int,
    generator: Optional[torch.Generator] = None,
    inverse_uniform: bool = False,
) -> torch.Tensor:
    """Draw the short side with :func:`sample_jitter_scale` and resize to it (min == max: deterministic)."""
    return short_side_resize(clip, sample_jitter_scale(min_size, max_size, generator, inverse_uniform))


def adjust_jitter_scales(
    min_scale: int, max_scale: int, crop_size: Sequence[int], frame_size: Sequence[int]
) -> tuple[int, int]:
    """The seed's auto-adjust of the jitter lower bound so a rectangular crop fits (seed 2.3).

    ``crop_size`` and ``frame_size`` are (height, width). Returns ``(new_min, max_scale)``; max never changes.
    The checks are asymmetric exactly as in the seed: a portrait/square frame with a tall crop only checks that
    the long side reaches the crop height (it relies on ``min_scale >= crop width``); a landscape frame with a
    wide crop only checks the crop width.
    """
    crop_h, crop_w = _pair(crop_size, "crop_size")
    height, width = _pair(frame_size, "frame_size")
    if height >= width:  # portrait or square: the short side is the width
        if crop_h > crop_w:
            needed = math.ceil(width / height * crop_h)
        else:
            needed = crop_w
    else:  # landscape: the short side is the height
        if crop_h > crop_w:
            needed = crop_h
        else:
            needed = math.ceil(height / width * crop_w)
    return max(min_scale, needed), max_scale


# --------------------------------------------------------------------------------------------------- crops
def crop(clip: torch.Tensor, top: int, left: int, size: int | Sequence[int]) -> torch.Tensor:
    """The ``size`` (h, w) window at ``(top, left)`` of the last two dims (a view)."""
    crop_h, crop_w = _pair(size)
    height, width = clip.shape[-2:]
    if top < 0 or left < 0 or top + crop_h > height or left + crop_w > width:
        raise TransformError(
            f"crop {crop_h}x{crop_w} at (top={top}, left={left}) falls outside the {height}x{width} frame"
        )
    return clip[..., top : top + crop_h, left : left + crop_w]


def random_crop_offsets(
    height: int, width: int, size: int | Sequence[int], generator: Optional[torch.Generator] = None
) -> tuple[int, int]:
    """The seed's random (rect) crop offsets: ``randint(0, H - Hc)`` with an exclusive upper bound, so the
    last offset ``H - Hc`` is never drawn (0 when the crop equals the frame), likewise for the width."""
    crop_h, crop_w = _pair(size)
    _check_fits(height, width, crop_h, crop_w, "random crop")
    top = randint(generator, 0, height - crop_h) if height > crop_h else 0
    left = randint(generator, 0, width - crop_w) if width > crop_w else 0
    return top, left


def random_crop(
    clip: torch.Tensor, size: int | Sequence[int], generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Random square or rectangular crop (always returns just the tensor, fixing the seed's exact-size case)."""
    top, left = random_crop_offsets(clip.shape[-2], clip.shape[-1], size, generator)
    return crop(clip, top, left, size)


def inception_crop_box(
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    generator: Optional[torch.Generator] = None,
    switch_hw: bool = True,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """Inception-style crop box ``(top, left, h, w)`` (seed ``_get_param_spatial_crop``).

    Up to ``attempts`` tries: area fraction ~ U(scale), aspect (w/h) log-uniform in ``ratio``,
    ``w = round(sqrt(area * aspect))``, ``h = round(sqrt(area / aspect))``, swapped with probability 0.5 when
    ``switch_hw``; accepted if it fits, at offsets uniform over every valid position (inclusive). Fallback: the
    central crop, clamped to the ratio range.
    """
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target_area = uniform(generator, scale[0], scale[1]) * area
        aspect = math.exp(uniform(generator, log_low, log_high))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if switch_hw and uniform(generator, 0.0, 1.0) < 0.5:
            crop_w, crop_h = crop_h, crop_w
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = randint(generator, 0, height - crop_h + 1)
            left = randint(generator, 0, width - crop_w + 1)
            return top, left, crop_h, crop_w
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_w = width
        crop_h = int(round(crop_w / min(ratio)))
    elif in_ratio > max(ratio):
        crop_h = height
        crop_w = int(round(crop_h * max(ratio)))
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def resized_crop(
    clip: torch.Tensor,
    box: Sequence[int],
    size: int | Sequence[int],
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Crop ``box = (top, left, h, w)`` then resize it to ``size`` (h, w) (dtype as :func:`short_side_resize`)."""
    top, left, box_h, box_w = (int(v) for v in box)
    out_h, out_w = _pair(size)
    return _resize(crop(clip, top, left, (box_h, box_w)), out_h, out_w, interpolation)


def random_resized_crop(
    clip: torch.Tensor,
    size: int | Sequence[int],
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    generator: Optional[torch.Generator] = None,
    switch_hw: bool = True,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Inception-style random resized crop to a square or rectangular ``size``."""
    box = inception_crop_box(clip.shape[-2], clip.shape[-1], scale, ratio, generator, switch_hw)
    return resized_crop(clip, box, size, interpolation)


# --------------------------------------------------------------------------------------------------- flip, normalise
def horizontal_flip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (the last dimension)."""
    return clip.flip(-1)


def random_horizontal_flip(
    clip: torch.Tensor, generator: Optional[torch.Generator] = None, p: float = 0.5
) -> torch.Tensor:
    """Mirror with probability ``p``."""
    return horizontal_flip(clip) if uniform(generator, 0.0, 1.0) < p else clip


def normalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``C x T x H x W`` clip on the 0..255 scale (uint8 or float) -> float ``(clip / 255 - mean) / std``."""
    if clip.dim() != 4 or clip.shape[0] != len(mean) or len(mean) != len(std):
        raise TransformError(
            f"normalize expects a C x T x H x W clip with C = len(mean) = len(std); got shape "
            f"{tuple(clip.shape)}, {len(mean)} means, {len(std)} stds"
        )
    mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1) * 255.0)
    return (clip.float() - mean_t) * inv_std


# --------------------------------------------------------------------------------------------------- test crops
def long_side_crop_offsets(height: int, width: int, size: int | Sequence[int], index: int) -> tuple[int, int]:
    """Offsets of test crop ``index`` along the LONG side (seed ``uniform_crop(_rect)``).

    Index 1 is the centre (``ceil((H - Hc) / 2)``, ``ceil((W - Wc) / 2)``). For a portrait frame (H > W), index 0
    is the top and 2 the bottom; for landscape or square frames, 0 is the left and 2 the right.
    """
    crop_h, crop_w = _pair(size)
    if index not in (0, 1, 2):
        raise TransformError(f"spatial crop index must be 0, 1 or 2 (top/left, centre, bottom/right), got {index}")
    _check_fits(height, width, crop_h, crop_w, "test crop")
    top = int(math.ceil((height - crop_h) / 2))
    left = int(math.ceil((width - crop_w) / 2))
    if height > width:  # portrait: crops move along the height
        if index == 0:
            top = 0
        elif index == 2:
            top = height - crop_h
    else:  # landscape or square: crops move along the width
        if index == 0:
            left = 0
        elif index == 2:
            left = width - crop_w
    return top, left


def long_side_crop(clip: torch.Tensor, size: int | Sequence[int], index: int) -> torch.Tensor:
    """Test crop ``index`` (0/1/2) placed along the long side; see :func:`long_side_crop_offsets`."""
    top, left = long_side_crop_offsets(clip.shape[-2], clip.shape[-1], size, index)
    return crop(clip, top, left, size)


def relative_crop_offsets(
    height: int, width: int, size: int | Sequence[int], position: Sequence[float]
) -> tuple[int, int]:
    """Offsets of a crop at relative position ``(rh, rw)`` in [0, 1]^2 (0 = top/left edge, 1 = bottom/right):
    ``off = ceil((dim - crop) * r)`` clamped to ``[0, dim - crop]`` (seed ``specified_crop``)."""
    crop_h, crop_w = _pair(size)
    _check_fits(height, width, crop_h, crop_w, "relative-position crop")
    rel_h, rel_w = (float(v) for v in position)
    top = min(max(int(math.ceil((height - crop_h) * rel_h)), 0), height - crop_h)
    left = min(max(int(math.ceil((width - crop_w) * rel_w)), 0), width - crop_w)
    return top, left


def relative_position_crop(
    clip: torch.Tensor, size: int | Sequence[int], position: Sequence[float]
) -> torch.Tensor:
    """A crop at relative position ``(rh, rw)`` (the spatial-bias probe); square or rectangular."""
    top, left = relative_crop_offsets(clip.shape[-2], clip.shape[-1], size, position)
    return crop(clip, top, left, size)
