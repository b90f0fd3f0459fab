"""Read what a video is (size, orientation, rate, frame count, audio, its video streams) from its container."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import av
import numpy as np

from pmv.video._pyav import (
    check_file, looks_like_iso_media, mp4_display_matrices, open_input, video_ordinal, video_stream,
)
from pmv.video.index import FrameIndex, build_frame_index
from pmv.video.metadata import VideoMetadata, VideoStreamInfo
from pmv.video.orientation import frame_orientation, is_transposed, orientation_from_matrix

logger = logging.getLogger(__name__)

# The container's rate is kept when it agrees with the frame timestamps this closely (29.97 vs 30 does);
# a bogus one (an FLV's 1000, an MPEG-TS's field rate) is replaced by the timestamps' rate.
_RATE_TOLERANCE = 0.1


def _seconds(value, time_base) -> float:
    return float(value * time_base) if value is not None and time_base is not None else 0.0


def count_packets(container, stream, path: str) -> int:
    """The number of frames of ``stream`` a full decode outputs (see ``pmv.video.index``)."""
    return build_frame_index(container, stream, path).num_frames


def _mp4_truncation(container, size_bytes: int) -> str:
    # The mp4 index says where every frame's bytes are; past the end of the file means a cut-off download.
    data_end = 0
    for stream in container.streams:
        try:
            entries = stream.index_entries
            if len(entries):
                data_end = max(data_end, max(e.pos + e.size for e in entries[-64:]))
        except (AttributeError, av.error.FFmpegError):
            continue
    if data_end > size_bytes:
        return f"its index points to frame data up to byte {data_end}, but the file has {size_bytes} bytes"
    return ""


def _read_vint(handle) -> tuple[int | None, int]:
    first = handle.read(1)
    if not first:
        return None, 0
    length = 1
    while length <= 8 and not first[0] & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        return None, 0
    rest = handle.read(length - 1)
    if len(rest) < length - 1:
        return None, 0
    value = first[0] & (0xFF >> length)
    for byte in rest:
        value = (value << 8) | byte
    unknown = value == (1 << (7 * length)) - 1
    return (None if unknown else value), length


def _matroska_truncation(path: str, size_bytes: int) -> str:
    """Matroska/WebM: the Segment element states its size; a file shorter than that was cut off."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"\x1a\x45\xdf\xa3":
                return ""
            header_size, _ = _read_vint(handle)
            if header_size is None:
                return ""
            handle.seek(header_size, os.SEEK_CUR)
            if handle.read(4) != b"\x18\x53\x80\x67":
                return ""
            segment_size, _ = _read_vint(handle)
            if segment_size is None:  # written live: the size is unknown
                return ""
            segment_end = handle.tell() + segment_size
    except OSError:
        return ""
    if segment_end > size_bytes:
        return f"its header says the data runs to byte {segment_end}, but the file has {size_bytes} bytes"
    return ""


def _decoded_orientation(path: str, stream_index: int) -> tuple[int, bool]:
    # Containers without an mp4 track header (WebM, MKV, TS): the display matrix arrives with the first frame.
    container = open_input(path)
    try:
        with av.logging.Capture(local=True):
            for frame in container.decode(container.streams[stream_index]):
                return frame_orientation(frame)
    except av.error.FFmpegError:
        return 0, False
    finally:
        container.close()
    return 0, False


def _orientation(path: str, stream, matrices) -> tuple[int, bool]:
    if matrices is not None and stream.index < len(matrices):
        return orientation_from_matrix(matrices[stream.index])
    return _decoded_orientation(path, stream.index)


