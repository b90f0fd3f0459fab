"""Typed errors for reading media. Each names the path and the reason."""

from __future__ import annotations

import os

from pmv.errors import PmvError


class VideoError(PmvError):
    """A video cannot be read as asked. ``path`` and ``reason`` are kept for reports."""

    def __init__(self, path: str | os.PathLike, reason: str, hint: str = ""):
        self.path = str(path)
        self.reason = reason
        message = f"{self.path}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)

    def __reduce__(self):  # keep the fields when sent between data-loader workers
        return (type(self), (self.path, self.reason))


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The file does not exist."""


class EmptyVideoError(VideoError):
    """The file has zero bytes."""


class NotAVideoError(VideoError):
    """The file is not a media container FFmpeg can open."""


class NoVideoStreamError(VideoError):
    """The container opens but holds no video stream (an audio-only file, say)."""


class NoAudioStreamError(VideoError):
    """Audio was asked for but the file has no audio stream."""


class CorruptVideoError(VideoError):
    """The data is truncated or damaged: frames that should exist cannot be decoded."""


class FrameIndexError(VideoError, IndexError):
    """A frame index or time lies outside the video."""


class NonIntegerIndexError(VideoError, ValueError):
    """Frame indices were not integers (times go to ``VideoReader.get_frames_played_at``)."""
