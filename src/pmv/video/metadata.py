"""What a video is, read from its container without decoding frames."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class VideoMetadata:
    path: str
    width: int  # display width, after rotation is applied
    height: int  # display height, after rotation is applied
    coded_width: int  # as stored in the stream
    coded_height: int
    rotation: int  # degrees counter-clockwise to turn the coded picture upright: 0, 90, 180 or 270
    fps: float  # average frame rate
    num_frames: int  # exact count of decodable frames where known, else estimated from duration x fps
    duration: float  # seconds, of the video stream
    start_time: float  # seconds, presentation time of the first video frame
    codec: str
    has_audio: bool
    audio_sample_rate: int = 0
    audio_channels: int = 0
    bit_rate: int = 0
    size_bytes: int = 0

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
