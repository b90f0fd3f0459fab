"""The audio track of a video as a mono float32 waveform at a chosen sample rate (PyAV's resampler).

What ``read_audio`` returns, exactly: sample ``k`` is the track at time ``start_s + k / sample_rate`` on the
container's clock (the one video frame times use), where the track is what a continuous FFmpeg decode
outputs, resampled:

* codec priming is dropped as FFmpeg drops it (the AAC encoder delay an mp4 edit list or iTunSMPB declares,
  Opus pre-skip), so a sound written at time t comes back at time t;
* each decoded block of samples sits at its own timestamp. Where the timestamps jump forward (a recorder that
  dropped audio, a stream spliced together) the gap is silence, as players keep audio in sync with video; a
  plain ``ffmpeg -i in.mp4 out.wav`` would instead close the gap and shift the rest earlier;
* before the track starts and after it ends: zeros.
"""

from __future__ import annotations

import math

import av
import numpy as np
import torch

from pmv.video._pyav import REDOWNLOAD_HINT
from pmv.video.errors import CorruptVideoError, FrameIndexError, NoAudioStreamError

# Decode from a little before the start so the decoder's overlap (AAC, Opus) and the resampler's filter have
# settled by the first wanted sample.
_PREROLL_S = 0.1
# A block that starts this much later than the previous one ended opens a gap (less is rounding of timestamps).
_GAP_S = 0.002


class _Segment:
    """Resampled samples that are continuous in time, starting at ``start`` seconds."""

    def __init__(self, start: float, layout: str, sample_rate: int):
        self.start = start
        # Keep the channels through resampling and average them after, as the seed's AVSlowFast does
        # (FFmpeg's own down-mix scales a stereo pair by 1/sqrt(2) each instead).
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
        self.chunks: list[np.ndarray] = []

    def add(self, frame) -> None:
        for converted in self.resampler.resample(frame):
            self.chunks.append(converted.to_ndarray().mean(axis=0))

    def finish(self) -> np.ndarray:
        self.add(None)
        return np.concatenate(self.chunks).astype(np.float32, copy=False) if self.chunks else np.zeros(0, np.float32)


def read_audio(container, path: str, start_s: float, end_s: float, sample_rate: int = 16000) -> torch.Tensor:
    """Mono float32 samples of ``[start_s, end_s)`` (see the module docstring), resampled to ``sample_rate``;
    ``round((end_s - start_s) * sample_rate)`` samples exactly. Channels are averaged to mono. Raises
    NoAudioStreamError when the file has no audio."""
    if not container.streams.audio:
        raise NoAudioStreamError(path, "the file has no audio stream", "use a video with sound, or skip audio")
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0 or end_s <= start_s:
        raise FrameIndexError(path, f"audio range {start_s} s to {end_s} s is invalid (need 0 <= start < end)")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    stream = container.streams.audio[0]
    wanted = int(round((end_s - start_s) * sample_rate))
    segments: list[tuple[float, np.ndarray]] = []
    segment: _Segment | None = None
    expected_next: float | None = None
    seek_s = max(start_s - _PREROLL_S, 0.0)
    try:
        with av.logging.Capture(local=True):  # damage is raised below, not printed by FFmpeg
            stream.codec_context.flush_buffers()
            container.seek(int(seek_s / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None or not frame.samples:
                    continue
                time = float(frame.time)
                if segment is None or (expected_next is not None and abs(time - expected_next) > _GAP_S):
                    if segment is not None:
                        segments.append((segment.start, segment.finish()))
                    segment = _Segment(time, frame.layout.name, sample_rate)
                segment.add(frame)
                expected_next = time + frame.samples / frame.sample_rate
                if expected_next >= end_s + _PREROLL_S:
                    break
            if segment is not None:
                segments.append((segment.start, segment.finish()))
    except av.error.FFmpegError as err:
        raise CorruptVideoError(path, f"the audio data cannot be decoded: {err}", REDOWNLOAD_HINT) from None
    out = np.zeros(wanted, dtype=np.float32)
    for first_time, decoded in segments:
        # Sample k of ``decoded`` sits at first_time + k / sample_rate; copy the overlap with the wanted range.
        offset = int(round((start_s - first_time) * sample_rate))
        source_start, target_start = max(offset, 0), max(-offset, 0)
        count = min(len(decoded) - source_start, wanted - target_start)
        if count > 0:
            out[target_start : target_start + count] = decoded[source_start : source_start + count]
    return torch.from_numpy(out)
