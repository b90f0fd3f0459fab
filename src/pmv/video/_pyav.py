"""Opening media with PyAV and turning its failures into typed VideoErrors."""

from __future__ import annotations

import os
import stat as stat_module
import struct

import av

from pmv.video.errors import (
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    NoVideoStreamError,
    VideoError,
    VideoNotFoundError,
)

REDOWNLOAD_HINT = "download or copy the file again"


def check_file(path: str) -> int:
    """The size of ``path`` in bytes; raises if it is missing, not a regular file, or empty."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise VideoNotFoundError(path, "no such file", "check the path and the data root") from None
    except OSError as err:
        raise VideoError(path, f"cannot read the file: {err.strerror or err}") from None
    if os.path.isdir(path):
        raise NotAVideoError(path, "is a directory, not a video file")
    if not stat_module.S_ISREG(stat.st_mode):
        # A pipe or device would block FFmpeg's probe forever.
        raise NotAVideoError(path, "is not a regular file (a pipe, socket or device)")
    if stat.st_size == 0:
        raise EmptyVideoError(path, "the file is empty (0 bytes)", REDOWNLOAD_HINT)
    return stat.st_size


def looks_like_iso_media(path: str) -> bool:
    # mp4/mov/m4a files start with an 'ftyp' (or older 'moov'/'mdat'/'wide') box.
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        return False
    return len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def open_input(path: str):
    """Open ``path`` for reading with PyAV; the caller closes the returned container."""
    check_file(path)
    try:
        with av.logging.Capture(local=True):  # the error raised below says it; keep stderr quiet
            return av.open(path, mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError:
        raise VideoNotFoundError(path, "no such file", "check the path and the data root") from None
    except (av.error.InvalidDataError, av.error.EOFError, av.error.FFmpegError, UnicodeDecodeError) as err:
        if looks_like_iso_media(path):
            # An mp4 whose index (moov box) is cut off or damaged fails at open.
            raise CorruptVideoError(
                path, f"the mp4 cannot be opened, its index (moov box) is missing or damaged: {err}",
                "the file is probably truncated; " + REDOWNLOAD_HINT,
            ) from None
        raise NotAVideoError(path, f"not a media file FFmpeg can read: {err}") from None


def video_stream(container, path: str, stream: int | None = None):
    """The video stream of ``container`` to read (raises NoVideoStreamError for audio-only files).

    ``stream=None`` picks the one FFmpeg's ``av_find_best_stream`` picks (what ffmpeg, players and torchcodec
    use); an integer picks that video stream, counting video streams only (0 is the first).
    """
    videos = container.streams.video
    if not videos:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise NoVideoStreamError(path, f"the file has no video stream (it holds: {', '.join(kinds)})")
    if stream is None:
        try:
            best = container.streams.best("video")
        except (av.error.FFmpegError, ValueError):
            best = None
        return best if best is not None else videos[0]
    if isinstance(stream, bool) or not isinstance(stream, int) or not 0 <= stream < len(videos):
        raise NoVideoStreamError(
            path, f"there is no video stream {stream!r}: the file has {len(videos)} video stream(s)",
            f"pass stream=None or 0 to {len(videos) - 1}; probe(path).video_streams lists them",
        )
    return videos[stream]


def video_ordinal(container, stream) -> int:
    """The position of ``stream`` among the container's video streams (what ``stream=`` takes)."""
    for ordinal, candidate in enumerate(container.streams.video):
        if candidate.index == stream.index:
            return ordinal
    return 0


def _iter_boxes(handle, start: int, end: int):
    """(type, payload_start, box_end) for the ISO-BMFF boxes between byte offsets start and end."""
    offset = start
    while offset + 8 <= end:
        handle.seek(offset)
        header = handle.read(8)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header)
        payload = offset + 8
        if size == 1:
            large = handle.read(8)
            if len(large) < 8:
                return
            size = struct.unpack(">Q", large)[0]
            payload = offset + 16
        elif size == 0:
            size = end - offset
        if size < payload - offset:
            return
        yield kind, payload, min(offset + size, end)
        offset += size


def _read_matrix(handle, offset: int) -> tuple[int, ...] | None:
    handle.seek(offset)
    raw = handle.read(36)
    if len(raw) < 36:
        return None
    return struct.unpack(">9i", raw)


def _tkhd_matrix(handle, payload: int) -> tuple[int, ...] | None:
    handle.seek(payload)
    version = handle.read(1)
    if not version:
        return None
    # tkhd: version/flags, times and ids (v0: 32-bit, v1: 64-bit), then reserved/layer/volume, then the matrix.
    return _read_matrix(handle, payload + (4 + 8 + 4 + 4 + 4 if version[0] == 0 else 4 + 16 + 4 + 4 + 8)
                        + 8 + 2 + 2 + 2 + 2)


def _mvhd_matrix(handle, payload: int) -> tuple[int, ...] | None:
    handle.seek(payload)
    version = handle.read(1)
    if not version:
        return None
    # mvhd: version/flags, times, timescale, duration (v0: 32-bit, v1: 64-bit), rate, volume, reserved.
    return _read_matrix(handle, payload + (4 + 4 + 4 + 4 + 4 if version[0] == 0 else 4 + 8 + 8 + 4 + 8)
                        + 4 + 2 + 10)


IDENTITY_MATRIX = (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)


def _combine(track: tuple[int, ...], movie: tuple[int, ...] | None) -> tuple[int, ...]:
    # FFmpeg's mov demuxer multiplies the track matrix by the movie matrix (16.16 fixed point in the first two
    # columns, 2.30 in the third), as here.
    if movie is None or movie == IDENTITY_MATRIX:
        return track
    shifts = (16, 16, 30)
    return tuple(
        sum((track[3 * row + e] * movie[3 * e + col]) >> shifts[e] for e in range(3))
        for row in range(3) for col in range(3)
    )


def mp4_display_matrices(path: str) -> list[tuple[int, ...] | None] | None:
    """The display matrix of every track of an mp4/mov, in track order (FFmpeg's stream order), without
    decoding; None when the file is not ISO media or has no movie box."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            for kind, payload, end in _iter_boxes(handle, 0, size):
                if kind != b"moov":
                    continue
                movie, tracks = None, []
                for sub_kind, sub_payload, sub_end in _iter_boxes(handle, payload, end):
                    if sub_kind == b"mvhd":
                        movie = _mvhd_matrix(handle, sub_payload)
                    elif sub_kind == b"trak":
                        matrix = None
                        for box, box_payload, _ in _iter_boxes(handle, sub_payload, sub_end):
                            if box == b"tkhd":
                                matrix = _tkhd_matrix(handle, box_payload)
                        tracks.append(matrix)
                return [_combine(matrix, movie) if matrix is not None else None for matrix in tracks]
    except OSError:
        return None
    return None
