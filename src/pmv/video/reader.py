"""Exact, fast frame access by index or time.

A frame's index is its position in presentation order in a full sequential decode of the video stream (what
the decoder outputs, not packets: hidden VP9/AV1 frames and edit-listed frames are not frames). The reader maps
indices to presentation timestamps (pts) with an index built once per file (``pmv.video.index``: from the
packets, no decoding, for almost every file) and cached per process, so it is exact for B-frames, long GOPs,
variable frame rate, streams that do not start at time zero and edit lists.

Reading a set of frames:
  1. sort the wanted frames and split them into runs that one decode pass serves (a run starts a new pass
     when its keyframe lies beyond the packets the previous pass decodes anyway);
  2. for each run, seek to the keyframe before its first frame (by its dts, what demuxers seek by) and drop
     the packets before it unread. A seek that lands after the keyframe (MPEG-TS and other containers without
     an index seek by estimates) is retried from the keyframe before, and then by reading the file from its
     start, which costs decoding everything up to the wanted frames;
  3. feed packets up to the last wanted one only, telling the decoder to skip non-reference frames that are
     not wanted (they cannot change other frames), then drain the decoder;
  4. convert only the wanted frames to RGB with one reused scaler (one thread), scaling there when an output
     size is set, and turn them upright (and mirror them) as FFmpeg's autorotate does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Sequence

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from pmv.video._pyav import REDOWNLOAD_HINT, check_file, open_input, video_stream
from pmv.video.audio import read_audio
from pmv.video.errors import CorruptVideoError, FrameIndexError, NonIntegerIndexError, VideoError
from pmv.video.index import PACKETS, SEQUENTIAL, FrameIndex, build_frame_index, is_flush, locator_for
from pmv.video.metadata import VideoMetadata
from pmv.video.orientation import apply_orientation, is_transposed
from pmv.video.probe import metadata_from_container, with_index

logger = logging.getLogger(__name__)

BACKENDS = ("pyav",)

__all__ = ["BACKENDS", "FrameIndex", "INDEX_CACHE", "NonIntegerIndexError", "VideoReader", "build_frame_index",
           "read_frames"]


def _enable_decoder_error_reports() -> None:
    # PyAV silences FFmpeg's log by default, and with it the decoder's reports of damaged data that it
    # conceals (H.264 "error while decoding MB ..."). At ERROR level they are counted (and logged as
    # ``libav.*``), so a decode that met damage can raise instead of returning a concealed, wrong frame.
    if av.logging.get_level() is None:
        av.logging.set_level(av.logging.ERROR)


def _ffmpeg_error_count() -> tuple[int, object]:
    return av.logging.get_last_error()


class _IndexCache:
    """Per-process cache of (metadata, frame index) by file identity and stream, so a dataset indexes each
    file once."""

    def __init__(self, capacity: int = 1024):  # about 10 KB per 300-frame video
        self.capacity = capacity
        self._entries: OrderedDict[tuple, tuple[VideoMetadata, FrameIndex]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(path: str, stream: int | None = None) -> tuple:
        stat = os.stat(path)
        return (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, stream)

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
        return (out_height, out_width) if is_transposed(rotation) else (out_width, out_height)
    if short_side is not None:
        side = int(short_side)
        if coded_width <= coded_height:
            return side, max(1, int(round(coded_height * side / coded_width)))
        return max(1, int(round(coded_width * side / coded_height))), side
    return None


class VideoReader:
    """Exact frames of one video file, by index or by time, as ``T x H x W x 3`` uint8 RGB tensors.

    ``stream``: which video stream to read; None (the default) reads the one FFmpeg picks
    (``av_find_best_stream``, as ffmpeg, players and torchcodec do), an integer picks that video stream,
    counting video streams only; ``probe(path).video_streams`` lists them.
    ``short_side`` (e.g. 256) scales frames so the shorter side has that many pixels, keeping the aspect
    ratio; ``size`` (H, W) scales to an exact upright size. Scaling happens in the colour conversion of the
    wanted frames (swscale, bilinear), never as a separate resize. ``threads``: decoder threads (1 suits
    data-loader workers). Frames come out as FFmpeg shows them: the display matrix's rotation and mirroring
    are applied.

    Use as a context manager, or call ``close()``; the file stays open in between.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        backend: str = "pyav",
        *,
        stream: int | None = None,
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
            self._stream = video_stream(self._container, self.path, stream)
            cache_key = self._cache_key = _IndexCache.key(self.path, self._stream.index)
            cached = INDEX_CACHE.get(cache_key)
            if cached is None:
                with av.logging.Capture(local=True):  # damage is raised as CorruptVideoError, not printed
                    metadata = metadata_from_container(self._container, self._stream, self.path, size_bytes)
                    index = build_frame_index(self._container, self._stream, self.path, size_bytes)
                metadata = with_index(metadata, index)
                INDEX_CACHE.put(cache_key, (metadata, index))
            else:
                metadata, index = cached
            self._metadata, self._index = metadata, index
            self._configure_decoder()
            self._reformatter = VideoReformatter()
            self._out_size = _output_size(metadata.coded_width, metadata.coded_height, metadata.rotation,
                                          self.short_side, self.size)
        except BaseException:
            self.close()
            raise

    def _configure_decoder(self) -> None:
        context = self._stream.codec_context
        context.thread_count = self.threads
        context.thread_type = "AUTO" if self.threads > 1 else "SLICE"

    def _reopen(self) -> None:
        """Open the file again: demuxing then starts at its first packet, whatever the container's seeking."""
        index = self._stream.index
        self.close()
        self._container = open_input(self.path)
        self._stream = self._container.streams[index]
        self._configure_decoder()

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
        """Display size after rotation, fps, exact frame count, duration, rotation, mirroring, codec, audio."""
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
        return (width, height) if is_transposed(self._metadata.rotation) else (height, width)

    # -- audio ------------------------------------------------------------------------------------------
    def get_audio(self, start_s: float, end_s: float, sample_rate: int = 16000) -> torch.Tensor:
        """Mono float32 waveform of ``[start_s, end_s)`` seconds (the clock of ``frame_times``) at
        ``sample_rate``; ``round((end_s - start_s) * sample_rate)`` samples. Each decoded block of samples is
        placed at its own timestamp, so gaps in the track (and the parts before it starts or after it ends)
        are zeros, and codec priming (AAC, Opus) is dropped as FFmpeg drops it. See ``pmv.video.audio``.
        Raises NoAudioStreamError when the file has no audio."""
        if self._container is None:
            raise VideoError(self.path, "the reader is closed")
        return read_audio(self._container, self.path, float(start_s), float(end_s), int(sample_rate))

    # -- frames -----------------------------------------------------------------------------------------
    def get_frames_at(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Frames at ``indices`` (any order, repeats allowed) as a ``T x H x W x 3`` uint8 tensor, in that order.

        Negative indices count from the end, as in Python. Raises NonIntegerIndexError for values that are not
        integers (use ``get_frames_played_at`` for times), FrameIndexError for indices outside the video and
        CorruptVideoError when a wanted frame cannot be decoded.
        """
        wanted = self._check_indices(indices)
        height, width = self.output_size
        # Allocated by numpy: writing into fresh torch.empty memory of this size is several times slower
        # here (page faults), and the tensor shares the array's memory.
        out = np.empty((len(wanted), height, width, 3), dtype=np.uint8)
        if len(wanted):
            self._decode_into(wanted, out)
        return torch.from_numpy(out)

    get_frames = get_frames_at  # the name datasets have used

    def get_frames_played_at(self, seconds: Sequence[float] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """The frames shown at the given presentation times (seconds on the stream's clock, which starts at
        ``metadata.start_time``): for each time, the last frame whose timestamp is not after it."""
        return self.get_frames_at(self.indices_at(seconds))

    def indices_at(self, seconds: Sequence[float] | torch.Tensor | np.ndarray) -> list[int]:
        """Frame indices shown at the given presentation times (see ``get_frames_played_at``)."""
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
            if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
                raise NonIntegerIndexError(
                    self.path, f"frame indices must be integers, got a {indices.dtype} tensor",
                    "use get_frames_played_at(seconds) for times, or convert with .long()",
                )
            indices = indices.tolist()
        elif isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
            indices = [indices]
        array = np.asarray(indices)
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        if array.dtype.kind not in "iu":
            example = next((v for v in array.reshape(-1).tolist() if not isinstance(v, int) or isinstance(v, bool)),
                           array.reshape(-1)[0])
            raise NonIntegerIndexError(
                self.path, f"frame indices must be integers, got {example!r} ({array.dtype})",
                "use get_frames_played_at(seconds) for times",
            )
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
                    errors, missing = self._decode_run_checked(start, last, members, slots, out)
                    if (errors or missing) and start > 0:
                        # Starting at a keyframe that is not an instantaneous refresh (an open-GOP H.264
                        # I-frame) makes the decoder report missing references that do not matter for the
                        # frames after it, or hold back frames. Decoding from the start of the stream tells
                        # that apart from damage.
                        logger.debug("%s: decoder errors or missing frames after a mid-stream start; "
                                     "decoding from the start", self.path)
                        errors, missing = self._decode_run_checked(0, last, members, slots, out)
                        if not errors and not missing:
                            _DECODE_FROM_START.add(self._cache_key)
                    if errors:
                        raise CorruptVideoError(
                            self.path, f"the video data is damaged, the decoder reported errors ({errors})",
                            REDOWNLOAD_HINT,
                        )
                    if missing:
                        raise CorruptVideoError(
                            self.path, f"frame(s) {missing[:5]} of {self._index.num_frames} cannot be decoded "
                            "(the file is damaged: a full decode of it does not reach them)", REDOWNLOAD_HINT,
                        )
            except av.error.FFmpegError as err:
                raise CorruptVideoError(
                    self.path, f"the video data is damaged, a wanted frame cannot be decoded: {err}",
                    REDOWNLOAD_HINT,
                ) from None
            finally:
                for _level, name, message in messages[:20]:
                    logger.debug("%s: ffmpeg %s: %s", self.path, name, message.strip())

    def _decode_run_checked(self, start: int, last: int, members: list[int], slots: dict,
                            out: np.ndarray) -> tuple[str, list[int]]:
        """Decode one run; return (the decoder's last error message or '', frames that did not come out)."""
        errors_before, _ = _ffmpeg_error_count()
        missing = self._decode_run(start, last, members, slots, out)
        errors_after, last_error = _ffmpeg_error_count()
        if errors_after == errors_before:
            return "", missing
        return (f"{last_error[1]}: {last_error[2].strip()}" if last_error else "decoder error"), missing

    def _seek_targets(self, start: int) -> list[int | None]:
        """Where to seek for a decode that starts at packet ``start``: its pts (what Matroska and mp4 seek by),
        its dts (MPEG-TS), the keyframe before it, then None: read the file again from its first packet."""
        index = self._index
        if index.mode == SEQUENTIAL:
            return [None]  # frames are counted from the first one output
        targets: list[int | None] = [int(index.packet_pts[start])]
        if index.packet_dts[start] != index.packet_pts[start]:
            targets.append(int(index.packet_dts[start]))
        keys = index.key_positions
        earlier = keys[keys < start]
        if len(earlier):
            targets.append(int(min(index.packet_pts[earlier[-1]], index.packet_dts[earlier[-1]])))
        return targets + [None]

    def _decode_run(self, start: int, last: int, members: list[int], slots: dict, out: np.ndarray) -> list[int]:
        """Decode packets ``start`` to ``last`` and take the ``members`` frames; returns the members missing."""
        index = self._index
        sequential = index.mode == SEQUENTIAL
        if sequential:
            wanted = {int(f): int(f) for f in members}  # frames are known by their output order
        else:
            wanted = {int(index.frame_pts[f]): int(f) for f in members}
        # Non-reference frames that are not wanted cannot change a wanted frame: their packets are skipped
        # by the decoder (only where each packet is one frame, so the packet of a wanted frame is known).
        wanted_packets = {int(index.frame_packet[f]) for f in members} if index.mode == PACKETS else None
        remaining = set(wanted)
        locate = locator_for(index)
        for target in self._seek_targets(start):
            context = self._stream.codec_context
            context.flush_buffers()
            if target is None:
                self._reopen()
                context = self._stream.codec_context
                start_at = 0
            else:
                self._container.seek(target, stream=self._stream, backward=True)
                start_at = start
            counter = [0]
            landed = self._feed(start_at, last, wanted, wanted_packets, remaining, slots, out, counter,
                                locate, fresh=target is None)
            context.skip_frame = "DEFAULT"
            if landed:
                for frame in context.decode(None):  # the frames the decoder still holds for reordering
                    self._take(frame, wanted, remaining, slots, out, counter)
                context.flush_buffers()
                break
            logger.debug("%s: a seek for packet %d landed after it; trying from earlier", self.path, start)
        return sorted(wanted[key] for key in remaining)

    def _feed(self, start: int, last: int, wanted: dict, wanted_packets, remaining: set, slots: dict,
              out: np.ndarray, counter: list, locate, fresh: bool) -> bool:
        """Demux from the current position, drop packets before ``start``, decode ``start`` to ``last``.

        ``fresh``: the file was just opened, so packets come in index order from the first. Otherwise the
        first packets after the seek are looked up in the index, and counted from there. Returns False when
        the first packet found lies after ``start`` (the seek landed too late).
        """
        context = self._stream.codec_context
        position, started = -1, False
        for packet in self._container.demux(self._stream):
            if is_flush(packet):
                break
            if fresh or started:
                position += 1
            else:
                position = locate(packet)
                if position < 0:
                    continue  # a packet the index does not know (a fragment at the seek point)
            if not started:
                if position < start:
                    continue  # before the keyframe we need: dropped unread by the decoder
                if position > start:
                    return False
                started = True
            if wanted_packets is not None:
                context.skip_frame = "DEFAULT" if position in wanted_packets else "NONREF"
            for frame in context.decode(packet):
                self._take(frame, wanted, remaining, slots, out, counter)
            if position >= last:
                break
        return started

    def _take(self, frame, wanted: dict, remaining: set, slots: dict, out: np.ndarray, counter: list) -> None:
        if self._index.mode == SEQUENTIAL:
            key = counter[0]
            counter[0] += 1
        else:
            key = frame.pts
        if key not in remaining:
            return
        if frame.is_corrupt:
            raise CorruptVideoError(self.path, f"frame {wanted[key]} decodes with errors", REDOWNLOAD_HINT)
        remaining.discard(key)
        if self._out_size is None:
            rgb = self._reformatter.reformat(frame, format="rgb24", threads=1)
        else:
            width, height = self._out_size
            rgb = self._reformatter.reformat(frame, width=width, height=height, format="rgb24", threads=1)
        array = apply_orientation(rgb.to_ndarray(), self._metadata.rotation, self._metadata.mirrored)
        for slot in slots[wanted[key]]:
            np.copyto(out[slot], array)


def read_frames(path: str | os.PathLike, indices, **reader_options) -> torch.Tensor:
    """Open ``path``, return ``get_frames_at(indices)`` and close it (what a dataset's ``__getitem__`` does)."""
    with VideoReader(path, **reader_options) as reader:
        return reader.get_frames_at(indices)
