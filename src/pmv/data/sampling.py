"""Temporal sampling: which frames of a video make a clip (seed_code.md 3.3).

A clip is ``num_frames`` frames, ``stride`` apart. Without ``target_fps`` the stride counts the file's own frames
(decord fork: 16 x 4 = 64 native frames). With ``target_fps`` (the MViT recipe samples at 30 fps whatever the file's
rate) the stride counts frames at that rate and is mapped to native indices through time: frame ``i`` of the clip
is at ``start + i * stride * fps / target_fps`` native frames, rounded down.

The clip covers ``clip_len = num_frames * stride`` (scaled by ``fps / target_fps``) native frames, as in the
seed, and ``delta = max(num_frames_in_video - clip_len, 0)`` is the room for its start:

* training: one clip, start drawn uniformly from the integers ``0..floor(delta)`` (``generator`` passed in);
* testing, clip ``k`` of ``K``: ``floor(delta / 2)`` if ``K == 1``; ``k * floor(delta / (K - 1))`` with offset
  sampling (``data.offset_sampling``, the seed's ``USE_OFFSET_SAMPLING``: the first and last clips touch the
  video's ends); else ``delta * k / K``.

Unlike the seed's ``linspace(start, start + clip_len - 1, T)`` (off by up to 3 frames from the stride) the
indices here are exactly ``stride`` apart at native rate. A video shorter than a clip repeats its last frame
(indices clamp to ``num_frames_in_video - 1``), as the seed does.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch

from pmv.errors import DataError


class ClipSample(NamedTuple):
    indices: list[int]  # native frame indices, one per clip frame (repeats where the video is too short)
    start_s: float  # the clip's time span, for audio
    end_s: float


def frame_step(fps: float, target_fps: Optional[float]) -> float:
    """Native frames between two consecutive target-rate frames (1 without a target rate)."""
    if not target_fps:
        return 1.0
    if fps <= 0 or target_fps <= 0:
        raise DataError(f"sampling at {target_fps} fps needs the video's frame rate, got {fps}")
    return fps / target_fps


def _check(video_frames: int, num_frames: int, stride: int) -> None:
    if video_frames < 1:
        raise DataError(f"cannot sample a clip from a video with {video_frames} frames")
    if num_frames < 1 or stride < 1:
        raise DataError(f"clip of {num_frames} frames at stride {stride}: both must be at least 1")


def clip_length(num_frames: int, stride: int, fps: float, target_fps: Optional[float] = None) -> float:
    """Native frames a clip covers (the seed's ``SAMPLING_RATE * NUM_FRAMES``, in native frames)."""
    return num_frames * stride * frame_step(fps, target_fps)


def clip_at(
    start: float, video_frames: int, num_frames: int, stride: int, fps: float, target_fps: Optional[float] = None
) -> ClipSample:
    """The clip starting at native frame ``start`` (may be fractional), clamped to the video."""
    _check(video_frames, num_frames, stride)
    step = stride * frame_step(fps, target_fps)
    last = video_frames - 1
    # a tiny epsilon keeps exact multiples (e.g. 2.9999999 for 3) from rounding down a whole frame
    indices = [min(int(math.floor(start + i * step + 1e-6)), last) for i in range(num_frames)]
    rate = fps if fps > 0 else 1.0
    end = min(start + num_frames * step, float(video_frames))
    return ClipSample(indices, start / rate, max(end, start + 1) / rate)


def start_room(video_frames: int, num_frames: int, stride: int, fps: float, target_fps: Optional[float] = None) -> float:
    """``delta``: how far the clip's start can move (0 for videos shorter than the clip)."""
    return max(video_frames - clip_length(num_frames, stride, fps, target_fps), 0.0)


def train_clip(
    video_frames: int,
    num_frames: int,
    stride: int,
    fps: float,
    target_fps: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
) -> ClipSample:
    """One clip at a uniformly random integer start (training)."""
    _check(video_frames, num_frames, stride)
    delta = start_room(video_frames, num_frames, stride, fps, target_fps)
    start = int(torch.randint(0, int(math.floor(delta)) + 1, (), generator=generator).item())
    return clip_at(start, video_frames, num_frames, stride, fps, target_fps)


def test_clip_start(delta: float, view: int, num_views: int, offset_sampling: bool = True) -> float:
    """Start of test clip ``view`` of ``num_views`` (the seed's rule)."""
    if not 0 <= view < num_views:
        raise DataError(f"temporal view {view} is outside 0..{num_views - 1}")
    if num_views == 1:
        return float(math.floor(delta / 2))
    if offset_sampling:
        return float(view * math.floor(delta / (num_views - 1)))
    return delta * view / num_views


def test_clip(
    video_frames: int,
    num_frames: int,
    stride: int,
    fps: float,
    view: int,
    num_views: int,
    target_fps: Optional[float] = None,
    offset_sampling: bool = True,
) -> ClipSample:
    """Test clip ``view`` of ``num_views`` evenly spaced clips."""
    _check(video_frames, num_frames, stride)
    delta = start_room(video_frames, num_frames, stride, fps, target_fps)
    start = test_clip_start(delta, view, num_views, offset_sampling)
    return clip_at(start, video_frames, num_frames, stride, fps, target_fps)


def test_clips(
    video_frames: int,
    num_frames: int,
    stride: int,
    fps: float,
    num_views: int,
    target_fps: Optional[float] = None,
    offset_sampling: bool = True,
) -> list[ClipSample]:
    """All ``num_views`` test clips of a video, in view order."""
    return [
        test_clip(video_frames, num_frames, stride, fps, k, num_views, target_fps, offset_sampling)
        for k in range(num_views)
    ]


# these are library functions, not pytest tests (a test module that imports them must not collect them)
test_clip_start.__test__ = False  # type: ignore[attr-defined]
test_clip.__test__ = False  # type: ignore[attr-defined]
test_clips.__test__ = False  # type: ignore[attr-defined]


def check_view_counts(counts: Sequence[int]) -> list[int]:
    """Temporal-view counts of a sweep, sorted and unique; raises ConfigError unless all are whole numbers >= 1."""
    from pmv.errors import ConfigError

    try:
        values = sorted({int(c) for c in counts if int(c) == c})
    except (TypeError, ValueError):
        values = []
    if not values or len(values) != len(set(counts)) or values[0] < 1:
        raise ConfigError(f"temporal view counts must be positive whole numbers, got {list(counts)}")
    return values
