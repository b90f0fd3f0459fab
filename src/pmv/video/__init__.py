"""Reading media: exact frame access, rotation, audio, and metadata without decoding.

``probe(path)`` reads a video's metadata from its container; ``VideoReader`` returns exact frames by index or
time. Every failure a user can cause raises a ``VideoError`` subclass that names the path and the reason.
"""

from pmv.video.errors import (
    CorruptVideoError,
    EmptyVideoError,
    FrameIndexError,
    NoAudioStreamError,
    NonIntegerIndexError,
    NotAVideoError,
    NoVideoStreamError,
    VideoError,
    VideoNotFoundError,
)
from pmv.video._pyav import open_input as open_container, video_stream
from pmv.video.metadata import VideoMetadata, VideoStreamInfo
from pmv.video.probe import probe
from pmv.video.reader import VideoReader, read_frames

__all__ = [
    "CorruptVideoError",
    "EmptyVideoError",
    "FrameIndexError",
    "NoAudioStreamError",
    "NonIntegerIndexError",
    "NoVideoStreamError",
    "NotAVideoError",
    "VideoError",
    "VideoMetadata",
    "VideoNotFoundError",
    "VideoReader",
    "VideoStreamInfo",
    "open_container",
    "probe",
    "read_frames",
    "video_stream",
]
