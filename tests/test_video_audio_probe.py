"""Audio extraction, probe metadata, `pmv data probe`, and the test-media helpers themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from media import chirp, make_video, read_index, render_frame
from pmv.cli.main import main
from pmv.video import FrameIndexError, VideoReader, probe


@pytest.fixture(scope="module")
def tone_video(tmp_path_factory):
    # A 440 Hz stereo tone at 44.1 kHz; the video starts 0.5 s after the audio.
    path = tmp_path_factory.mktemp("audio") / "tone.mp4"
    return make_video(path, num_frames=60, height=32, width=32, audio=True, audio_frequency=440.0,
                      start_time=0.5, gop=30)


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * sample_rate / len(samples))


@pytest.mark.parametrize("sample_rate", [16000, 22050])
def test_audio_is_the_tone_resampled_to_mono(tone_video, sample_rate):
    with VideoReader(tone_video) as reader:
        assert reader.metadata.has_audio
        waveform = reader.get_audio(0.6, 1.6, sample_rate=sample_rate)
    assert waveform.dtype == torch.float32 and waveform.shape == (sample_rate,)
    samples = waveform.numpy()
    assert dominant_frequency(samples, sample_rate) == pytest.approx(440.0, abs=2.0)
    # Amplitude 0.5 on both channels: averaged to mono it stays 0.5, rms 0.5 / sqrt(2).
    assert float(np.sqrt(np.mean(samples**2))) == pytest.approx(0.5 / np.sqrt(2), rel=0.03)
    # In phase with the tone written at time t: sin(2 pi f t) from the start of the range.
    expected = 0.5 * np.sin(2 * np.pi * 440.0 * (0.6 + np.arange(len(samples)) / sample_rate))
    assert float(np.corrcoef(samples, expected)[0, 1]) > 0.98


def test_audio_range_past_the_end_is_zero_padded(tone_video):
    with VideoReader(tone_video) as reader:
        end = 0.5 + 2.0  # audio lasts as long as the video: until 2.5 s
        waveform = reader.get_audio(end - 0.5, end + 0.5, sample_rate=8000).numpy()
        assert waveform.shape == (8000,)
        assert np.abs(waveform[:3900]).max() > 0.4 and np.abs(waveform[4100:]).max() == 0.0
        with pytest.raises(FrameIndexError):
            reader.get_audio(1.0, 0.5)
        # Audio and frames can be read in any order from one reader.
        assert read_index(reader.get_frames([59])[0].numpy()) == 59
        assert reader.get_audio(0.0, 0.25, sample_rate=16000).shape == (4000,)


def test_probe_reads_metadata_without_decoding(tone_video):
    meta = probe(tone_video)
    assert (meta.width, meta.height, meta.rotation) == (32, 32, 0)
    assert meta.fps == pytest.approx(30.0) and meta.num_frames == 60
    assert meta.duration == pytest.approx(2.0, abs=0.04) and meta.start_time == pytest.approx(0.5)
    assert meta.codec == "h264" and meta.has_audio
    assert (meta.audio_sample_rate, meta.audio_channels) == (44100, 2)
    assert meta.size_bytes == tone_video.stat().st_size and meta.orientation == "square"


def test_cli_probe_json_and_table(tmp_path, tone_video, capsys):
    portrait = make_video(tmp_path / "phone.mp4", num_frames=12, height=64, width=36, rotation=-90)
    missing = tmp_path / "missing.mp4"
    assert main(["data", "probe", str(portrait), str(tone_video), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in records] == [str(portrait), str(tone_video)]
    assert records[0]["height"] == 64 and records[0]["width"] == 36 and records[0]["rotation"] == 270
    assert records[0]["orientation"] == "portrait" and records[0]["num_frames"] == 12
    assert records[1]["has_audio"] is True
    # A table; a file that cannot be probed is reported and makes the exit status 1.
    assert main(["data", "probe", str(portrait), str(missing)]) == 1
    captured = capsys.readouterr()
    assert "64x36" in captured.out and "portrait" in captured.out
    assert "missing.mp4" in captured.err and "no such file" in captured.err
    assert main(["data", "probe", str(missing), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)[0]["error_type"] == "VideoNotFoundError"


def test_media_index_survives_encoding_and_rejects_a_turned_frame():
    for index in [0, 1, 2, 1234, 4095]:
        picture = render_frame(index, 64, 48)
        assert read_index(picture) == index
        for turned in (np.rot90(picture, 1), np.rot90(picture, 2), picture[::-1]):
            with pytest.raises(ValueError):
                read_index(np.ascontiguousarray(turned))
    with pytest.raises(ValueError):
        read_index(np.full((64, 48, 3), 128, dtype=np.uint8))


# -- what get_audio returns: priming dropped, continuous decode matched, gaps in place ----------------------------
def _best_lag(got: np.ndarray, truth: np.ndarray, max_lag: int) -> tuple[int, float]:
    """The shift (samples) of ``truth`` (which has ``max_lag`` extra samples at each end) that best matches
    ``got``, and the correlation there."""
    scores = []
    for lag in range(-max_lag, max_lag + 1):
        window = truth[max_lag + lag : max_lag + lag + len(got)]
        scores.append(float(np.corrcoef(got, window)[0, 1]))
    best = int(np.argmax(scores))
    return best - max_lag, scores[best]


def _continuous_decode(path, sample_rate: int = 16000) -> tuple[float, np.ndarray]:
    """(time of the first sample, samples) of one uninterrupted PyAV decode of the whole audio track, resampled
    by one resampler and averaged to mono: what FFmpeg outputs for it."""
    import av

    chunks, first, resampler = [], None, None
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            if first is None:
                first = float(frame.time)
                resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=sample_rate)
            chunks += [c.to_ndarray().mean(axis=0) for c in resampler.resample(frame)]
        chunks += [c.to_ndarray().mean(axis=0) for c in resampler.resample(None)]
    return first, np.concatenate(chunks)


SR, MAX_LAG = 16000, 160  # search +-10 ms; the result must be within 1 ms (16 samples)


@pytest.mark.parametrize("codec,suffix,rate", [("aac", "mp4", 44100), ("libopus", "webm", 48000)])
def test_audio_matches_a_continuous_decode_and_the_written_sound_within_1_ms(tmp_path, codec, suffix, rate):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"PyAV's FFmpeg has no {codec} encoder")
    video_codec = "libvpx-vp9" if suffix == "webm" else "libx264"
    path = make_video(tmp_path / f"chirp.{suffix}", num_frames=90, height=32, width=32, audio=True, gop=30,
                      codec=video_codec, bframes=0, audio_codec=codec, audio_signal="chirp",
                      audio_sample_rate=rate, audio_channels=2)
    first, continuous = _continuous_decode(path)
    with VideoReader(path) as reader:
        for start, end in [(0.0, 0.4), (0.35, 1.35), (1.9, 2.6)]:
            got = reader.get_audio(start, end, sample_rate=SR).numpy()
            assert got.shape == (int(round((end - start) * SR)),)
            times = start - MAX_LAG / SR + np.arange(len(got) + 2 * MAX_LAG) / SR
            # The sound written at time t comes back at time t: the codec's priming is dropped.
            lag, corr = _best_lag(got[800:], chirp(times[800:]), MAX_LAG)  # past the first 50 ms of a file
            assert abs(lag) <= SR // 1000 and corr > 0.95, (start, lag, corr)
            # And it is what a continuous decode of the whole track holds at those times.
            at = int(round((start - first) * SR)) - MAX_LAG
            padded = np.concatenate([np.zeros(max(-at, 0), np.float32), continuous[max(at, 0):],
                                     np.zeros(len(got) + 2 * MAX_LAG, np.float32)])
            lag, corr = _best_lag(got[800:], padded[800:], MAX_LAG)
            assert abs(lag) <= SR // 1000 and corr > 0.99, (start, lag, corr)


def test_audio_timestamp_gap_is_silence_and_later_sound_keeps_its_time(tmp_path):
    path = make_video(tmp_path / "gap.mp4", num_frames=75, height=32, width=32, audio=True, gop=25,
                      audio_signal="chirp", audio_sample_rate=32000, audio_channels=1, audio_gap=(1.0, 0.5))
    import av

    with av.open(str(path)) as container:
        times = [float(p.pts * p.time_base) for p in container.demux(audio=0) if p.size]
        assert max(np.diff(times)) > 0.4  # the timestamps jump
    with VideoReader(path) as reader:
        got = reader.get_audio(0.5, 2.5, sample_rate=SR).numpy()
    at = lambda seconds: int(round((seconds - 0.5) * SR))  # noqa: E731
    gap_start = 1024 * int(1.0 * 32000 // 1024) / 32000  # the gap starts at a whole encoder frame
    assert np.abs(got[at(gap_start + 0.03) : at(1.47)]).max() < 0.02  # silence where nothing was recorded
    before, after = slice(at(0.55), at(gap_start - 0.03)), slice(at(1.56), at(2.45))
    for part in (before, after):
        start_s = 0.5 + part.start / SR
        truth = chirp(start_s - MAX_LAG / SR + np.arange(part.stop - part.start + 2 * MAX_LAG) / SR)
        lag, corr = _best_lag(got[part], truth, MAX_LAG)
        assert abs(lag) <= SR // 1000 and corr > 0.95, (part, lag, corr)


def test_cli_probe_lists_video_streams_mirroring_and_truncation(tmp_path, capsys):
    from media import make_video_streams, truncate

    streams = make_video_streams(tmp_path / "two.mp4", [{"num_frames": 1, "height": 96, "width": 64},
                                                        {"num_frames": 10, "height": 64, "width": 48}], default=1)
    selfie = make_video(tmp_path / "selfie.mp4", num_frames=6, height=64, width=48, bframes=0,
                        display_matrix=[0, 1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30],
                        coded_picture=lambda p: p.transpose(1, 0, 2))
    cut = truncate(make_video(tmp_path / "whole.mkv", num_frames=40, height=32, width=32),
                   tmp_path / "cut.mkv", keep_fraction=0.5)
    assert main(["data", "probe", str(streams), str(selfie), str(cut)]) == 0
    captured = capsys.readouterr()
    assert "1 of 2" in captured.out and "270 mirrored" in captured.out and "TRUNCATED" in captured.out
    assert "0: 96x64 h264, 1 frames" in captured.out and "1: 64x48 h264, 10 frames" in captured.out
    assert "read by default" in captured.out and "cut.mkv is truncated" in captured.err
    assert main(["data", "probe", str(streams), "--stream", "0", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    assert (record["stream"], record["height"], record["num_frames"]) == (0, 96, 1)
    assert [s["best"] for s in record["video_streams"]] == [False, True]
