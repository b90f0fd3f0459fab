"""RandAugment for video clips (timm's ``rand-m7-n4-mstd0.5-inc1`` policy as used by the seed), on torch tensors.

Seed semantics reproduced: per clip, ``n`` ops drawn uniformly WITH replacement from the 15 ops of the policy;
each fires with probability 0.5; its magnitude ~ N(m, mstd) clipped to [0, mmax=10]; the sign of signed ops is
random; the SAME ops, magnitudes and signs apply to every frame of the clip; geometric ops fill with gray 128; the
ops run on the full-resolution uint8 frames, before resizing, cropping and normalisation. Statistics-based ops
(AutoContrast, Equalize, Contrast) use each frame's own statistics, as PIL does per image.

How it runs (why it is fast)
----------------------------
On OpenCV, at output resolution. The geometric ops are affine maps: composed with the caller's map (the train
pipeline's resize + crop + flip), they make ONE ``cv2.warpAffine`` per frame straight from the decoded frame into
the crop, so a 720x1280 frame is never augmented or resized whole. The pixels that leave the frame at a geometric
op are known from the composed maps; they take gray 128 at that step. Colour ops then run on the crop in order:
consecutive per-channel ops are composed into one lookup table (``cv2.LUT``; the train pipeline folds the last
one into its normalisation), Color and Sharpness are single OpenCV calls. Statistics ops (AutoContrast, Equalize,
Contrast) take each frame's statistics from the augmented frame on a coarse grid (short side about 160); with no
geometric op before them, that grid is one thumbnail of the clip, shared by its copies and ops. Several copies of
one clip (repeated augmentation) are planned first and then made in one pass over the frames (:func:`plan_warp`,
:func:`render`): a cold 720x1280 frame costs a warp about twice what a cached one does.

Differences from the seed's PIL-per-op chain, all small (``docs/transforms.md`` gives the measured tolerances):
one interpolation instead of one per geometric op plus the resize (bilinear when the crop is resized, which is
the closer one to the seed's chain; else the op's, OpenCV's bicubic a = -0.75 against PIL's -0.5); colour ops
see interpolated values; Sharpness's 3x3 smoothing is mapped onto the output grid; statistics come from a
subsampled frame. :func:`rand_augment` materialises whole frames when a uint8 result is wanted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import cv2
import numpy as np
import torch

from pmv.data.transforms.functional import CV_INTERPOLATION, TransformError, randint, uniform
from pmv.errors import ConfigError

__all__ = [
    "RandAugmentPolicy",
    "AugmentOp",
    "INCREASING_OPS",
    "ORIGINAL_OPS",
    "GEOMETRIC_OPS",
    "FILL_VALUE",
    "parse_randaugment",
    "sample_augment_ops",
    "op_affine",
    "WarpPlan",
    "Rendered",
    "plan_warp",
    "render",
    "warp_frames",
    "augment_warp",
    "rand_augment",
    "RandAugment",
]

FILL_VALUE = 128.0  # timm's _FILL gray, used by every geometric op
MAX_LEVEL = 10.0

# The 15 ops of timm's ``inc1`` set (the seed's) and of the original set (``inc0``), in timm's order.
INCREASING_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
    "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)  # fmt: skip
ORIGINAL_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)  # fmt: skip
GEOMETRIC_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"})
_STATS_OPS = frozenset({"AutoContrast", "Equalize", "Contrast", "ContrastIncreasing"})
_SHARPNESS_OPS = frozenset({"Sharpness", "SharpnessIncreasing"})
_INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class RandAugmentPolicy:
    """A parsed ``rand-...`` string (timm syntax)."""

    magnitude: float = 10.0  # m
    num_ops: int = 2  # n
    magnitude_std: float = 0.0  # mstd (inf = uniform in [0, m])
    magnitude_max: float = MAX_LEVEL  # mmax
    increasing: bool = False  # inc
    prob: float = 0.5  # p: chance each drawn op fires

    @property
    def ops(self) -> tuple[str, ...]:
        return INCREASING_OPS if self.increasing else ORIGINAL_OPS


@dataclass(frozen=True)
class AugmentOp:
    """One op that fires, with its resolved argument (angle in degrees, shear factor, translate fraction,
    posterize bits, solarize threshold, add amount or enhance factor; 0 for argument-free ops)."""

    name: str
    arg: float = 0.0

    @property
    def geometric(self) -> bool:
        return self.name in GEOMETRIC_OPS


def parse_randaugment(spec: str) -> RandAugmentPolicy:
    """Parse timm's RandAugment string, e.g. ``"rand-m7-n4-mstd0.5-inc1"`` (keys m, n, mstd, mmax, inc, p)."""
    parts = spec.strip().split("-")
    if not parts or parts[0] != "rand":
        raise ConfigError(f"transform.randaugment {spec!r} must start with 'rand-' (e.g. rand-m7-n4-mstd0.5-inc1)")
    fields: dict = {}
    for part in parts[1:]:
        key = next((k for k in ("mstd", "mmax", "inc", "m", "n", "p") if part.startswith(k)), None)
        if key is None:
            raise ConfigError(
                f"transform.randaugment {spec!r}: unknown section {part!r}; known: m<magnitude>, n<ops>, "
                "mstd<std>, mmax<max>, inc<0|1>, p<prob>"
            )
        raw = part[len(key) :]
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"transform.randaugment {spec!r}: {part!r} needs a number after {key!r}") from None
        if key == "m":
            fields["magnitude"] = value
        elif key == "n":
            if value != int(value) or value < 0:
                raise ConfigError(f"transform.randaugment {spec!r}: n must be a whole number >= 0")
            fields["num_ops"] = int(value)
        elif key == "mstd":
            fields["magnitude_std"] = value
        elif key == "mmax":
            fields["magnitude_max"] = value
        elif key == "inc":
            fields["increasing"] = bool(int(value))
        else:
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"transform.randaugment {spec!r}: p must lie in [0, 1]")
            fields["prob"] = value
    return RandAugmentPolicy(**fields)


