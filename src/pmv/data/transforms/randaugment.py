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
import threading
import weakref
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


_REACH = {"nearest": (0,), "bilinear": (0, 1), "bicubic": (-1, 0, 1, 2)}
_thread_state = threading.local()  # scratch buffers and the last decimated frames, per thread
_WINDOW_MARGIN = 3
_CHUNK = 2048  # output pixels per block of taps: ~0.4 MB of float taps, best of 512..8192 measured here
_SCRATCH_MAX_BYTES = 32 << 20  # a crop's window (~15 MB for 16 frames); whole frames (rand_augment) are not kept


def _scratch(name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """This thread's reusable 1-D buffer ``name`` of at least ``numel`` elements. A fresh 15 MB window per clip
    costs page faults on every call (the allocator hands large blocks back to the OS), nearly as much as filling it.
    """
    buffers = getattr(_thread_state, "buffers", None)
    if buffers is None:
        buffers = _thread_state.buffers = {}
    buffer = buffers.get(name)
    if buffer is None or buffer.numel() < numel or buffer.dtype != dtype:
        buffer = buffers[name] = torch.empty(numel, dtype=dtype)
    return buffer[:numel]


class _FrameSampler:
    """Interpolating reads of one uint8 frames tensor ``T x H x W x 3``, returned PIXEL-MAJOR: ``*shape x T x 3``.

    The window the coordinates touch is copied once pixel-major (``pixels x T*3``), so each interpolation tap is
    one gather of contiguous 48-byte rows for all frames and channels at once. (Gathering 3-byte pixels from the
    frames as stored costs about 4x more per tap, more than the copy saves even for bilinear.) The window is kept,
    with a few pixels of margin, and reused by later reads that fall inside it, such as a Sharpness op's ring.

    Pixel-major values keep every later step fast: a per-(frame, channel) parameter (statistics, mean, std)
    broadcasts over 48 contiguous numbers instead of an inner loop of 3.
    """

    def __init__(self, frames: torch.Tensor, reuse_buffer: bool = False):
        self.frames: Optional[torch.Tensor] = frames
        self.reuse_buffer = reuse_buffer  # window in this thread's scratch buffer: valid until the next such sampler
        self.shape = tuple(frames.shape)
        self.stats: dict[str, torch.Tensor] = {}  # statistics ops' results on these frames (see _Evaluator._stats)
        self._window: Optional[tuple[int, int, int, int, torch.Tensor]] = None  # top, bottom, left, right, pixels

    @classmethod
    def whole(cls, frames: torch.Tensor) -> "_FrameSampler":
        """A sampler with the whole frames copied pixel-major up front; it keeps no reference to ``frames``."""
        sampler = cls(frames)
        sampler.window(0, frames.shape[1], 0, frames.shape[2])
        sampler.frames = None
        return sampler

    def pixels(self) -> torch.Tensor:
        """The whole frames pixel-major, ``H x W x T x 3`` uint8 (a sampler made by :meth:`whole`)."""
        top, bottom, left, right, pixels = self._window
        if (top, left, bottom, right) != (0, 0, *self.shape[1:3]):
            raise TransformError("pixels() needs a sampler made by _FrameSampler.whole")
        return pixels.view(*pixels.shape[:2], self.shape[0], self.shape[3])

    def window(self, top: int, bottom: int, left: int, right: int) -> tuple[int, int, torch.Tensor]:
        """A pixel-major copy ``(h, w, T*3)`` of a window holding rows [top, bottom) and columns [left, right),
        with its own top-left corner: the cached one when it holds them."""
        cached = self._window
        if cached is not None and cached[0] <= top and bottom <= cached[1] and cached[2] <= left and right <= cached[3]:
            return cached[0], cached[2], cached[4]
        num_frames, height, width, channels = self.shape
        # Margin: a Sharpness ring reads one output pixel further out, which after rotations and shears can be
        # up to about 2 source pixels; rebuilding the window for each of its 8 neighbours would cost 8 copies.
        margin = _WINDOW_MARGIN
        top, left = max(top - margin, 0), max(left - margin, 0)
        bottom, right = min(bottom + margin, height), min(right + margin, width)
        window = self.frames[:, top:bottom, left:right]
        size = (bottom - top) * (right - left) * num_frames * channels
        reuse = self.reuse_buffer and size <= _SCRATCH_MAX_BYTES
        pixels = _scratch("window", size, torch.uint8) if reuse else torch.empty(size, dtype=torch.uint8)
        pixels = pixels.view(bottom - top, right - left, num_frames, channels)
        # stack() of the per-frame windows writes the pixel-major layout about twice as fast as permute().contiguous()
        torch.stack(window.unbind(0), dim=2, out=pixels)
        pixels = pixels.view(bottom - top, right - left, num_frames * channels)
        self._window = (top, bottom, left, right, pixels)
        return top, left, pixels

    def sample(self, ys: torch.Tensor, xs: torch.Tensor, mode: str) -> torch.Tensor:
        """Float values at ``(ys, xs)`` (broadcastable), ``*shape x T x 3`` contiguous."""
        if mode not in _SAMPLING_MODES:
            raise TransformError(f"interpolation must be one of {_SAMPLING_MODES}, got {mode!r}")
        num_frames, height, width, channels = self.shape
        ys, xs = torch.broadcast_tensors(ys, xs)
        shape = ys.shape
        ys = ys.reshape(-1).clamp(0, height - 1)
        xs = xs.reshape(-1).clamp(0, width - 1)
        if mode == "nearest":
            ys, xs = ys.round(), xs.round()
        reach = _REACH[mode]
        y0, x0 = ys.floor(), xs.floor()
        top = max(int(y0.min()) + reach[0], 0)
        bottom = min(int(y0.max()) + reach[-1], height - 1) + 1
        left = max(int(x0.min()) + reach[0], 0)
        right = min(int(x0.max()) + reach[-1], width - 1) + 1
        win_top, win_left, pixels = self.window(top, bottom, left, right)
        win_h, win_w = pixels.shape[0], pixels.shape[1]
        source = pixels.view(win_h * win_w, num_frames * channels)
        # Clamping to the (cached, larger) window equals clamping to the frame: a tap beyond the frame's edge
        # makes the needed window touch that edge, and so does any window holding it.
        rows = [(y0 + (o - win_top)).long().clamp_(0, win_h - 1) * win_w for o in reach]
        cols = [(x0 + (o - win_left)).long().clamp_(0, win_w - 1) for o in reach]
        if mode == "nearest":
            out = source.index_select(0, rows[0] + cols[0]).float()
            return out.view(*shape, num_frames, channels)
        ty, tx = ys - y0, xs - x0
        if mode == "bilinear":
            wys, wxs = [1 - ty, ty], [1 - tx, tx]
        else:
            wys, wxs = _keys_weights(ty), _keys_weights(tx)
        count = ys.numel()
        indices = [row + col for row in rows for col in cols]
        weights = [(wy * wx).unsqueeze(1) for wy in wys for wx in wxs]
        out = torch.empty((count, num_frames * channels), dtype=torch.float32)
        # All taps of a block of output pixels at a time: the block's source rows and buffers stay in cache.
        chunk = min(count, _CHUNK)
        raw = torch.empty((chunk, num_frames * channels), dtype=torch.uint8)
        taps = torch.empty((chunk, num_frames * channels), dtype=torch.float32)
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            n = stop - start
            block, raw_n, taps_n = out[start:stop], raw[:n], taps[:n]
            for i, (index, weight) in enumerate(zip(indices, weights)):
                torch.index_select(source, 0, index[start:stop], out=raw_n)
                taps_n.copy_(raw_n)
                if i == 0:
                    torch.mul(taps_n, weight[start:stop], out=block)  # = 0 + w * tap: the first accumulated tap
                else:
                    block.addcmul_(taps_n, weight[start:stop])
        if mode == "bicubic":
            out.clamp_(0.0, 255.0)
        return out.view(*shape, num_frames, channels)


def sample_frames(frames: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Interpolate uint8 frames ``T x H x W x 3`` at pixel coordinates ``(ys, xs)`` (broadcastable, shared by all
    frames) -> float ``T x *shape x 3`` (a strided view). Coordinates are clamped to the frame (border), as
    ``F.interpolate`` does, so sampling a resize grid gives the same numbers as resizing.

    Only the window the coordinates touch is read: it is copied once pixel-major (``pixels x T*3``), so each
    interpolation tap is one contiguous row gather for all frames and channels at once.
    """
    return _FrameSampler(frames).sample(ys, xs, mode).movedim(-2, 0)


# --------------------------------------------------------------------------------------------------- colour ops
# Values here are PIXEL-MAJOR: float ``... x T x 3`` on the 0..255 scale (see _FrameSampler).
_LUMA = (0.299, 0.587, 0.114)  # PIL's RGB -> L weights


def _luma(values: torch.Tensor) -> torch.Tensor:
    return values[..., 0] * _LUMA[0] + values[..., 1] * _LUMA[1] + values[..., 2] * _LUMA[2]


def _blend(degenerate: torch.Tensor, values: torch.Tensor, factor: float) -> torch.Tensor:
    """``degenerate + factor * (values - degenerate)``, clamped to [0, 255]. A degenerate that is constant across
    channels is expanded first: broadcasting it over an inner dim of 3 makes every op an inner loop of 3."""
    degenerate = degenerate.expand_as(values).contiguous()
    out = torch.sub(values, degenerate).mul_(factor)
    return out.add_(degenerate).clamp_(0.0, 255.0)


def _per_frame_channel(param: torch.Tensor, num_frames: int, channels: int) -> torch.Tensor:
    """A per-frame (``T``) or per-frame-channel (``T x 3``) parameter as a contiguous ``T x 3``: it broadcasts over
    the leading dims of pixel-major values with all 48 numbers of a pixel in one inner run."""
    if param.dim() == 1:
        param = param.unsqueeze(1)
    return param.expand(num_frames, channels).contiguous()


def _level_offsets(num_frames: int, channels: int) -> torch.Tensor:
    """``256 * (t * 3 + c)`` as float ``T x 3``: the row of each (frame, channel) in a flat table of 256 levels."""
    return 256.0 * torch.arange(num_frames * channels, dtype=torch.float32).view(num_frames, channels)


def _frame_stats(name: str, stats_values: torch.Tensor) -> torch.Tensor:
    """What a statistics op needs from the whole frame, per frame (and channel); values ``... x T x 3``."""
    num_frames, channels = stats_values.shape[-2], stats_values.shape[-1]
    per = stats_values.reshape(-1, num_frames, channels)
    if name == "AutoContrast":
        return torch.stack([per.amin(0), per.amax(0)], dim=-1)  # T x 3 x 2
    if name == "Equalize":
        # bins (t * 3 + c) * 256 + level; int16 holds them for up to 42 frames and bincount reads it ~4x faster
        index_type = torch.int16 if num_frames * channels * 256 <= torch.iinfo(torch.int16).max else torch.int64
        bins = (per.round().clamp_(0, 255) + _level_offsets(num_frames, channels)).to(index_type)
        hist = torch.bincount(bins.reshape(-1), minlength=num_frames * channels * 256)
        hist = hist.view(num_frames, channels, 256)
        return _equalize_lut(hist)  # T x 3 x 256
    # Contrast: mean of the grey image, rounded as PIL does (which sums a histogram exactly: float64 here).
    mean = _luma(per).double().mean(0)
    return torch.floor(mean + 0.5).float()  # T


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
    """A colour op on pixel-major float values ``... x T x 3`` in [0, 255]."""
    name, arg = op.name, op.arg
    num_frames, channels = values.shape[-2], values.shape[-1]
    if name == "Invert":
        return 255.0 - values
    if name in ("Posterize", "PosterizeIncreasing"):
        bits = int(arg)
        if bits >= 8:
            return values
        mask = (0xFF << (8 - bits)) & 0xFF
        return (values.round().clamp_(0, 255).to(torch.uint8) & mask).float()
    if name in ("Solarize", "SolarizeIncreasing"):
        return torch.where(values < arg, values, 255.0 - values)
    if name == "SolarizeAdd":
        return torch.where(values < 128.0, (values + arg).clamp(max=255.0), values)
    if name in ("Brightness", "BrightnessIncreasing"):
        return (values * arg).clamp_(0.0, 255.0)
    if name in ("Color", "ColorIncreasing"):
        return _blend(_luma(values).unsqueeze(-1), values, arg)
    if name in ("Contrast", "ContrastIncreasing"):
        return _blend(_per_frame_channel(stats, num_frames, channels), values, arg)
    if name == "AutoContrast":
        lo = _per_frame_channel(stats[..., 0], num_frames, channels)
        hi = _per_frame_channel(stats[..., 1], num_frames, channels)
        spread = hi - lo
        scale = 255.0 / spread.clamp(min=1e-6)
        stretched = torch.floor((values - lo) * scale).clamp_(0.0, 255.0)
        return torch.where(spread > 0, stretched, values)
    if name == "Equalize":
        # Table lookup: flat index (t * 3 + c) * 256 + level into the T x 3 x 256 tables (int32: half the bytes).
        index = (values.round().clamp_(0, 255) + _level_offsets(num_frames, channels)).to(torch.int32)
        return stats.reshape(-1).index_select(0, index.reshape(-1)).view(values.shape)
    raise TransformError(f"unknown RandAugment op {name!r}")


# --------------------------------------------------------------------------------------------------- evaluation
_SHARPEN_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]  # PIL SMOOTH: 1 around, 5 centre

def _decimated_sampler(frames: torch.Tensor, step: int) -> _FrameSampler:
    """A sampler over ``frames[:, ::step, ::step]`` with its whole pixel-major window built, kept (per thread) for
    the last frames seen: the num_sample copies of one decode, and every statistics op of a copy, share it."""
    key = (frames.data_ptr(), tuple(frames.shape), tuple(frames.stride()), frames._version, step)
    last = getattr(_thread_state, "decimated", None)  # (key, weak reference to the frames, sampler)
    if last is not None and last[0] == key and last[1]() is frames:
        return last[2]
    sampler = _FrameSampler.whole(frames[:, ::step, ::step])
    _thread_state.decimated = (key, weakref.ref(frames), sampler)
    return sampler


def _pixel_mask(mask: torch.Tensor) -> torch.Tensor:
    """A per-pixel mask ``*shape`` to broadcast over pixel-major values ``*shape x T x 3``."""
    return mask.unsqueeze(-1).unsqueeze(-1)


class _Evaluator:
    """Evaluates the frames after ops[:k] at arbitrary coordinates (see the module docstring); values come out
    pixel-major, ``*shape x T x 3``."""

    def __init__(self, frames: torch.Tensor, ops: Sequence[AugmentOp], interpolation: str, stats_size: int):
        self.frames = frames
        self.ops = list(ops)
        self.height, self.width = frames.shape[1], frames.shape[2]
        self.interpolation = interpolation
        self.sampler = _FrameSampler(frames, reuse_buffer=True)  # one evaluation at a time per thread
        self.stats_cache: dict[int, torch.Tensor] = {}
        self.affines = [op_affine(op, self.height, self.width) if op.geometric else None for op in self.ops]
        # Statistics read a decimated copy of the source (every step-th pixel): cheap, and enough for a histogram.
        self.stats_step = max(1, min(self.height, self.width) // max(1, stats_size))
        self.stats_ys = torch.arange(0, self.height, self.stats_step, dtype=torch.float32).view(-1, 1)
        self.stats_xs = torch.arange(0, self.width, self.stats_step, dtype=torch.float32).view(1, -1)

    def _inside(self, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        return (ys >= -0.5) & (ys <= self.height - 0.5) & (xs >= -0.5) & (xs <= self.width - 0.5)

    def evaluate(
        self, k: int, ys: torch.Tensor, xs: torch.Tensor, for_stats: bool = False, nearest: bool = False
    ) -> torch.Tensor:
        """Values after ops[:k] at (ys, xs); ``for_stats``: from the decimated source; ``nearest``: one tap."""
        if k == 0:
            if for_stats:
                source = _decimated_sampler(self.frames, self.stats_step)
                if ys is self.stats_ys and xs is self.stats_xs:  # the grid itself: its nearest reads are the pixels
                    return source.pixels().float()
                step = self.stats_step
                return source.sample(ys / step, xs / step, "nearest")
            return self.sampler.sample(ys, xs, "nearest" if nearest else self.interpolation)
        op = self.ops[k - 1]
        if op.geometric:
            a, b, c, d, e, f = self.affines[k - 1]
            ys, xs = torch.broadcast_tensors(ys, xs)
            src_x = a * xs + b * ys + c
            src_y = d * xs + e * ys + f
            values = self.evaluate(k - 1, src_y, src_x, for_stats, nearest)
            return values.masked_fill_(_pixel_mask(~self._inside(src_y, src_x)), FILL_VALUE)
        if op.name in _SHARPNESS_OPS:
            return self._sharpen(k, ys, xs, op.arg, for_stats, nearest)
        stats = self._stats(k) if op.name in _STATS_OPS else None
        return _apply_colour(op, self.evaluate(k - 1, ys, xs, for_stats, nearest), stats)

    def _stats(self, k: int) -> torch.Tensor:
        # The statistics of the frame after ops[:k-1], from a coarse grid over the whole frame.
        if k not in self.stats_cache:
            name = self.ops[k - 1].name
            # Statistics of the unaugmented frames are the same for every copy of a decode: kept with its samples.
            shared = _decimated_sampler(self.frames, self.stats_step).stats if k == 1 else {}
            if name not in shared:
                shared[name] = _frame_stats(name, self.evaluate(k - 1, self.stats_ys, self.stats_xs, for_stats=True))
            self.stats_cache[k] = shared[name]
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
        smooth = centre * 5.0
        for dy, dx in _SHARPEN_OFFSETS:
            if (dy, dx) != (0, 0):  # one neighbour at a time: an 8x larger ring would not stay in cache
                smooth += self.evaluate(k - 1, ys + dy, xs + dx, nearest=True)
        smooth /= 13.0
        interior = (ys >= 1) & (ys <= self.height - 2) & (xs >= 1) & (xs <= self.width - 2)
        if not bool(interior.all()):  # usually none of a crop's pixels sits on the frame's border
            smooth = torch.where(_pixel_mask(interior), smooth, centre)
        return _blend(smooth, centre, factor)


def _evaluate_pixel_major(
    frames: torch.Tensor,
    ops: Sequence[AugmentOp],
    ys: torch.Tensor,
    xs: torch.Tensor,
    interpolation: str = "bilinear",
    geometric_interpolation: str = "bicubic",
    stats_size: int = 160,
) -> torch.Tensor:
    """:func:`evaluate_augmented` with the values pixel-major, ``*shape x T x 3`` (contiguous)."""
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise TransformError(f"RandAugment needs uint8 frames T x H x W x 3, got {frames.dtype} {tuple(frames.shape)}")
    mode = geometric_interpolation if any(op.geometric for op in ops) else interpolation
    evaluator = _Evaluator(frames, ops, mode, stats_size)
    return evaluator.evaluate(len(evaluator.ops), ys.float(), xs.float())


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

    ``frames``: uint8 ``T x H x W x 3``. Returns float ``T x *shape x 3`` on the 0..255 scale (a strided view of
    pixel-major values). The source is read with ``geometric_interpolation`` when a geometric op fired (the seed's
    AUG.INTERPOLATION), else with ``interpolation`` (the resize's). ``stats_size``: short side of the grid
    statistics ops read.
    """
    values = _evaluate_pixel_major(frames, ops, ys, xs, interpolation, geometric_interpolation, stats_size)
    return values.movedim(-2, 0)


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
    return values.round_().clamp_(0, 255).to(torch.uint8).contiguous()


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
