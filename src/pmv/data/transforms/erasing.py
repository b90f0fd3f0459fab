"""Random erasing of video clips (timm's RandomErasing in the seed's "cube" form).

Applied after cropping and normalisation, on a float ``C x T x H x W`` clip: with probability ``prob`` the clip
gets ``count`` boxes, each the SAME box on every frame, with area a fraction U(0.02, 1/3) of the frame / count
and aspect (h/w) log-uniform in [0.3, 1/0.3]; up to 10 tries per box to find one that fits strictly inside.
Fill: ``pixel`` = per-pixel standard normal noise (fresh for every frame, as the seed draws it per frame),
``rand`` = one normal colour per channel, ``const`` = 0 (the normalised mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from pmv.data.transforms.functional import TransformError, randint, uniform

__all__ = ["ERASE_MODES", "Erasure", "erase_box", "draw_erasing", "apply_erasing", "random_erasing", "RandomErasing"]

ERASE_MODES = ("pixel", "rand", "const")


def erase_box(
    height: int,
    width: int,
    generator: Optional[torch.Generator] = None,
    area: Sequence[float] = (0.02, 1.0 / 3.0),
    min_aspect: float = 0.3,
    count: int = 1,
    attempts: int = 10,
) -> Optional[tuple[int, int, int, int]]:
    """One erasing box ``(top, left, h, w)``, or None when no try fits (then nothing is erased)."""
    log_low, log_high = math.log(min_aspect), math.log(1.0 / min_aspect)
    for _ in range(attempts):
        target_area = uniform(generator, area[0], area[1]) * height * width / count
        aspect = math.exp(uniform(generator, log_low, log_high))
        box_h = int(round(math.sqrt(target_area * aspect)))
        box_w = int(round(math.sqrt(target_area / aspect)))
        if box_w < width and box_h < height:
            top = randint(generator, 0, height - box_h + 1)
            left = randint(generator, 0, width - box_w + 1)
            return top, left, box_h, box_w
    return None


@dataclass(frozen=True)
class Erasure:
    """One drawn box ``(top, left, h, w)`` and what is written into it (noise, a colour or 0, broadcastable)."""

    box: tuple[int, int, int, int]
    fill: torch.Tensor


def draw_erasing(
    shape: Sequence[int],
    generator: Optional[torch.Generator] = None,
    prob: float = 0.25,
    mode: str = "pixel",
    count: int = 1,
    area: Sequence[float] = (0.02, 1.0 / 3.0),
    min_aspect: float = 0.3,
    dtype: torch.dtype = torch.float32,
) -> list[Erasure]:
    """The erasures of one ``C x T x H x W`` clip of ``shape``, drawn (with the fill noise) before the clip exists,
    in the order :func:`random_erasing` draws them; empty when the clip is not erased."""
    if mode not in ERASE_MODES:
        raise TransformError(f"erase mode must be one of {ERASE_MODES}, got {mode!r}")
    if len(shape) != 4:
        raise TransformError(f"random erasing needs a C x T x H x W clip, got shape {tuple(shape)}")
    if prob <= 0 or uniform(generator, 0.0, 1.0) >= prob:
        return []
    channels, num_frames, height, width = (int(v) for v in shape)
    erasures = []
    for _ in range(count):
        box = erase_box(height, width, generator, area, min_aspect, count)
        if box is None:
            continue
        if mode == "pixel":
            fill = torch.randn((channels, num_frames, box[2], box[3]), generator=generator, dtype=dtype)
        elif mode == "rand":
            fill = torch.randn((channels, 1, 1, 1), generator=generator, dtype=dtype)
        else:
            fill = torch.zeros((), dtype=dtype)
        erasures.append(Erasure(box, fill))
    return erasures


def apply_erasing(clip: torch.Tensor, erasures: Sequence[Erasure]) -> torch.Tensor:
    """Write the drawn ``erasures`` into the float ``C x T x H x W`` clip IN PLACE (and return it)."""
    for erasure in erasures:
        top, left, box_h, box_w = erasure.box
        clip[:, :, top : top + box_h, left : left + box_w] = erasure.fill
    return clip


def random_erasing(
    clip: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    prob: float = 0.25,
    mode: str = "pixel",
    count: int = 1,
    area: Sequence[float] = (0.02, 1.0 / 3.0),
    min_aspect: float = 0.3,
) -> torch.Tensor:
    """Erase boxes of a float ``C x T x H x W`` clip IN PLACE (and return it); same box on every frame."""
    if clip.dim() != 4 or not clip.is_floating_point():
        raise TransformError(f"random erasing needs a float C x T x H x W clip, got {clip.dtype} {tuple(clip.shape)}")
    erasures = draw_erasing(clip.shape, generator, prob, mode, count, area, min_aspect, clip.dtype)
    return apply_erasing(clip, erasures)


class RandomErasing:
    """:func:`random_erasing` with fixed settings: ``RandomErasing(prob=0.25)(clip, generator)``."""

    def __init__(self, prob: float = 0.25, mode: str = "pixel", count: int = 1,
                 area: Sequence[float] = (0.02, 1.0 / 3.0), min_aspect: float = 0.3):  # fmt: skip
        if mode not in ERASE_MODES:
            raise TransformError(f"erase mode must be one of {ERASE_MODES}, got {mode!r}")
        self.prob, self.mode, self.count, self.area, self.min_aspect = prob, mode, count, tuple(area), min_aspect

    def __call__(self, clip: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return random_erasing(clip, generator, self.prob, self.mode, self.count, self.area, self.min_aspect)

    def __repr__(self) -> str:
        return f"RandomErasing(prob={self.prob}, mode={self.mode!r}, count={self.count})"