def _level_to_arg(name: str, level: float, negate: bool) -> float:
    sign = -1.0 if negate else 1.0
    frac = level / MAX_LEVEL
    if name == "Rotate":
        return sign * frac * 30.0
    if name in ("ShearX", "ShearY"):
        return sign * frac * 0.3
    if name in ("TranslateXRel", "TranslateYRel"):
        return sign * frac * 0.45
    if name == "PosterizeIncreasing":
        return float(4 - int(frac * 4))
    if name == "Posterize":
        return float(int(frac * 4))
    if name == "SolarizeIncreasing":
        return float(256 - int(frac * 256))
    if name == "Solarize":
        return float(int(frac * 256))
    if name == "SolarizeAdd":
        return float(int(frac * 110))
    if name.endswith("Increasing"):  # Color/Contrast/Brightness/Sharpness: 1 +- up to 0.9
        return 1.0 + sign * frac * 0.9
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return frac * 1.8 + 0.1
    return 0.0  # AutoContrast, Equalize, Invert


def sample_augment_ops(policy: RandAugmentPolicy, generator: Optional[torch.Generator] = None) -> list[AugmentOp]:
    """Draw one clip's ops: ``n`` with replacement; each fires with ``policy.prob``; the ones that fire, in order."""
    names = policy.ops
    fired: list[AugmentOp] = []
    for _ in range(policy.num_ops):
        name = names[randint(generator, 0, len(names))]
        if uniform(generator, 0.0, 1.0) >= policy.prob:
            continue
        level = policy.magnitude
        if policy.magnitude_std == float("inf"):
            level = uniform(generator, 0.0, level)
        elif policy.magnitude_std > 0:
            level = level + policy.magnitude_std * torch.randn((), generator=generator, dtype=torch.float64).item()
        level = max(0.0, min(policy.magnitude_max, level))
        negate = uniform(generator, 0.0, 1.0) < 0.5
        fired.append(AugmentOp(name, _level_to_arg(name, level, negate)))
    return fired


# --------------------------------------------------------------------------------------------------- geometry
def op_affine(op: AugmentOp, height: int, width: int) -> tuple[float, float, float, float, float, float]:
    """``(a, b, c, d, e, f)`` mapping an output pixel (x, y) to the input pixel ``(a x + b y + c, d x + e y + f)``.

    Pixel-index coordinates (pixel i is centred at i). These are PIL's output-to-input maps (defined on pixel
    edges, as timm calls them) rewritten for pixel centres: shear about the top-left corner, translation by a
    fraction of the width/height, rotation (counter-clockwise for positive degrees) about the frame centre.
    """
    name, arg = op.name, op.arg
    if name == "ShearX":
        return 1.0, arg, 0.5 * arg, 0.0, 1.0, 0.0
    if name == "ShearY":
        return 1.0, 0.0, 0.0, arg, 1.0, 0.5 * arg
    if name == "TranslateXRel":
        return 1.0, 0.0, arg * width, 0.0, 1.0, 0.0
    if name == "TranslateYRel":
        return 1.0, 0.0, 0.0, 0.0, 1.0, arg * height
    if name == "Rotate":
        angle = -math.radians(arg)
        cos, sin = math.cos(angle), math.sin(angle)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        return cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy
    raise TransformError(f"{name} is not a geometric op")


