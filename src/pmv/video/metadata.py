"""What a video is, read from its container without decoding frames."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class VideoStreamInfo:
    """One video stream of a file, as ``probe`` lists them so a user can pick one with ``stream=``."""

    index: int  # what ``VideoReader(path, stream=index)`` takes: position among the video streams
    stream_index: int  # position among all streams of the file (FFmpeg's stream index)
    width: int  # display width, after the display matrix is applied
    height: int
    codec: str
    num_frames: int  # from the container's index or count (0 when unknown)
    fps: float
    best: bool  # the stream FFmpeg picks by default (``av_find_best_stream``), which stream=None reads
    attached_picture: bool = False  # a cover image or thumbnail, not a video


@dataclass(frozen=True)
class VideoMetadata:
    path: str
    width: int  # display width, after rotation is applied
    height: int  # display height, after rotation is applied
    coded_width: int  # as stored in the stream
    coded_height: int
    rotation: int  # degrees counter-clockwise to turn the coded picture upright: 0, 90, 180 or 270
    fps: float  # average frame rate (from the frame timestamps when the container's is missing or wrong)
    num_frames: int  # exact count of decodable frames where known, else estimated from duration x fps
    duration: float  # seconds, of the video stream (from the frame timestamps when the container has none)
    start_time: float  # seconds, presentation time of the first video frame
    codec: str
    has_audio: bool
    audio_sample_rate: int = 0
    audio_channels: int = 0
    bit_rate: int = 0
    size_bytes: int = 0
    mirrored: bool = False  # after the rotation, flip left to right (a display matrix with a reflection)
    variable_rate: bool = False  # the gaps between frame timestamps vary (known once the frames are indexed)
    truncated: bool = False  # the file stops before its end: only the frames before the cut are counted
    truncation: str = ""  # what shows it is truncated
    stream: int = 0  # which video stream this describes (``VideoStreamInfo.index``)
    video_streams: tuple[VideoStreamInfo, ...] = ()  # every video stream of the file

    @property
    def orientation(self) -> str:
        if self.height > self.width:
            return "portrait"
        if self.width > self.height:
            return "landscape"
        return "square"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["orientation"] = self.orientation
        return out
