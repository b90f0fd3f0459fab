"""The audio track of a video as a mono float32 waveform at a chosen sample rate (PyAV's resampler)."""

from __future__ import annotations

import math

import av
import numpy as np
import torch

from pmv.video._pyav import REDOWNLOAD_HINT
from pmv.video.errors import CorruptVideoError, FrameIndexError, NoAudioStreamError

# Decode from a little before the start so the resampler's filter has settled by the first wanted sample.
_PREROLL_S = 0.05


def read_audio(container, path: str, start_s: float, end_s: float, sample_rate: int = 16000) -> torch.Tensor:
    """Mono float32 samples of ``[start_s, end_s)`` (seconds on the container's clock, the one video frame
    times use), resampled to ``sample_rate``; ``round((end_s - start_s) * sample_rate)`` samples exactly.

    Channels are averaged to mono. Parts of the range where the track has no samples
    (before it starts or after it ends) are zeros. Raises NoAudioStreamError when the file has no audio.
    """
    if not container.streams.audio:
        raise NoAudioStreamError(path, "the file has no audio stream", "use a video with sound, or skip audio")
    if not (math.isfinite(start_s) and math.isfinite(end_s)) or start_s < 0 or end_s <= start_s:
        raise FrameIndexError(path, f"audio range {start_s} s to {end_s} s is invalid (need 0 <= start < end)")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    stream = container.streams.audio[0]
    wanted = int(round((end_s - start_s) * sample_rate))
    resampler = None
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    seek_s = max(start_s - _PREROLL_S, 0.0)
    try:
        with av.logging.Capture(local=True):  # damage is raised below, not printed by FFmpeg
            container.seek(int(seek_s / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                if first_time is None:
                    first_time = float(frame.time)
                if resampler is None:
                    # Keep the channels through resampling and average them after, as the seed's AVSlowFast
                    # does (FFmpeg's own down-mix scales a stereo pair by 1/sqrt(2) each instead).
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=sample_rate)
                for converted in resampler.resample(frame):
                    chunks.append(converted.to_ndarray().mean(axis=0))
                if frame.time + frame.samples / frame.sample_rate >= end_s + _PREROLL_S:
                    break
            for converted in resampler.resample(None) if resampler is not None else []:
                chunks.append(converted.to_ndarray().mean(axis=0))
    except av.error.FFmpegError as err:
        raise CorruptVideoError(path, f"the audio data cannot be decoded: {err}", REDOWNLOAD_HINT) from None
    out = np.zeros(wanted, dtype=np.float32)
    if first_time is None or not chunks:
        return torch.from_numpy(out)
    decoded = np.concatenate(chunks).astype(np.float32, copy=False)
    # Sample k of ``decoded`` sits at first_time + k / sample_rate; copy the overlap with the wanted range.
    offset = int(round((start_s - first_time) * sample_rate))
    source_start, target_start = max(offset, 0), max(-offset, 0)
    count = min(len(decoded) - source_start, wanted - target_start)
    if count > 0:
        out[target_start : target_start + count] = decoded[source_start : source_start + count]
    return torch.from_numpy(out)