# --------------------------------------------------------------------------------------------------- evaluation
def _matrix3(matrix) -> np.ndarray:
    """A 2 x 3 or 3 x 3 affine map as a 3 x 3 float64 array."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (2, 3):
        m = np.vstack([m, [0.0, 0.0, 1.0]])
    if m.shape != (3, 3):
        raise TransformError(f"an affine map must be 2 x 3 or 3 x 3, got shape {m.shape}")
    return m


def _plan(ops: Sequence[AugmentOp], matrix: np.ndarray, height: int, width: int, out_h: int, out_w: int):
    """Walk the ops from the last to the first, composing the output-to-source map.

    Returns the composed 3 x 3 map (one warp reads the source), the fill masks ``{k: uint8 h x w, 255 = fill}``
    (the pixels that leave the frame at geometric op k and at no later one: they take the gray fill at step k, and
    later ops act on it) and, for each Sharpness op, the 2 x 2 linear map from output offsets to that op's frame.
    """
    chain = matrix.copy()
    masks: dict[int, np.ndarray] = {}
    linear: dict[int, np.ndarray] = {}
    taken: Optional[np.ndarray] = None
    xs = np.arange(out_w, dtype=np.float64)[None, :]
    ys = np.arange(out_h, dtype=np.float64)[:, None]
    for k in reversed(range(len(ops))):
        op = ops[k]
        if op.geometric:
            chain = _matrix3(np.reshape(op_affine(op, height, width), (2, 3))) @ chain
            src_x = chain[0, 0] * xs + chain[0, 1] * ys + chain[0, 2]
            src_y = chain[1, 0] * xs + chain[1, 1] * ys + chain[1, 2]
            outside = (src_x < -0.5) | (src_x > width - 0.5) | (src_y < -0.5) | (src_y > height - 0.5)
            if taken is not None:
                outside &= ~taken
            if outside.any():
                masks[k] = outside.view(np.uint8) * np.uint8(255)
                taken = outside if taken is None else taken | outside
        elif op.name in _SHARPNESS_OPS:
            linear[k] = chain[:2, :2].copy()
    return chain, masks, linear


@dataclass
class _Grid:
    """Where a statistics op's frame is sampled: the frame after ``ops`` (through their geometric ops) at every
    ``step``-th pixel (nearest). With no geometric op before, that is the clip's thumbnail (see :func:`render`)."""

    ops: list[AugmentOp]
    warp: Optional[np.ndarray]  # 2 x 3, grid pixel -> source pixel; None: the thumbnail itself
    masks: dict[int, np.ndarray]


@dataclass
class WarpPlan:
    """One augmented copy, planned before a pixel is read (see :func:`plan_warp`); :func:`render` makes it."""

    ops: list[AugmentOp]
    size: tuple[int, int]  # (h, w) of the output
    warp: np.ndarray  # 2 x 3, output pixel -> source pixel: every geometric op and the caller's map in one
    interpolation: str
    masks: dict[int, np.ndarray]
    linear: dict[int, np.ndarray]
    whole_frame: bool  # the identity map onto the whole frame (PIL's filter edges apply)
    grids: list[_Grid]
    stats_step: int  # the thumbnail's pixel spacing on the source frame


class Rendered(NamedTuple):
    """A copy made by :func:`render`: uint8 ``T x h x w x 3`` frames and, when asked to leave it, the last lookup
    table (``(1 | T) x 256 x 3``) still to apply, else None."""

    image: np.ndarray
    table: Optional[np.ndarray]