def _container_rate(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _is_attached_picture(stream) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _mp4_frame_count(stream) -> int:
    # The mp4 index lists every sample and marks those an edit list hides (a trimmed start), which a full
    # decode skips. (Other containers' index entries are only seek points.)
    entries = stream.index_entries
    return sum(1 for entry in entries if not entry.is_discard) if len(entries) else 0


def _mp4_variable_rate(stream) -> bool:
    entries = stream.index_entries
    if len(entries) < 3:
        return False
    times = np.sort(np.fromiter((e.timestamp for e in entries), dtype=np.int64, count=len(entries)))
    return _gaps_vary(np.diff(times))


def _gaps_vary(gaps: np.ndarray) -> bool:
    gaps = gaps[gaps > 0]
    if len(gaps) < 2:
        return False
    # One tick of jitter is rounding (30 fps in milliseconds is 33, 33, 34); more is a variable rate.
    return float(gaps.max() - gaps.min()) > max(2.0, 0.05 * float(np.median(gaps)))


def stream_infos(container, path: str, best_index: int | None, matrices, count_frames: bool = False,
                 known_rotation: dict | None = None, known_frames: dict | None = None) -> tuple[VideoStreamInfo, ...]:
    """Every video stream of the container; ``known_rotation`` and ``known_frames`` (stream index -> value)
    save a decode or a pass over the index."""
    infos = []
    for ordinal, stream in enumerate(container.streams.video):
        context = stream.codec_context
        if known_rotation and stream.index in known_rotation:
            rotation = known_rotation[stream.index]
        else:
            rotation, _ = _orientation(path, stream, matrices)
        width, height = context.width, context.height
        if is_transposed(rotation):
            width, height = height, width
        frames = max(int(stream.frames or 0), 0)
        if known_frames and stream.index in known_frames:
            frames = known_frames[stream.index]
        elif matrices is not None:
            frames = _mp4_frame_count(stream) or frames
        if count_frames:
            counting = open_input(path)
            try:
                with av.logging.Capture(local=True):
                    frames = build_frame_index(counting, counting.streams[stream.index], path).num_frames
            finally:
                counting.close()
        infos.append(VideoStreamInfo(
            index=ordinal, stream_index=stream.index, width=width, height=height, codec=context.name,
            num_frames=frames, fps=_container_rate(stream), best=stream.index == best_index,
            attached_picture=_is_attached_picture(stream),
        ))
    return tuple(infos)


def metadata_from_container(container, stream, path: str, size_bytes: int) -> VideoMetadata:
    """Metadata of ``stream`` in an open container; the frame count is the container's (0 when unknown)."""
    context = stream.codec_context
    time_base = stream.time_base
    matrices = mp4_display_matrices(path)
    is_iso_media = matrices is not None
    rotation, mirrored = _orientation(path, stream, matrices)
    coded_width, coded_height = context.width, context.height
    width, height = (coded_height, coded_width) if is_transposed(rotation) else (coded_width, coded_height)
    start_time = _seconds(stream.start_time, time_base)
    duration = _seconds(stream.duration, time_base)
    if not duration and container.duration:
        duration = container.duration / av.time_base - start_time
    truncation = _mp4_truncation(container, size_bytes) if is_iso_media else _matroska_truncation(path, size_bytes)
    num_frames = max(int(stream.frames or 0), 0)
    variable_rate = False
    if is_iso_media:
        num_frames = _mp4_frame_count(stream) or num_frames
        variable_rate = _mp4_variable_rate(stream)
    try:
        best = container.streams.best("video")
    except (av.error.FFmpegError, ValueError):
        best = None
    audio = container.streams.audio[0] if container.streams.audio else None
    bit_rate = stream.bit_rate if getattr(stream, "bit_rate", None) else (container.bit_rate or 0)
    return VideoMetadata(
        path=path,
        width=width,
        height=height,
        coded_width=coded_width,
        coded_height=coded_height,
        rotation=rotation,
        fps=_container_rate(stream),
        num_frames=num_frames,
        duration=max(duration, 0.0),
        start_time=start_time,
        codec=context.name,
        has_audio=audio is not None,
        audio_sample_rate=int(audio.codec_context.sample_rate) if audio is not None else 0,
        audio_channels=int(audio.codec_context.channels) if audio is not None else 0,
        bit_rate=int(bit_rate or 0),
        size_bytes=size_bytes,
        mirrored=mirrored,
        variable_rate=variable_rate,
        truncated=bool(truncation),
        truncation=truncation,
        stream=video_ordinal(container, stream),
        video_streams=stream_infos(container, path, best.index if best is not None else None, matrices,
                                   known_rotation={stream.index: rotation},
                                   known_frames={stream.index: num_frames}),
    )


def with_index(metadata: VideoMetadata, index: FrameIndex) -> VideoMetadata:
    """``metadata`` with the frame count, and the rate and duration where the container's are missing or
    disagree with the frame timestamps, taken from ``index``."""
    seconds = index.frame_seconds()
    count = len(seconds)
    end = index.end_pts * float(index.time_base)
    measured_duration = max(end - float(seconds[0]), 0.0)
    measured_fps = (count - 1) / (seconds[-1] - seconds[0]) if count > 1 and seconds[-1] > seconds[0] else 0.0
    fps = metadata.fps
    if measured_fps > 0 and (fps <= 0 or abs(fps - measured_fps) > _RATE_TOLERANCE * measured_fps):
        fps = measured_fps
    duration = metadata.duration
    period = 1.0 / fps if fps > 0 else 0.0
    if measured_duration > 0 and (duration <= 0 or abs(duration - measured_duration) >
                                  max(2 * period, 0.05 * measured_duration)):
        duration = measured_duration
    truncation = metadata.truncation or index.truncated
    return replace(
        metadata, num_frames=count, fps=fps, duration=duration, start_time=float(seconds[0]),
        variable_rate=_gaps_vary(np.diff(index.frame_pts)), truncated=bool(truncation), truncation=truncation,
    )


def probe(path: str | os.PathLike, *, count_frames: bool = False, stream: int | None = None) -> VideoMetadata:
    """The metadata of the video at ``path``, read from the container.

    ``stream``: which video stream (None: the one FFmpeg picks by default; an int counts video streams only);
    ``metadata.video_streams`` lists them all. The frame count comes from the container's index (mp4) or,
    for every other container (WebM, MPEG-TS, FLV, AVI) or with ``count_frames=True``, from the packets
    (for VP8/VP9/AV1 their headers say which frames are shown; where packets and frames do not map one to one
    the stream is decoded once). The rate and duration come from the frame timestamps when the container's are
    missing or disagree with them. The orientation comes from the mp4/mov track header; other containers
    (WebM, MKV) have one frame decoded to learn it.

    A file that stops early (a cut-off download) probes as ``truncated=True`` with the frames before the cut
    counted; one whose index cannot be read at all raises. Raises a ``VideoError`` subclass naming the path and
    the reason when the file is missing, empty, not media, or has no video stream.
    """
    path = os.fspath(path)
    size_bytes = check_file(path)
    container = open_input(path)
    try:
        with av.logging.Capture(local=True):  # problems are raised as VideoErrors, not printed by FFmpeg
            chosen = video_stream(container, path, stream)
            metadata = metadata_from_container(container, chosen, path, size_bytes)
            # Only the mp4 index is an exact frame count; other containers' counts (AVI's, which counts empty
            # chunks) are checked against the packets.
            if count_frames or metadata.num_frames <= 0 or metadata.truncated or not looks_like_iso_media(path):
                index = build_frame_index(container, chosen, path, size_bytes)
                metadata = with_index(metadata, index)
                if count_frames:
                    best = next((info.stream_index for info in metadata.video_streams if info.best), None)
                    metadata = replace(metadata, video_streams=stream_infos(
                        container, path, best, mp4_display_matrices(path), count_frames=True,
                        known_rotation={chosen.index: metadata.rotation}))
            return metadata
    finally:
        container.close()
