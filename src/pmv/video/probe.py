"""Read what a video is (size, rotation, rate, frame count, audio) from its container, without decoding frames."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import av

from pmv.video._pyav import REDOWNLOAD_HINT, check_file, mp4_rotation, open_input, video_stream
from pmv.video.errors import CorruptVideoError
from pmv.video.metadata import VideoMetadata

logger = logging.getLogger(__name__)


def _seconds(value, time_base) -> float:
    return float(value * time_base) if value is not None and time_base is not None else 0.0


def count_packets(container, stream, path: str) -> int:
    """Count the frames of ``stream`` by demuxing its packets (reads the file, decodes nothing)."""
    count = 0
    try:
        for packet in container.demux(stream):
            if packet.size and not packet.is_discard:
                count += 1
    except av.error.FFmpegError as err:
        raise CorruptVideoError(path, f"the packets cannot be read after {count} frames: {err}") from None
    return count


def _check_data_present(container, path: str, size_bytes: int) -> None:
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
        raise CorruptVideoError(
            path, f"the file is truncated: its index points to frame data up to byte {data_end}, "
            f"but the file has {size_bytes} bytes", REDOWNLOAD_HINT,
        )


def _first_frame_rotation(path: str) -> int:
    # Containers without an mp4 track header (WebM, MKV): the rotation is known once a frame is decoded.
    container = open_input(path)
    try:
        for frame in container.decode(video=0):
            return int(frame.rotation) % 360
    except av.error.FFmpegError:
        return 0
    finally:
        container.close()
    return 0


def metadata_from_container(container, stream, path: str, size_bytes: int) -> VideoMetadata:
    """Metadata of ``stream`` in an open container; the frame count is the container's (0 when unknown)."""
    context = stream.codec_context
    time_base = stream.time_base
    rotation = mp4_rotation(path)
    is_iso_media = rotation is not None
    if rotation is None:
        rotation = _first_frame_rotation(path)
    coded_width, coded_height = context.width, context.height
    width, height = (coded_height, coded_width) if rotation in (90, 270) else (coded_width, coded_height)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    start_time = _seconds(stream.start_time, time_base)
    duration = _seconds(stream.duration, time_base)
    if not duration and container.duration:
        duration = container.duration / av.time_base - start_time
    _check_data_present(container, path, size_bytes)
    num_frames = max(int(stream.frames or 0), 0)
    if is_iso_media:
        # The mp4 index lists every sample and marks those an edit list hides (a trimmed start), which a
        # full decode skips. (Other containers' index entries are only seek points.)
        entries = stream.index_entries
        if len(entries):
            num_frames = sum(1 for entry in entries if not entry.is_discard)
    audio = container.streams.audio[0] if container.streams.audio else None
    bit_rate = stream.bit_rate if getattr(stream, "bit_rate", None) else (container.bit_rate or 0)
    return VideoMetadata(
        path=path,
        width=width,
        height=height,
        coded_width=coded_width,
        coded_height=coded_height,
        rotation=rotation,
        fps=fps,
        num_frames=num_frames,
        duration=duration,
        start_time=start_time,
        codec=context.name,
        has_audio=audio is not None,
        audio_sample_rate=int(audio.codec_context.sample_rate) if audio is not None else 0,
        audio_channels=int(audio.codec_context.channels) if audio is not None else 0,
        bit_rate=int(bit_rate or 0),
        size_bytes=size_bytes,
    )


def probe(path: str | os.PathLike, *, count_frames: bool = False) -> VideoMetadata:
    """The metadata of the video at ``path``, read from the container without decoding any frame.

    The frame count comes from the container's index (mp4) or, where the container does not store one (WebM,
    say) or ``count_frames=True``, from counting packets. Raises a ``VideoError`` subclass naming the path and
    the reason when the file is missing, empty, not media, has no video stream, or its index is cut off.
    The rotation comes from the mp4/mov track header; other containers (WebM, MKV) have one frame decoded
    to learn it.
    """
    path = os.fspath(path)
    size_bytes = check_file(path)
    container = open_input(path)
    try:
        with av.logging.Capture(local=True):  # problems are raised as VideoErrors, not printed by FFmpeg
            stream = video_stream(container, path)
            metadata = metadata_from_container(container, stream, path, size_bytes)
            if count_frames or metadata.num_frames <= 0:
                count = count_packets(container, stream, path)
                if count > 0:
                    metadata = replace(metadata, num_frames=count)
            return metadata
    finally:
        container.close()