def plan_warp(
    ops: Sequence[AugmentOp],
    matrix,
    frame_size: Sequence[int],
    size: Sequence[int],
    interpolation: str = "bilinear",
    geometric_interpolation: str = "bicubic",
    stats_size: int = 160,
) -> WarpPlan:
    """Plan the frames of ``frame_size = (H, W)`` after ``ops``, read through ``matrix`` into ``size = (h, w)``
    (arguments as :func:`augment_warp`): the composed warp, the fill masks and the statistics grids."""
    for name in (interpolation, geometric_interpolation):
        if name not in CV_INTERPOLATION:
            raise TransformError(f"interpolation must be one of {tuple(CV_INTERPOLATION)}, got {name!r}")
    height, width = (int(v) for v in frame_size)
    out_h, out_w = (int(v) for v in size)
    matrix = _matrix3(matrix)
    ops = list(ops)
    composed, masks, linear = _plan(ops, matrix, height, width, out_h, out_w)
    # The seed interpolates each geometric op (bicubic) at full resolution, then resizes (bilinear). When our map
    # resizes too, one bilinear warp is about twice as close to that chain as one bicubic warp (mean 0.25-0.8 vs
    # 1.0-1.45 levels for 0.5x-2.5x resizes, measured on camera-like video) and 3x cheaper; without a resize the
    # op's own interpolation is the closer one.
    resizes = not np.allclose(np.abs(matrix[:2, :2]), np.eye(2))
    mode = geometric_interpolation if any(op.geometric for op in ops) and not resizes else interpolation
    whole_frame = (out_h, out_w) == (height, width) and np.allclose(matrix, np.eye(3))
    step = max(1, min(height, width) // max(1, stats_size))
    return WarpPlan(ops, (out_h, out_w), composed[:2], mode, masks, linear, whole_frame,
                    _statistics_grids(ops, height, width, step), step)  # fmt: skip


def _thumbnail_size(height: int, width: int, step: int) -> tuple[int, int]:
    return -(-height // step), -(-width // step)


def _statistics_grids(ops: Sequence[AugmentOp], height: int, width: int, step: int) -> list[_Grid]:
    """The grids the statistics ops take their tables from.

    Op k needs the frame after ``ops[:k]``: one grid per run of statistics ops with no geometric op between them,
    warped through the geometric ops before them only."""
    wanted = [k for k, op in enumerate(ops) if op.name in _STATS_OPS]
    grid_h, grid_w = _thumbnail_size(height, width, step)
    to_source = np.diag([float(step), float(step), 1.0])  # grid (thumbnail) pixel -> source pixel
    grids, covered = [], -1
    for i, k in enumerate(wanted):
        if k <= covered:
            continue
        end = k + 1
        for later in wanted[i + 1 :]:
            if any(op.geometric for op in ops[end:later]):
                break
            end = later + 1
        composed, masks, _ = _plan(ops[:end], to_source, height, width, grid_h, grid_w)
        moved = any(op.geometric for op in ops[:end])
        # from the source, not the thumbnail: nearest of nearest moves samples by up to step / 2 pixels, which
        # measured 30% further from full-frame Equalize after a rotation
        warp = composed[:2] if moved else None
        grids.append(_Grid(list(ops[:end]), warp, masks))
        covered = end - 1
    return grids


def render(frames: np.ndarray, plans: Sequence[WarpPlan], leave_tables: bool = False) -> list[Rendered]:
    """Make every planned copy of the uint8 frames ``T x H x W x 3`` (numpy): one :class:`Rendered` per plan.

    Frame by frame, every copy's warp and every statistics grid read the frame while it is in the cache (a cold
    720x1280 frame costs a warp about twice what a cached one does); grids with no geometric op before them are one
    thumbnail of the clip, shared by all copies and ops. Then each copy's colour ops run on its warped crop.
    ``leave_tables``: each copy's last lookup table is returned instead of applied, where that is possible."""
    num_frames, height, width = frames.shape[:3]
    images = [np.empty((num_frames, *plan.size, 3), dtype=np.uint8) for plan in plans]
    jobs = [  # (map, (w, h), interpolation, output, source box to copy first or None)
        (plan.warp, plan.size[::-1], CV_INTERPOLATION[plan.interpolation], image, _slanted_region(plan, height, width))
        for plan, image in zip(plans, images)
    ]
    thumbnails, sampled = {}, {}  # step -> thumbnail; (plan, grid) -> grid warped from the source
    for i, plan in enumerate(plans):
        size = _thumbnail_size(height, width, plan.stats_step)
        for j, grid in enumerate(plan.grids):
            if grid.warp is not None:
                sampled[i, j] = np.empty((num_frames, *size, 3), dtype=np.uint8)
                jobs.append((grid.warp, size[::-1], cv2.INTER_NEAREST, sampled[i, j], None))
            elif plan.stats_step not in thumbnails:
                thumbnails[plan.stats_step] = np.empty((num_frames, *size, 3), dtype=np.uint8)
                every_step = np.array([[plan.stats_step, 0.0, 0.0], [0.0, plan.stats_step, 0.0]])
                jobs.append((every_step, size[::-1], cv2.INTER_NEAREST, thumbnails[plan.stats_step], None))
    for t in range(num_frames):
        frame = np.ascontiguousarray(frames[t])
        for matrix, dsize, mode, out, region in jobs:
            source = frame
            if region is not None:  # one sequential copy of the rows the warp reads, then the warp from it
                (top, bottom, left, right), matrix, source = region
                np.copyto(source, frame[top:bottom, left:right])
            cv2.warpAffine(source, matrix, dsize, dst=out[t], flags=mode | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    made = []
    for i, (plan, image) in enumerate(zip(plans, images)):
        tables: dict[int, np.ndarray] = {}
        for j, grid in enumerate(plan.grids):
            # a copy of the shared thumbnail: the ops change it
            grid_image = sampled[i, j] if grid.warp is not None else thumbnails[plan.stats_step].copy()
            # the grid's ops end at its last statistics op: what that op does to the grid is not needed
            _Chain(grid_image, grid.masks, None, False).run(grid.ops, tables, leave_table=True)
        table = _Chain(image, plan.masks, plan.linear, plan.whole_frame).run(plan.ops, tables, leave_tables)
        made.append(Rendered(image, table))
    return made


def _slanted_region(plan: WarpPlan, height: int, width: int):
    """For a warp whose output rows cross the source's rows (a rotation or ShearY, ``warp[1, 0] != 0``): the
    source box it reads (with the interpolation's reach), the map shifted into it, and a buffer for it; else None.

    Such a warp reads slanted lines of a frame that is not in the cache, which the memory's prefetching cannot
    follow: copying the box sequentially first and warping from the copy measured 27-30% less per frame. The box
    holds every pixel the warp reads, and its edges are the frame's where it is cut, so the output is the same up
    to the rounding of the shifted map's coordinates (1 level at about 1% of the pixels).
    """
    matrix = plan.warp
    out_h, out_w = plan.size
    if abs(matrix[1, 0]) * out_w < 2.0:  # rows stay within about two source rows: the reads are sequential
        return None
    corners = matrix @ np.array([[0.0, out_w - 1.0, 0.0, out_w - 1.0], [0.0, 0.0, out_h - 1.0, out_h - 1.0],
                                 [1.0, 1.0, 1.0, 1.0]])  # fmt: skip
    reach = 3  # bicubic reads 2 pixels past the floor
    left = int(min(max(np.floor(corners[0].min()) - reach, 0), width - 1))
    right = int(max(min(np.ceil(corners[0].max()) + reach + 1, width), left + 1))
    top = int(min(max(np.floor(corners[1].min()) - reach, 0), height - 1))
    bottom = int(max(min(np.ceil(corners[1].max()) + reach + 1, height), top + 1))
    if (bottom - top) * (right - left) >= height * width:
        return None
    shifted = matrix.copy()
    shifted[:, 2] -= (left, top)
    return (top, bottom, left, right), shifted, np.empty((bottom - top, right - left, 3), dtype=np.uint8)


def warp_frames(frames: np.ndarray, matrix: np.ndarray, out_h: int, out_w: int, interpolation: str) -> np.ndarray:
    """Each uint8 frame ``H x W x 3`` of ``frames`` read through the affine ``matrix`` (output pixel -> source pixel,
    pixel centres at integers) into ``T x out_h x out_w x 3``: one ``cv2.warpAffine`` per frame (coordinates in
    1/32 pixel). Source coordinates outside the frame read the nearest edge pixel (as ``F.interpolate`` clamps)."""
    out = np.empty((frames.shape[0], out_h, out_w, 3), dtype=np.uint8)
    matrix = _matrix3(matrix)[:2]
    for t in range(frames.shape[0]):
        cv2.warpAffine(np.ascontiguousarray(frames[t]), matrix, (out_w, out_h), dst=out[t],
                       flags=CV_INTERPOLATION[interpolation] | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return out


_LEVELS = np.arange(256, dtype=np.float64)


def _table(values: np.ndarray) -> np.ndarray:
    """Float levels (``... x 256 x 3`` or ``256``) -> uint8 table ``(1 | T) x 256 x 3``, clamped, truncated as PIL's
    blend does."""
    values = np.clip(np.floor(values), 0, 255).astype(np.uint8)
    if values.ndim == 1:
        values = values[:, None]
    return np.ascontiguousarray(np.broadcast_to(values, (*values.shape[:-2], 256, 3)).reshape(-1, 256, 3))


def _point_table(op: AugmentOp) -> np.ndarray:
    """The lookup table of a colour op that needs no statistics."""
    name, arg = op.name, op.arg
    if name == "Invert":
        return _table(255.0 - _LEVELS)
    if name in ("Posterize", "PosterizeIncreasing"):
        bits = int(arg)
        if bits >= 8:
            return _table(_LEVELS)
        return _table(np.arange(256) & ((0xFF << (8 - bits)) & 0xFF))
    if name in ("Solarize", "SolarizeIncreasing"):
        return _table(np.where(_LEVELS < arg, _LEVELS, 255.0 - _LEVELS))
    if name == "SolarizeAdd":
        return _table(np.where(_LEVELS < 128, np.minimum(_LEVELS + arg, 255.0), _LEVELS))
    if name in ("Brightness", "BrightnessIncreasing"):
        return _table(_LEVELS * arg)
    raise TransformError(f"unknown RandAugment op {name!r}")


def _gray(image: np.ndarray) -> np.ndarray:
    """PIL's RGB -> L (0.299, 0.587, 0.114, rounded) of ``T x h x w x 3`` -> ``T x h x w``."""
    num_frames, height, width, _ = image.shape
    grey = cv2.cvtColor(image.reshape(num_frames * height, width, 3), cv2.COLOR_RGB2GRAY)
    return grey.reshape(num_frames, height, width)


def _equalize_tables(hist: np.ndarray) -> np.ndarray:
    """PIL's equalize table per histogram row ``... x 256``: ``lut[i] = (step // 2 + sum(h[:i])) // step`` with
    ``step = (total - count of the last non-empty bin) // 255``; identity when step is 0."""
    hist = hist.astype(np.int64)
    last = 255 - np.argmax(hist[..., ::-1] > 0, axis=-1)
    step = (hist.sum(-1) - np.take_along_axis(hist, last[..., None], -1)[..., 0]) // 255
    safe = np.maximum(step, 1)[..., None]
    lut = (safe // 2 + np.cumsum(hist, -1) - hist) // safe
    return np.where((step > 0)[..., None], np.minimum(lut, 255), np.arange(256))


def _stats_table(op: AugmentOp, image: np.ndarray) -> np.ndarray:
    """The per-frame table ``T x 256 x 3`` of a statistics op, from the frames ``image`` it acts on (PIL's rules:
    AutoContrast and Equalize per channel, Contrast blends with the rounded mean of the grey frame)."""
    num_frames = image.shape[0]
    if op.name == "AutoContrast":
        lo, hi = np.empty((num_frames, 3)), np.empty((num_frames, 3))
        for t in range(num_frames):  # per plane: 40x faster than numpy's min over the middle axis
            for c, plane in enumerate(cv2.split(image[t])):
                lo[t, c], hi[t, c] = cv2.minMaxLoc(plane)[:2]
        scale = 255.0 / np.maximum(hi - lo, 1.0)
        stretched = _LEVELS[None, :, None] * scale[:, None, :] - (lo * scale)[:, None, :]
        return _table(np.where((hi > lo)[:, None, :], stretched, _LEVELS[None, :, None]))
    if op.name == "Equalize":
        hist = np.empty((num_frames, 3, 256), dtype=np.int64)
        for t in range(num_frames):
            for c in range(3):
                hist[t, c] = cv2.calcHist([image[t]], [c], None, [256], [0, 256]).reshape(256)
        return _table(_equalize_tables(hist).transpose(0, 2, 1).astype(np.float64))
    mean = np.floor(_gray(image).reshape(num_frames, -1).mean(1, dtype=np.float64) + 0.5)  # Contrast
    return _table((mean[:, None] + op.arg * (_LEVELS[None, :] - mean[:, None]))[..., None])


def _sharpen_kernel(linear: np.ndarray) -> np.ndarray:
    """PIL's 3x3 SMOOTH kernel (1 around, 5 at the centre, / 13) on the frame Sharpness acts on, as a kernel on the
    output grid: each neighbour, one pixel of that frame away, sits ``linear^-1 d`` output pixels away and is
    spread bilinearly over the output pixels around it (exactly SMOOTH when output and frame pixels coincide)."""
    inverse = np.linalg.inv(linear)
    offsets = [inverse @ np.array([dx, dy], dtype=np.float64) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dx or dy]
    radius = int(min(4, max(1, math.ceil(max(np.abs(o).max() for o in offsets) - 1e-9))))
    kernel = np.zeros((2 * radius + 1, 2 * radius + 1), dtype=np.float32)
    kernel[radius, radius] = 5.0
    for ex, ey in offsets:
        ex, ey = float(np.clip(ex, -radius, radius)), float(np.clip(ey, -radius, radius))
        x0, y0 = min(math.floor(ex), radius - 1), min(math.floor(ey), radius - 1)
        fx, fy = ex - x0, ey - y0
        for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
            for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                kernel[radius + yy, radius + xx] += wy * wx
    return kernel / 13.0


def _smooth_taps(offset: float) -> np.ndarray:
    """One axis of :func:`_sharpen_kernel` when the map is axis-aligned: the taps at d = -1, 0, 1 frame pixels
    (``d * offset`` output pixels away) spread linearly onto the output pixels and summed."""
    reach = min(4.0, abs(float(offset)))
    radius = int(max(1, math.ceil(reach - 1e-9)))
    taps = np.zeros(2 * radius + 1, dtype=np.float32)
    taps[radius] = 1.0  # d = 0
    low = min(math.floor(reach), radius - 1)
    frac = reach - low
    for side in (1, -1):  # d = +1 and its mirror d = -1
        taps[radius + side * low] += 1.0 - frac
        taps[radius + side * (low + 1)] += frac
    return taps


class _Chain:
    """Runs the colour ops (and the fills of the geometric ops) in order on warped uint8 frames, in place.

    Consecutive lookup-table ops are composed and applied as one ``cv2.LUT``; a fill set by a geometric op between
    them carries its own value through the later tables. Colour and Sharpness (not per channel) apply directly.
    """

    def __init__(self, image: np.ndarray, masks: dict, linear: Optional[dict], whole_frame: bool):
        self.image = image
        self.masks, self.linear, self.whole_frame = masks, linear, whole_frame
        self.lut: Optional[np.ndarray] = None  # pending composed table, (1 | T) x 256 x 3
        self.fills: list[list] = []  # [mask, value (1 | T) x 3] set since the last flush

    def run(self, ops: Sequence[AugmentOp], tables: dict, leave_table: bool = False) -> Optional[np.ndarray]:
        """Apply ``ops``; statistics op k uses ``tables[k]``, computed here (and stored) when missing.

        ``leave_table``: return the last composed table instead of applying it (the caller folds it into its own
        pass over the pixels), unless a fill waits for it; None when everything was applied."""
        for k, op in enumerate(ops):
            if op.geometric:
                if k in self.masks:
                    self.fills.append([self.masks[k], np.full((1, 3), int(FILL_VALUE), dtype=np.uint8)])
            elif op.name in _SHARPNESS_OPS:
                if self.linear is not None:  # statistics grid: the unsharpened statistics are close enough
                    self.flush()
                    self._sharpen(self.linear[k], op.arg)
            elif op.name in ("Color", "ColorIncreasing"):
                self.flush()
                self._colour(op.arg)
            else:
                if op.name in _STATS_OPS:
                    if k not in tables:
                        self.flush()
                        tables[k] = _stats_table(op, self.image)
                    table = tables[k]
                else:
                    table = _point_table(op)
                self._push(table)
        if leave_table and self.lut is not None and not self.fills:
            table, self.lut = self.lut, None
            return table
        self.flush()
        return None

    def _push(self, table: np.ndarray) -> None:
        self.lut = table if self.lut is None else _compose(self.lut, table)
        for fill in self.fills:
            fill[1] = _compose(fill[1][:, None, :], table)[:, 0, :]

    def flush(self) -> None:
        if self.lut is not None:
            _apply_lut(self.image, self.lut)
            self.lut = None
        for mask, value in self.fills:
            _fill(self.image, mask, value)
        self.fills = []

    def _colour(self, factor: float) -> None:
        # PIL's Color: blend with the grey (L) frame; one rounding (PIL truncates: within 1)
        num_frames, height, width, _ = self.image.shape
        flat = self.image.reshape(num_frames * height, width, 3)
        grey = cv2.cvtColor(cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        cv2.addWeighted(flat, factor, grey, 1.0 - factor, 0.0, dst=flat)

    def _sharpen(self, linear: np.ndarray, factor: float) -> None:
        # PIL: blend(smooth, frame, factor). Axis-aligned (no rotation or shear after the op): the kernel is
        # (outer(ky, kx) + 4 centre) / 13, so frame * (factor + 4 (1 - factor) / 13) + sep * (1 - factor) / 13, with
        # the separable sum in float: 40% less than the 2-D filter and one rounding.
        separable = abs(linear[0, 1]) < 1e-12 and abs(linear[1, 0]) < 1e-12
        if separable:
            taps_x, taps_y = _smooth_taps(1.0 / linear[0, 0]), _smooth_taps(1.0 / linear[1, 1])
            keep, mix = factor + 4.0 * (1.0 - factor) / 13.0, (1.0 - factor) / 13.0
        else:
            kernel = _sharpen_kernel(linear)
        for frame in self.image:
            edges = (frame[[0, -1]].copy(), frame[:, [0, -1]].copy()) if self.whole_frame else None
            if separable:
                summed = cv2.sepFilter2D(frame, cv2.CV_32F, taps_x, taps_y, borderType=cv2.BORDER_REPLICATE)
                cv2.addWeighted(frame, keep, summed, mix, 0.0, dst=frame, dtype=cv2.CV_8U)
            else:
                smooth = cv2.filter2D(frame, cv2.CV_32F, kernel, borderType=cv2.BORDER_REPLICATE)
                cv2.addWeighted(frame, factor, smooth, 1.0 - factor, 0.0, dst=frame, dtype=cv2.CV_8U)
            if edges is not None:  # PIL's filter leaves the frame's border pixels as they are
                frame[[0, -1]], frame[:, [0, -1]] = edges


def _fill(image: np.ndarray, mask: np.ndarray, value: np.ndarray) -> None:
    """``image[t][mask] = value[t]`` (or ``value[0]`` for every frame) with ``cv2.copyTo``: 50x faster than numpy's
    boolean assignment."""
    height, width = mask.shape
    for t, frame in enumerate(image):
        if t < value.shape[0]:  # a row of the value, repeated: 10x faster than numpy's broadcast assignment
            row = np.tile(value[t], width)
            patch = np.ascontiguousarray(np.broadcast_to(row, (height, width * 3))).reshape(height, width, 3)
        cv2.copyTo(patch, mask, frame)


def _compose(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """Table ``then o first`` (each ``(1 | T) x L x 3``, values indexing ``then``'s 256 levels)."""
    frames = max(first.shape[0], then.shape[0])
    first = np.broadcast_to(first, (frames, *first.shape[1:]))
    then = np.broadcast_to(then, (frames, 256, 3))
    return np.take_along_axis(then, first.astype(np.intp), axis=1)


def _apply_lut(image: np.ndarray, lut: np.ndarray) -> None:
    """``cv2.LUT`` in place: one call for a table shared by all frames (single-channel when the channels agree)."""
    num_frames, height, width, _ = image.shape
    if lut.shape[0] == 1:
        flat = image.reshape(num_frames * height, width, 3)
        shared = lut[0, :, 0] if (lut[0] == lut[0, :, :1]).all() else lut[0].reshape(256, 1, 3)
        cv2.LUT(flat, np.ascontiguousarray(shared), dst=flat)
        return
    for t in range(num_frames):
        cv2.LUT(image[t], np.ascontiguousarray(lut[t]).reshape(256, 1, 3), dst=image[t])


def augment_warp(
    frames: torch.Tensor,
    ops: Sequence[AugmentOp],
    matrix,
    size: Sequence[int],
    interpolation: str = "bilinear",
    geometric_interpolation: str = "bicubic",
    stats_size: int = 160,
) -> np.ndarray:
    """The frames after ``ops``, read through ``matrix`` into ``size = (h, w)``: uint8 ``T x h x w x 3`` (numpy).

    ``matrix`` (2 x 3 or 3 x 3) maps an output pixel to a pixel of the augmented frame (pixel centres at integers),
    e.g. a resize + crop + flip. All geometric ops compose with it into one ``cv2.warpAffine`` per frame, read with
    ``geometric_interpolation`` (the seed's AUG.INTERPOLATION) when one fired and ``matrix`` does not resize, else
    with ``interpolation`` (the resize's: the closer one to the seed's op-then-resize chain, see the code). Pixels
    that leave the frame at a geometric op take gray 128 there, and the later colour ops act on it. Colour ops run
    on the warped pixels as lookup tables. Statistics ops take each frame's statistics from the augmented frame
    evaluated on a grid of short side about ``stats_size`` (nearest). Several copies of one clip:
    :func:`plan_warp` each, then one :func:`render`.
    """
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise TransformError(f"RandAugment needs uint8 frames T x H x W x 3, got {frames.dtype} {tuple(frames.shape)}")
    plan = plan_warp(ops, matrix, frames.shape[1:3], size, interpolation, geometric_interpolation, stats_size)
    return render(frames.numpy(), [plan])[0].image


def rand_augment(
    frames: torch.Tensor,
    policy: RandAugmentPolicy | str,
    generator: Optional[torch.Generator] = None,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """RandAugment on whole uint8 frames ``T x H x W x 3`` -> uint8 ``T x H x W x 3`` (same ops on every frame).

    Materialises every pixel; the train pipeline instead warps straight into its crop.
    """
    if isinstance(policy, str):
        policy = parse_randaugment(policy)
    ops = sample_augment_ops(policy, generator)
    if not ops:
        return frames
    height, width = frames.shape[1], frames.shape[2]
    image = augment_warp(frames, ops, np.eye(3), (height, width), geometric_interpolation=interpolation,
                         stats_size=min(height, width))  # fmt: skip
    return torch.from_numpy(image)


class RandAugment:
    """``RandAugment("rand-m7-n4-mstd0.5-inc1")(frames, generator)``: :func:`rand_augment` as a callable."""

    def __init__(self, policy: RandAugmentPolicy | str, interpolation: str = "bicubic"):
        self.policy = parse_randaugment(policy) if isinstance(policy, str) else policy
        if interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"RandAugment interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
        self.interpolation = interpolation

    def __call__(self, frames: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return rand_augment(frames, self.policy, generator, self.interpolation)

    def __repr__(self) -> str:
        return f"RandAugment({self.policy})"
