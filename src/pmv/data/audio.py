"""Log-mel spectrograms of a clip's audio, as the seed's AVSlowFast pipeline makes them (seed_code.md 4).

Power spectrogram with a Hann window, ``n_fft = win_length = sample_rate * win_ms / 1000`` (512 at 16 kHz and
32 ms), hop ``sample_rate * step_ms / 1000`` (256), no centring; HTK-scale mel filters with Slaney area
normalisation (librosa's ``htk=True`` defaults) from 0 Hz to Nyquist; ``log(S + 1e-8)``; rows are time. The rows
of a clip are then picked at ``audio_frames`` evenly spaced positions (the seed's linspace indexing) and
normalised with ``(x - logmel_mean) / logmel_std``. Plain torch, no librosa.
"""

from __future__ import annotations

import functools
import math

import torch

from pmv.config.schema import DataConfig

LOG_FLOOR = 1e-8


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular HTK-mel filters, ``n_mels x (n_fft // 2 + 1)``, each scaled to unit area (Slaney norm)."""
    fft_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.linspace(0.0, float(_hz_to_mel(torch.tensor(sample_rate / 2.0))), n_mels + 2, dtype=torch.float64)
    hz_edges = _mel_to_hz(mel_edges)
    widths = hz_edges[1:] - hz_edges[:-1]
    ramps = hz_edges.view(-1, 1) - fft_hz.view(1, -1)
    lower = -ramps[:-2] / widths[:-1].view(-1, 1)
    upper = ramps[2:] / widths[1:].view(-1, 1)
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2])).view(-1, 1)
    return weights.float()


def log_mel(waveform: torch.Tensor, sample_rate: int, win_ms: float, step_ms: float, n_mels: int) -> torch.Tensor:
    """Mono float waveform -> log-mel ``frames x n_mels`` (at least one frame: short input is zero-padded)."""
    n_fft = int(round(sample_rate * win_ms / 1000.0))
    hop = max(1, int(round(sample_rate * step_ms / 1000.0)))
    waveform = waveform.float().reshape(-1)
    if waveform.numel() < n_fft:
        waveform = torch.nn.functional.pad(waveform, (0, n_fft - waveform.numel()))
    window = torch.hann_window(n_fft, periodic=True)
    spectrum = torch.stft(waveform, n_fft, hop_length=hop, win_length=n_fft, window=window, center=False,
                          return_complex=True)
    power = spectrum.abs().pow(2)  # (n_fft // 2 + 1) x frames
    mel = mel_filterbank(sample_rate, n_fft, n_mels) @ power
    return torch.log(mel + LOG_FLOOR).transpose(0, 1).contiguous()


def clip_log_mel(waveform: torch.Tensor, data: DataConfig) -> torch.Tensor:
    """A clip's audio -> normalised log-mel ``1 x audio_frames x audio_mel_bins`` (time rows, frequency columns)."""
    spec = log_mel(waveform, data.audio_sample_rate, data.audio_win_ms, data.audio_step_ms, data.audio_mel_bins)
    rows = torch.linspace(0, spec.shape[0] - 1, data.audio_frames).long()
    spec = spec.index_select(0, rows)
    return ((spec - data.logmel_mean) / data.logmel_std).unsqueeze(0)


def silent_log_mel(data: DataConfig) -> torch.Tensor:
    """The spectrogram of silence (for a video without an audio track)."""
    value = (math.log(LOG_FLOOR) - data.logmel_mean) / data.logmel_std
    return torch.full((1, data.audio_frames, data.audio_mel_bins), value)


def misaligned_start(start_s: float, length_s: float, duration_s: float, gap_s: float,
                     generator: torch.Generator | None = None) -> float | None:
    """Start of an AV-sync negative window: uniform over ``[0, start - gap) U [start + gap, duration - length]``
    (the seed's rule, in seconds); None when the video leaves no such room."""
    last = max(0.0, duration_s - length_s)
    before = max(0.0, min(start_s - gap_s, last))
    after_start = start_s + gap_s
    after = max(0.0, last - after_start)
    if before + after <= 0.0:
        return None
    draw = float(torch.rand((), generator=generator)) * (before + after)
    return draw if draw < before else after_start + (draw - before)


def mix_easy_negatives(audio: torch.Tensor, easy_fraction: float) -> torch.Tensor:
    """Replace the negatives (channel 1) of the first ``max(1, int(easy_fraction * N))`` rows of a batch
    ``N x 2 x T x F`` by the positive audio of the next video (a cyclic shift): easy negatives, as the seed mixes
    them; the other rows keep their hard negative (the same video, shifted in time)."""
    if audio.ndim != 4 or audio.shape[1] != 2 or audio.shape[0] < 2:
        return audio
    count = min(audio.shape[0], max(1, int(easy_fraction * audio.shape[0])))
    mixed = audio.clone()
    mixed[:count, 1] = torch.roll(audio[:, 0], shifts=-1, dims=0)[:count]
    return mixed
