"""Exact, fast frame access by index or time.

A frame's index is its position in presentation order in a full sequential decode of the video stream. The
reader maps indices to presentation timestamps (pts) with an index built once per file by demuxing packets
(no decoding) and cached per process, so it is exact for B-frames, long GOPs, variable frame rate, streams
that do not start at time zero and edit lists.

Reading a set of frames:
  1. sort the wanted frames and split them into runs that one decode pass serves (a run starts a new pass
     when its keyframe lies beyond the packets the previous pass decodes anyway);
  2. for each run, seek to the keyframe before its first frame (checked: packets before it are dropped
     unread by the decoder, and a seek that lands too late is redone from the start of the stream);
  3. feed packets up to the last wanted one only, telling the decoder to skip non-reference frames that are
     not wanted (they cannot change other frames), then drain the decoder;
  4. convert only the wanted frames to RGB with one reused scaler (one thread), scaling there when an output
     size is set, and turn them upright by the display rotation.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Sequence

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from pmv.video._pyav import REDOWNLOAD_HINT, check_file, open_input, video_stream
from pmv.video.audio import read_audio
from pmv.video.errors import CorruptVideoError, FrameIndexError, VideoError
from pmv.video.metadata import VideoMetadata
from pmv.video.probe import metadata_from_container

logger = logging.getLogger(__name__)

BACKENDS = ("pyav",)


def _enable_decoder_error_reports() -> None:
    # PyAV silences FFmpeg's log by default, and with it the decoder's reports of damaged data that it
    # conceals (H.264 "error while decoding MB ..."). At ERROR level they are counted (and logged as
    # ``libav.*``), so a decode that met damage can raise instead of returning a concealed, wrong frame.
    if av.logging.get_level() is None:
        av.logging.set_level(av.logging.ERROR)


def _ffmpeg_error_count() -> tuple[int, object]:
    return av.logging.get_last_error()


@dataclass(frozen=True)
class FrameIndex:
    """Where each frame of a video stream is, from its packets (no decoding).

    Packet arrays are in decode (file) order; frame arrays in presentation order.
    """

    time_base: Fraction
    packet_pts: np.ndarray  # int64, pts of each packet
    packet_is_key: np.ndarray  # bool
    key_positions: np.ndarray  # int64, decode-order positions of the keyframe packets
    frame_pts: np.ndarray  # int64, sorted: pts of frame i
    frame_packet: np.ndarray  # int32: decode-order position of the packet that holds frame i
    end_pts: int  # pts where the last frame stops being shown
    pts_sorted: np.ndarray  # int64, packet pts in increasing order, to find a packet's position by its pts
    pts_sorted_position: np.ndarray  # int32, decode-order position of each of those packets

    @property
    def num_frames(self) -> int:
        return len(self.frame_pts)

    def position_of(self, pts) -> int:
        """Decode-order position of the packet with this pts, or -1 when there is none."""
        if pts is None:
            return -1
        at = int(np.searchsorted(self.pts_sorted, pts))
        if at < len(self.pts_sorted) and self.pts_sorted[at] == pts:
            return int(self.pts_sorted_position[at])
        return -1

    def frame_seconds(self) -> np.ndarray:
        return self.frame_pts.astype(np.float64) * float(self.time_base)

    def keyframe_for(self, frame: int) -> int:
        """Decode-order position of the keyframe a decode must start at to produce ``frame`` exactly.

        The last keyframe at or before the frame's packet whose own pts is not later than the frame's
        (in an open GOP, the frames shown before a keyframe but coded after it need the previous GOP).
        """
        position = int(self.frame_packet[frame])
        pts = self.frame_pts[frame]
        keys = self.key_positions
        at = int(np.searchsorted(keys, position, side="right")) - 1
        while at >= 0 and self.packet_pts[keys[at]] > pts:
            at -= 1
        return int(keys[at]) if at >= 0 else 0


def build_frame_index(container, stream, path: str) -> FrameIndex:
    """Demux every packet of ``stream`` once and record its timestamps (no decoding)."""
    pts_list, key_list, discard_list, duration_list = [], [], [], []
    try:
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None:
                continue  # the flush packet at the end of the stream
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None:
                raise CorruptVideoError(path, f"packet {len(pts_list)} of the video stream has no timestamp")
            pts_list.append(pts)
            key_list.append(bool(packet.is_keyframe))
            discard_list.append(bool(packet.is_discard))
            duration_list.append(packet.duration or 0)
    except av.error.FFmpegError as err:
        raise CorruptVideoError(
            path, f"the video packets cannot be read after packet {len(pts_list)}: {err}", REDOWNLOAD_HINT
        ) from None
    shown = np.flatnonzero(~np.asarray(discard_list, dtype=bool))
    if not len(shown):
        raise CorruptVideoError(path, "the video stream has no frames", REDOWNLOAD_HINT)
    if len(set(pts_list)) != len(pts_list):
        raise CorruptVideoError(path, "two video frames share one timestamp; the frame order is ambiguous")
    packet_pts = np.asarray(pts_list, dtype=np.int64)
    is_key = np.asarray(key_list, dtype=bool)
    if not is_key.any():
        is_key[0] = True  # streams without keyframe flags: decode from the start
    order = shown[np.argsort(packet_pts[shown], kind="stable")]
    frame_pts = packet_pts[order]
    by_pts = np.argsort(packet_pts, kind="stable")
    # The last frame is shown for its packet's duration (else for the gap before it).
    last_duration = duration_list[order[-1]] or (int(frame_pts[-1] - frame_pts[-2]) if len(frame_pts) > 1 else 1)
    return FrameIndex(
        time_base=stream.time_base,
        packet_pts=packet_pts,
        packet_is_key=is_key,
        key_positions=np.flatnonzero(is_key),
        frame_pts=frame_pts,
        frame_packet=order.astype(np.int32),
        end_pts=int(frame_pts[-1]) + int(last_duration),
        pts_sorted=packet_pts[by_pts],
        pts_sorted_position=by_pts.astype(np.int32),
    )


class _IndexCache:
    """Per-process cache of (metadata, frame index) by file identity, so a dataset indexes each file once."""

    def __init__(self, capacity: int = 1024):  # about 10 KB per 300-frame video
        self.capacity = capacity
        self._entries: OrderedDict[tuple, tuple[VideoMetadata, FrameIndex]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(path: str) -> tuple:
        stat = os.stat(path)
        return (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)

    def get(self, key):
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key, entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


INDEX_CACHE = _IndexCache()

# Files (by cache key) whose keyframes are not all clean starting points: they are decoded from the start.
_DECODE_FROM_START: set = set()


def _output_size(coded_width: int, coded_height: int, rotation: int, short_side, size) -> tuple[int, int] | None:
    """The (width, height) to scale the coded picture to, or None to keep it."""
    if size is not None:
        out_height, out_width = int(size[0]), int(size[1])
        # ``size`` is the upright picture's H x W; the coded picture is turned by 90 degrees for 90/270.
        return (out_height, out_width) if rotation in (90, 270) else (out_width, out_height)
    if short_side is not None:
        side = int(short_side)
        if coded_width <= coded_height:
            return side, max(1, int(round(coded_height * side / coded_width)))
        return max(1, int(round(coded_width * side / coded_height))), side
    return None


class VideoReader:
    """Exact frames of one video file, by index or by time, as ``T x H x W x 3`` uint8 RGB tensors.

    ``short_side`` (e.g. 256) scales frames so the shorter side has that many pixels, keeping the aspect
    ratio; ``size`` (H, W) scales to an exact upright size. Scaling happens in the colour conversion of the
    wanted frames (swscale, bilinear), never as a separate resize. ``threads``: decoder threads (1 suits
    data-loader workers). Frames come out upright: the container's display rotation is applied.

    Use as a context manager, or call ``close()``; the file stays open in between.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        backend: str = "pyav",
        *,
        short_side: int | None = None,
        size: Sequence[int] | None = None,
        threads: int = 1,
    ):
        self.path = os.fspath(path)
        if backend not in BACKENDS:
            raise VideoError(self.path, f"unknown video backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
        if short_side is not None and size is not None:
            raise ValueError("give short_side or size, not both")
        if short_side is not None and int(short_side) <= 0:
            raise ValueError(f"short_side must be positive, got {short_side}")
        if size is not None and (len(size) != 2 or min(int(s) for s in size) <= 0):
            raise ValueError(f"size must be (height, width) with positive values, got {size}")
        self.backend = backend
        self.short_side = short_side
        self.size = tuple(int(s) for s in size) if size is not None else None
        self.threads = max(1, int(threads))
        self._container = None
        self._cache_key = None
        _enable_decoder_error_reports()
        size_bytes = check_file(self.path)
        self._container = open_input(self.path)
        try:
            self._stream = video_stream(self._container, self.path)
            cache_key = self._cache_key = _IndexCache.key(self.path)
            cached = INDEX_CACHE.get(cache_key)
            if cached is None:
                with av.logging.Capture(local=True):  # damage is raised as CorruptVideoError, not printed
                    metadata = metadata_from_container(self._container, self._stream, self.path, size_bytes)
                    index = build_frame_index(self._container, self._stream, self.path)
                metadata = replace(metadata, num_frames=index.num_frames)
                INDEX_CACHE.put(cache_key, (metadata, index))
            else:
                metadata, index = cached
            self._metadata, self._index = metadata, index
            context = self._stream.codec_context
            context.thread_count = self.threads
            context.thread_type = "AUTO" if self.threads > 1 else "SLICE"
            self._reformatter = VideoReformatter()
            self._out_size = _output_size(metadata.coded_width, metadata.coded_height, metadata.rotation,
                                          self.short_side, self.size)
        except BaseException:
            self.close()
            raise

    # -- life cycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __len__(self) -> int:
        return self._index.num_frames

    def __repr__(self) -> str:
        m = self._metadata
        return f"VideoReader({self.path!r}, {m.height}x{m.width}, {m.num_frames} frames, {m.fps:.3f} fps)"

    # -- what the video is ------------------------------------------------------------------------------
    @property
    def metadata(self) -> VideoMetadata:
        """Display size after rotation, fps, exact frame count, duration, rotation, codec, audio."""
        return self._metadata

    @property
    def num_frames(self) -> int:
        return self._index.num_frames

    @property
    def frame_times(self) -> torch.Tensor:
        """Presentation time in seconds of every frame (float64, increasing)."""
        return torch.from_numpy(self._index.frame_seconds())

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of the frames this reader returns (upright)."""
        if self._out_size is None:
            return self._metadata.height, self._metadata.width
        width, height = self._out_size
        return (width, height) if self._metadata.rotation in (90, 270) else (height, width)

    # -- audio ------------------------------------------------------------------------------------------
    def get_audio(self, start_s: float, end_s: float, sample_rate: int = 16000) -> torch.Tensor:
        """Mono float32 waveform of ``[start_s, end_s)`` seconds (the clock of ``frame_times``) at
        ``sample_rate``; ``round((end_s - start_s) * sample_rate)`` samples, zeros where the track has none.
        Raises NoAudioStreamError when the file has no audio."""
        if self._container is None:
            raise VideoError(self.path, "the reader is closed")
        return read_audio(self._container, self.path, float(start_s), float(end_s), int(sample_rate))

    # -- frames -----------------------------------------------------------------------------------------
    def get_frames(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Frames at ``indices`` (any order, repeats allowed) as a ``T x H x W x 3`` uint8 tensor, in that order.

        Negative indices count from the end, as in Python. Raises FrameIndexError for indices outside the
        video and CorruptVideoError when a wanted frame cannot be decoded.
        """
        wanted = self._check_indices(indices)
        height, width = self.output_size
        # Allocated by numpy: writing into fresh torch.empty memory of this size is several times slower
        # here (page faults), and the tensor shares the array's memory.
        out = np.empty((len(wanted), height, width, 3), dtype=np.uint8)
        if len(wanted):
            self._decode_into(wanted, out)
        return torch.from_numpy(out)

    def get_frames_at(self, seconds: Sequence[float] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """The frames shown at the given presentation times (seconds on the stream's clock, which starts at
        ``metadata.start_time``): for each time, the last frame whose timestamp is not after it."""
        return self.get_frames(self.indices_at(seconds))

    def indices_at(self, seconds: Sequence[float] | torch.Tensor | np.ndarray) -> list[int]:
        """Frame indices shown at the given presentation times (see ``get_frames_at``)."""
        times = np.asarray(seconds.tolist() if isinstance(seconds, torch.Tensor) else seconds, dtype=np.float64)
        times = times.reshape(-1)
        starts = self._index.frame_seconds()
        end = self._index.end_pts * float(self._index.time_base)
        # A tolerance of 0.1 microsecond absorbs float rounding of times computed as i / fps.
        found = np.searchsorted(starts, times + 1e-7, side="right") - 1
        bad = (found < 0) | (times >= end) | ~np.isfinite(times)
        if bad.any():
            first = float(times[np.flatnonzero(bad)[0]])
            raise FrameIndexError(
                self.path, f"time {first:.6f} s is outside the video ({starts[0]:.6f} s to {end:.6f} s)"
            )
        return [int(i) for i in found]

    def _check_indices(self, indices) -> np.ndarray:
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        array = np.asarray(indices)
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        if array.dtype.kind not in "iu":
            if array.dtype.kind == "f" and np.all(np.floor(array) == array):
                array = array.astype(np.int64)
            else:
                raise TypeError(f"frame indices must be integers, got {array.dtype}")
        array = array.astype(np.int64).reshape(-1)
        count = self._index.num_frames
        bad = (array < -count) | (array >= count)
        if bad.any():
            raise FrameIndexError(
                self.path, f"frame index {int(array[np.flatnonzero(bad)[0]])} is out of range "
                f"for a video of {count} frames (valid: 0 to {count - 1})"
            )
        return np.where(array < 0, array + count, array)

    def _plan_runs(self, frames: np.ndarray) -> list[tuple[int, int, list[int]]]:
        """Split sorted unique frames into decode passes: (start packet, last packet, frames)."""
        index = self._index
        runs: list[tuple[int, int, list[int]]] = []
        for frame in frames.tolist():
            key = index.keyframe_for(frame)
            position = int(index.frame_packet[frame])
            if runs and key <= runs[-1][1]:
                start, last, members = runs[-1]
                runs[-1] = (start, max(last, position), members + [frame])
            else:
                runs.append((key, position, [frame]))
        return runs

    def _decode_into(self, wanted: np.ndarray, out: np.ndarray) -> None:
        if self._container is None:
            raise VideoError(self.path, "the reader is closed")
        slots: dict[int, list[int]] = {}
        for slot, frame in enumerate(wanted.tolist()):
            slots.setdefault(frame, []).append(slot)
        frames = np.asarray(sorted(slots), dtype=np.int64)
        # FFmpeg's messages about damaged data are collected here (and logged at debug level), not printed.
        with av.logging.Capture(local=True) as messages:
            try:
                for start, last, members in self._plan_runs(frames):
                    if self._cache_key in _DECODE_FROM_START:
                        start = 0
                    errors = self._decode_run_checked(start, last, members, slots, out)
                    if errors and start > 0:
                        # Starting at a keyframe that is not an instantaneous refresh (an open-GOP H.264
                        # I-frame) makes the decoder report missing references that do not matter for the
                        # frames after it. Decoding from the start of the stream tells that apart from damage.
                        logger.debug("%s: decoder errors after a mid-stream start; decoding from the start",
                                     self.path)
                        errors = self._decode_run_checked(0, last, members, slots, out)
                        if not errors:
                            _DECODE_FROM_START.add(self._cache_key)
                    if errors:
                        raise CorruptVideoError(
                            self.path, f"the video data is damaged, the decoder reported errors ({errors})",
                            REDOWNLOAD_HINT,
                        )
            except av.error.FFmpegError as err:
                raise CorruptVideoError(
                    self.path, f"the video data is damaged, a wanted frame cannot be decoded: {err}",
                    REDOWNLOAD_HINT,
                ) from None
            finally:
                for _level, name, message in messages[:20]:
                    logger.debug("%s: ffmpeg %s: %s", self.path, name, message.strip())

    def _decode_run_checked(self, start: int, last: int, members: list[int], slots: dict, out: np.ndarray) -> str:
        """Decode one run; return the decoder's last error message if it reported any, else ''."""
        errors_before, _ = _ffmpeg_error_count()
        self._decode_run(start, last, members, slots, out)
        errors_after, last_error = _ffmpeg_error_count()
        if errors_after == errors_before:
            return ""
        return f"{last_error[1]}: {last_error[2].strip()}" if last_error else "decoder error"

    def _decode_run(self, start: int, last: int, members: list[int], slots: dict, out: np.ndarray) -> None:
        index, stream = self._index, self._stream
        context = stream.codec_context
        wanted_pts = {int(index.frame_pts[f]): f for f in members}
        # Packets are identified by pts (unique per stream); where the seek lands we skip to ``start``.
        last_pts = int(index.packet_pts[last])
        remaining = set(wanted_pts)
        context.flush_buffers()
        self._container.seek(int(index.packet_pts[start]), stream=stream, backward=True)
        started = False
        for _attempt in range(2):
            for packet in self._container.demux(stream):
                if packet.size == 0 and packet.pts is None:
                    break  # end of stream
                pts = packet.pts if packet.pts is not None else packet.dts
                if not started:
                    position = index.position_of(pts)
                    if position < start:
                        continue  # before the keyframe we need: dropped unread by the decoder
                    if position > start:
                        break  # the seek landed past the keyframe: redo from the start of the stream
                    started = True
                # Non-reference frames that are not wanted cannot change a wanted frame: skip decoding them.
                context.skip_frame = "DEFAULT" if pts in wanted_pts else "NONREF"
                for frame in context.decode(packet):
                    self._take(frame, wanted_pts, remaining, slots, out)
                if pts == last_pts:
                    break
            if started:
                break
            logger.debug("%s: seek to packet %d landed too late; reading from the start", self.path, start)
            context.flush_buffers()
            self._container.seek(int(index.packet_pts.min()) - 1, stream=stream, backward=True)
        context.skip_frame = "DEFAULT"
        if not started:
            raise CorruptVideoError(self.path, f"cannot find the keyframe packet {start} of the video stream",
                                    REDOWNLOAD_HINT)
        # Drain the frames the decoder still holds for reordering.
        for frame in context.decode(None):
            self._take(frame, wanted_pts, remaining, slots, out)
        context.flush_buffers()
        if remaining:
            missing = sorted(wanted_pts[p] for p in remaining)
            raise CorruptVideoError(
                self.path, f"frame(s) {missing[:5]} of {self._index.num_frames} cannot be decoded "
                "(the file is truncated or damaged)", REDOWNLOAD_HINT,
            )

    def _take(self, frame, wanted_pts: dict, remaining: set, slots: dict, out: np.ndarray) -> None:
        pts = frame.pts
        if pts not in remaining:
            return
        if frame.is_corrupt:
            raise CorruptVideoError(self.path, f"frame {wanted_pts[pts]} decodes with errors", REDOWNLOAD_HINT)
        remaining.discard(pts)
        if self._out_size is None:
            rgb = self._reformatter.reformat(frame, format="rgb24", threads=1)
        else:
            width, height = self._out_size
            rgb = self._reformatter.reformat(frame, width=width, height=height, format="rgb24", threads=1)
        array = rgb.to_ndarray()
        turns = (frame.rotation // 90) % 4
        if turns:
            array = np.rot90(array, k=turns)
        for slot in slots[wanted_pts[pts]]:
            np.copyto(out[slot], array)


def read_frames(path: str | os.PathLike, indices, **reader_options) -> torch.Tensor:
    """Open ``path``, return ``get_frames(indices)`` and close it (what a dataset's ``__getitem__`` does)."""
    with VideoReader(path, **reader_options) as reader:
        return reader.get_frames(indices)
