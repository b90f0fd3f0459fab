"""RandAugment for video clips (timm's ``rand-m7-n4-mstd0.5-inc1`` policy as used by the seed), on torch tensors.

Seed semantics reproduced: per clip, ``n`` ops drawn uniformly WITH replacement from the 15 ops of the policy;
each fires with probability 0.5; its magnitude ~ N(m, mstd) clipped to [0, mmax=10]; the sign of signed ops is
random; the SAME ops, magnitudes and signs apply to every frame of the clip; geometric ops fill with gray 128; the
ops run on the full-resolution uint8 frames, before resizing, cropping and normalisation. Statistics-based ops
(AutoContrast, Equalize, Contrast) use each frame's own statistics, as PIL does per image.

How it is evaluated (why it is fast)
------------------------------------
An augmented frame is never materialised. :func:`evaluate_augmented` computes the value of the augmented frame
at any set of (fractional) pixel coordinates: geometric ops map coordinates back through their affine maps
(pixels that leave the frame take the fill value at that step), colour ops are applied to the sampled values, and
the source frames are read once with an interpolating gather on the uint8 tensor. The train pipeline asks only for
the pixels of its crop (e.g. 256x192 per frame instead of 1280x720), so resize, crop and RandAugment cost one
sampling pass at output resolution. Statistics are taken on a coarse grid over the whole augmented frame.
Differences from the seed's PIL-per-op chain, all small: one interpolation instead of one per geometric op plus
the resize; colour ops see interpolated values (no uint8 rounding between ops); statistics come from a subsampled
frame. :func:`rand_augment` evaluates the whole frame (integer grid) when a materialised uint8 result is wanted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from pmv.data.transforms.functional import TransformError, randint, uniform
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
    "sample_frames",
    "evaluate_augmented",
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
_SAMPLING_MODES = ("nearest", "bilinear", "bicubic")


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


def _keys_weights(t: torch.Tensor, a: float = -0.5) -> list[torch.Tensor]:
    """Cubic convolution weights of taps at offsets -1, 0, 1, 2 (PIL's bicubic uses a = -0.5)."""

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def sample_frames(frames: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Interpolate uint8 frames ``T x H x W x 3`` at pixel coordinates ``(ys, xs)`` (broadcastable, shared by all
    frames) -> float ``T x *shape x 3`` (a strided view). Coordinates are clamped to the frame (border), as
    ``F.interpolate`` does, so sampling a resize grid gives the same numbers as resizing.

    Only the window the coordinates touch is read: it is copied once pixel-major (``pixels x T*3``), so each
    interpolation tap is one contiguous row gather for all frames and channels at once.
    """
    if mode not in _SAMPLING_MODES:
        raise TransformError(f"interpolation must be one of {_SAMPLING_MODES}, got {mode!r}")
    num_frames, height, width, channels = frames.shape
    ys, xs = torch.broadcast_tensors(ys, xs)
    shape = ys.shape
    ys = ys.reshape(-1).clamp(0, height - 1)
    xs = xs.reshape(-1).clamp(0, width - 1)
    if mode == "nearest":
        ys, xs = ys.round(), xs.round()
    reach = {"nearest": (0,), "bilinear": (0, 1), "bicubic": (-1, 0, 1, 2)}[mode]
    top = max(int(ys.min().floor()) + reach[0], 0)
    bottom = min(int(ys.max().floor()) + reach[-1], height - 1) + 1
    left = max(int(xs.min().floor()) + reach[0], 0)
    right = min(int(xs.max().floor()) + reach[-1], width - 1) + 1
    win_h, win_w = bottom - top, right - left
    # stack() of the per-frame windows writes the pixel-major layout about twice as fast as permute().contiguous()
    window = frames[:, top:bottom, left:right]
    pixels = torch.stack(window.unbind(0), dim=2).view(win_h * win_w, num_frames * channels)
    ys = ys - top
    xs = xs - left
    y0, x0 = ys.floor(), xs.floor()
    ty, tx = ys - y0, xs - x0
    y0, x0 = y0.long(), x0.long()
    if mode == "nearest":
        wys, wxs = [torch.ones_like(ty)], [torch.ones_like(tx)]
    elif mode == "bilinear":
        wys, wxs = [1 - ty, ty], [1 - tx, tx]
    else:
        wys, wxs = _keys_weights(ty), _keys_weights(tx)
    rows = [(y0 + o).clamp_(0, win_h - 1) * win_w for o in reach]
    cols = [(x0 + o).clamp_(0, win_w - 1) for o in reach]
    out = torch.zeros(ys.numel(), num_frames * channels, dtype=torch.float32) if mode != "nearest" else None
    for row, wy in zip(rows, wys):
        for col, wx in zip(cols, wxs):
            taps = pixels.index_select(0, row + col).float()
            if mode == "nearest":
                out = taps
            else:
                out.addcmul_(taps, (wy * wx).unsqueeze(1))
    if mode == "bicubic":
        out.clamp_(0.0, 255.0)
    return out.view(-1, num_frames, channels).permute(1, 0, 2).unflatten(1, shape)


# --------------------------------------------------------------------------------------------------- colour ops
_LUMA = (0.299, 0.587, 0.114)  # PIL's RGB -> L weights


def _luma(values: torch.Tensor) -> torch.Tensor:
    return values[..., 0] * _LUMA[0] + values[..., 1] * _LUMA[1] + values[..., 2] * _LUMA[2]


def _blend(degenerate: torch.Tensor, values: torch.Tensor, factor: float) -> torch.Tensor:
    return (degenerate + factor * (values - degenerate)).clamp_(0.0, 255.0)


def _per_frame_channel(values: torch.Tensor) -> torch.Tensor:
    """``T x ... x 3`` -> ``T x 3 x N``."""
    return values.reshape(values.shape[0], -1, values.shape[-1]).transpose(1, 2)


def _frame_stats(name: str, stats_values: torch.Tensor) -> torch.Tensor:
    """What a statistics op needs from the whole frame, per frame (and channel)."""
    if name == "AutoContrast":
        per = _per_frame_channel(stats_values)
        return torch.stack([per.amin(-1), per.amax(-1)], dim=-1)  # T x 3 x 2
    if name == "Equalize":
        per = _per_frame_channel(stats_values).round().clamp(0, 255).long()
        num_frames, channels, _ = per.shape
        bins = per + 256 * torch.arange(num_frames * channels).view(num_frames, channels, 1)
        hist = torch.bincount(bins.reshape(-1), minlength=num_frames * channels * 256)
        hist = hist.view(num_frames, channels, 256)
        return _equalize_lut(hist)  # T x 3 x 256
    # Contrast: mean of the grey image, rounded as PIL does.
    mean = _luma(stats_values).reshape(stats_values.shape[0], -1).mean(-1)
    return torch.floor(mean + 0.5)  # T


def _equalize_lut(hist: torch.Tensor) -> torch.Tensor:
    """PIL's equalize table per histogram row: ``lut[i] = (step // 2 + sum(h[:i])) // step`` with
    ``step = (total - count of the last non-empty bin) // 255``; identity when step is 0."""
    total = hist.sum(-1)
    idx = torch.arange(256)
    last_nonzero = torch.where(hist > 0, idx, torch.full_like(idx, -1)).amax(-1).clamp(min=0)
    last_count = hist.gather(-1, last_nonzero.unsqueeze(-1)).squeeze(-1)
    step = (total - last_count) // 255
    exclusive = hist.cumsum(-1) - hist
    safe_step = step.clamp(min=1).unsqueeze(-1)
    lut = ((safe_step // 2 + exclusive) // safe_step).clamp(max=255)
    identity = idx.expand_as(lut)
    return torch.where((step > 0).unsqueeze(-1), lut, identity).float()


def _apply_colour(op: AugmentOp, values: torch.Tensor, stats: Optional[torch.Tensor]) -> torch.Tensor:
    """A colour op on float values ``T x ... x 3`` in [0, 255]."""
    name, arg = op.name, op.arg
    if name == "Invert":
        return 255.0 - values
    if name in ("Posterize", "PosterizeIncreasing"):
        bits = int(arg)
        if bits >= 8:
            return values
        mask = (0xFF << (8 - bits)) & 0xFF
        return (values.round().clamp(0, 255).to(torch.uint8) & mask).float()
    if name in ("Solarize", "SolarizeIncreasing"):
        return torch.where(values < arg, values, 255.0 - values)
    if name == "SolarizeAdd":
        return torch.where(values < 128.0, (values + arg).clamp(max=255.0), values)
    if name in ("Brightness", "BrightnessIncreasing"):
        return (values * arg).clamp_(0.0, 255.0)
    if name in ("Color", "ColorIncreasing"):
        return _blend(_luma(values).unsqueeze(-1), values, arg)
    if name in ("Contrast", "ContrastIncreasing"):
        mean = stats.view(-1, *([1] * (values.dim() - 1)))
        return _blend(mean, values, arg)
    if name == "AutoContrast":
        lo = stats[..., 0].view(values.shape[0], *([1] * (values.dim() - 2)), values.shape[-1])
        hi = stats[..., 1].view_as(lo)
        spread = hi - lo
        scale = 255.0 / spread.clamp(min=1e-6)
        stretched = torch.floor((values - lo) * scale).clamp_(0.0, 255.0)
        return torch.where(spread > 0, stretched, values)
    if name == "Equalize":
        index = _per_frame_channel(values).round().clamp(0, 255).long()
        mapped = stats.gather(-1, index)  # T x 3 x N
        return mapped.transpose(1, 2).reshape(values.shape)
    raise TransformError(f"unknown RandAugment op {name!r}")


# --------------------------------------------------------------------------------------------------- evaluation
_SHARPEN_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # PIL SMOOTH: 1 around, 5 centre


class _Evaluator:
    """Evaluates the frames after ops[:k] at arbitrary coordinates (see the module docstring)."""

    def __init__(self, frames: torch.Tensor, ops: Sequence[AugmentOp], interpolation: str, stats_size: int):
        self.frames = frames
        self.ops = list(ops)
        self.height, self.width = frames.shape[1], frames.shape[2]
        self.interpolation = interpolation
        self.stats_cache: dict[int, torch.Tensor] = {}
        self.affines = [op_affine(op, self.height, self.width) if op.geometric else None for op in self.ops]
        # Statistics read a decimated copy of the source (every step-th pixel): cheap, and enough for a histogram.
        self.stats_step = max(1, min(self.height, self.width) // max(1, stats_size))
        self.stats_frames = frames[:, :: self.stats_step, :: self.stats_step]
        self.stats_ys = torch.arange(0, self.height, self.stats_step, dtype=torch.float32)
        self.stats_xs = torch.arange(0, self.width, self.stats_step, dtype=torch.float32)

    def _inside(self, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        return (ys >= -0.5) & (ys <= self.height - 0.5) & (xs >= -0.5) & (xs <= self.width - 0.5)

    def evaluate(
        self, k: int, ys: torch.Tensor, xs: torch.Tensor, for_stats: bool = False, nearest: bool = False
    ) -> torch.Tensor:
        """Values after ops[:k] at (ys, xs); ``for_stats``: from the decimated source; ``nearest``: one tap."""
        if k == 0:
            if for_stats:
                step = self.stats_step
                return sample_frames(self.stats_frames, ys / step, xs / step, "nearest")
            return sample_frames(self.frames, ys, xs, "nearest" if nearest else self.interpolation)
        op = self.ops[k - 1]
        if op.geometric:
            a, b, c, d, e, f = self.affines[k - 1]
            ys, xs = torch.broadcast_tensors(ys, xs)
            src_x = a * xs + b * ys + c
            src_y = d * xs + e * ys + f
            values = self.evaluate(k - 1, src_y, src_x, for_stats, nearest)
            return values.masked_fill_(~self._inside(src_y, src_x).unsqueeze(0).unsqueeze(-1), FILL_VALUE)
        if op.name in _SHARPNESS_OPS:
            return self._sharpen(k, ys, xs, op.arg, for_stats, nearest)
        stats = self._stats(k) if op.name in _STATS_OPS else None
        return _apply_colour(op, self.evaluate(k - 1, ys, xs, for_stats, nearest), stats)

    def _stats(self, k: int) -> torch.Tensor:
        # The statistics of the frame after ops[:k-1], from a coarse grid over the whole frame.
        if k not in self.stats_cache:
            whole = self.evaluate(k - 1, self.stats_ys.view(-1, 1), self.stats_xs.view(1, -1), for_stats=True)
            self.stats_cache[k] = _frame_stats(self.ops[k - 1].name, whole)
        return self.stats_cache[k]

    def _sharpen(
        self, k: int, ys: torch.Tensor, xs: torch.Tensor, factor: float, for_stats: bool, nearest: bool
    ) -> torch.Tensor:
        # PIL's Sharpness blends with a 3x3 SMOOTH-filtered copy (border pixels unfiltered). The neighbours are
        # one full-resolution pixel apart, so the effect does not depend on the output resolution; they are read
        # with one tap each (nearest) since they only feed the blur.
        centre = self.evaluate(k - 1, ys, xs, for_stats, nearest)
        if for_stats:  # statistics of a sharpened frame: the unsharpened ones are close enough
            return centre
        ys, xs = torch.broadcast_tensors(ys, xs)
        ring_y = torch.stack([ys + dy for dy, dx in _SHARPEN_OFFSETS if (dy, dx) != (0, 0)])
        ring_x = torch.stack([xs + dx for dy, dx in _SHARPEN_OFFSETS if (dy, dx) != (0, 0)])
        ring = self.evaluate(k - 1, ring_y, ring_x, nearest=True)  # T x 8 x ... x 3
        smooth = centre * 5.0
        for i in range(ring.shape[1]):  # a loop of adds keeps the sampler's memory order (a sum(1) is slow here)
            smooth += ring[:, i]
        smooth /= 13.0
        interior = (ys >= 1) & (ys <= self.height - 2) & (xs >= 1) & (xs <= self.width - 2)
        smooth = torch.where(interior.unsqueeze(0).unsqueeze(-1), smooth, centre)
        return _blend(smooth, centre, factor)


def evaluate_augmented(
    frames: torch.Tensor,
    ops: Sequence[AugmentOp],
    ys: torch.Tensor,
    xs: torch.Tensor,
    interpolation: str = "bilinear",
    geometric_interpolation: str = "bicubic",
    stats_size: int = 160,
) -> torch.Tensor:
    """The frames after ``ops``, sampled at pixel coordinates ``(ys, xs)`` of the augmented frame.

    ``frames``: uint8 ``T x H x W x 3``. Returns float ``T x *shape x 3`` on the 0..255 scale. The source is read
    with ``geometric_interpolation`` when a geometric op fired (the seed's AUG.INTERPOLATION), else with
    ``interpolation`` (the resize's). ``stats_size``: short side of the grid statistics ops read.
    """
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise TransformError(f"RandAugment needs uint8 frames T x H x W x 3, got {frames.dtype} {tuple(frames.shape)}")
    mode = geometric_interpolation if any(op.geometric for op in ops) else interpolation
    evaluator = _Evaluator(frames, ops, mode, stats_size)
    return evaluator.evaluate(len(evaluator.ops), ys.float(), xs.float())


def rand_augment(
    frames: torch.Tensor,
    policy: RandAugmentPolicy | str,
    generator: Optional[torch.Generator] = None,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """RandAugment on whole uint8 frames ``T x H x W x 3`` -> uint8 ``T x H x W x 3`` (same ops on every frame).

    Materialises every pixel; the train pipeline instead evaluates only the pixels its crop needs.
    """
    if isinstance(policy, str):
        policy = parse_randaugment(policy)
    ops = sample_augment_ops(policy, generator)
    if not ops:
        return frames
    height, width = frames.shape[1], frames.shape[2]
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, -1)
    values = evaluate_augmented(
        frames, ops, ys, xs, geometric_interpolation=interpolation, stats_size=min(height, width)
    )
    return values.round_().clamp_(0, 255).to(torch.uint8)


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
