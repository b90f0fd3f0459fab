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


def _looks_like_iso_media(path: str) -> bool:
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
        if _looks_like_iso_media(path):
            # An mp4 whose index (moov box) is cut off or damaged fails at open.
            raise CorruptVideoError(
                path, f"the mp4 cannot be opened, its index (moov box) is missing or damaged: {err}",
                "the file is probably truncated; " + REDOWNLOAD_HINT,
            ) from None
        raise NotAVideoError(path, f"not a media file FFmpeg can read: {err}") from None


def video_stream(container, path: str):
    """The first video stream of ``container`` (raises NoVideoStreamError for audio-only files)."""
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams}) or ["no streams"]
        raise NoVideoStreamError(path, f"the file has no video stream (it holds: {', '.join(kinds)})")
    return container.streams.video[0]


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


def _tkhd_rotation(handle, payload: int) -> int | None:
    handle.seek(payload)
    version = handle.read(1)
    if not version:
        return None
    # tkhd: version/flags, times and ids (v0: 32-bit, v1: 64-bit), then reserved/layer/volume, then the matrix.
    matrix_offset = payload + (4 + 8 + 4 + 4 + 4 if version[0] == 0 else 4 + 16 + 4 + 4 + 8) + 8 + 2 + 2 + 2 + 2
    handle.seek(matrix_offset)
    raw = handle.read(36)
    if len(raw) < 36:
        return None
    a, b, _, c, d = struct.unpack(">iiiii", raw[:20])
    # The matrix maps coded to display coordinates; its rotation, read the way FFmpeg's display matrix is,
    # gives the counter-clockwise turn that makes the picture upright.
    turns = {(1, 0, 0, 1): 0, (0, 1, -1, 0): 270, (-1, 0, 0, -1): 180, (0, -1, 1, 0): 90}
    sign = lambda value: (value > 0) - (value < 0)  # noqa: E731
    return turns.get((sign(a), sign(b), sign(c), sign(d)))


def mp4_rotation(path: str) -> int | None:
    """The display rotation of the first video track of an mp4/mov, from its ``tkhd`` matrix, without decoding.

    Degrees counter-clockwise in 0/90/180/270, or None when the file is not ISO media or has no video track.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            for kind, payload, end in _iter_boxes(handle, 0, size):
                if kind != b"moov":
                    continue
                for trak_kind, trak_payload, trak_end in _iter_boxes(handle, payload, end):
                    if trak_kind != b"trak":
                        continue
                    rotation, is_video = None, False
                    for sub_kind, sub_payload, sub_end in _iter_boxes(handle, trak_payload, trak_end):
                        if sub_kind == b"tkhd":
                            rotation = _tkhd_rotation(handle, sub_payload)
                        elif sub_kind == b"mdia":
                            for mdia_kind, mdia_payload, _ in _iter_boxes(handle, sub_payload, sub_end):
                                if mdia_kind == b"hdlr":
                                    handle.seek(mdia_payload + 8)
                                    is_video = handle.read(4) == b"vide"
                    if is_video:
                        return rotation
                return None
    except OSError:
        return None
    return None
