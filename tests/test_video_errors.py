"""Every broken input raises a typed VideoError naming the path and the reason; no hang, no wrong frame."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from media import corrupt_middle, make_audio_only, make_video, read_index, truncate
from pmv.errors import PmvError
from pmv.video import (
    CorruptVideoError,
    EmptyVideoError,
    NoAudioStreamError,
    NotAVideoError,
    NoVideoStreamError,
    VideoError,
    VideoNotFoundError,
    VideoReader,
    probe,
)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    return {
        "tail_index": make_video(root / "tail.mp4", num_frames=90, height=64, width=48, gop=30,
                                 index_in_pixels=False),
        "faststart": make_video(root / "front.mp4", num_frames=90, height=64, width=48, gop=30,
                                faststart=True, index_in_pixels=False),
        "indexed": make_video(root / "indexed.mp4", num_frames=90, height=64, width=48, gop=30, bframes=3),
    }


def broken_files(good, root):
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 50)
    return {
        "missing": (root / "missing.mp4", VideoNotFoundError, "no such file"),
        "empty": (root / "empty.mp4", EmptyVideoError, "empty"),
        "not_media": (root / "text.mp4", NotAVideoError, "not a media file"),
        "audio_only": (make_audio_only(root / "audio.mp4"), NoVideoStreamError, "no video stream"),
        # Index (moov) at the end of the file: cutting the file loses it.
        "moov_cut": (truncate(good["tail_index"], root / "moov_cut.mp4", keep_fraction=0.7), CorruptVideoError,
                     "moov"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "not_media", "audio_only", "moov_cut"])
def test_probe_and_reader_raise_typed_errors(good, tmp_path, case):
    path, error_type, words = broken_files(good, tmp_path)[case]
    for open_it in (probe, VideoReader):
        with pytest.raises(error_type) as info:
            open_it(path)
        error = info.value
        assert isinstance(error, VideoError) and isinstance(error, PmvError)
        assert error.path == str(path) and str(path) in str(error)
        assert words in str(error).lower()
    # The fields survive pickling, as when a data-loader worker sends the error to the main process.
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is error_type and copy.path == error.path and copy.reason == error.reason


def test_frame_data_cut_off_behind_a_front_index_reads_up_to_the_cut(good, tmp_path):
    # Index in front: it promises frames whose bytes are gone. The frames before the cut stay readable.
    path = truncate(good["faststart"], tmp_path / "mdat_cut.mp4", keep_fraction=0.6)
    meta = probe(path)
    assert meta.truncated and "truncated" not in meta.truncation and str(meta.size_bytes) in meta.truncation
    with VideoReader(path) as reader:
        assert reader.metadata.truncated and 0 < reader.num_frames < 90
        assert meta.num_frames == reader.num_frames
        frames = reader.get_frames_at(range(reader.num_frames)).numpy()
    with VideoReader(good["faststart"]) as whole:
        assert np.array_equal(frames, whole.get_frames_at(range(len(frames))).numpy())


def test_corrupt_bytes_in_the_middle_raise(good, tmp_path):
    path = corrupt_middle(good["tail_index"], tmp_path / "corrupt.mp4", at_fraction=0.3, length=4096)
    with pytest.raises(CorruptVideoError) as info:
        with VideoReader(path) as reader:
            reader.get_frames(range(reader.num_frames))
    assert "corrupt.mp4" in str(info.value) and "damaged" in str(info.value)


def test_damage_is_reported_or_frames_are_exact(good, tmp_path):
    """Small damage: the reader raises, or returns exactly the frames of the intact file for the frames
    before the damage. It never returns a frame with a wrong index."""
    source = good["indexed"]
    with VideoReader(source) as reader:
        clean = reader.get_frames(range(90)).numpy()
    raised = 0
    for seed, at in enumerate([0.15, 0.35, 0.55, 0.75]):
        path = corrupt_middle(source, tmp_path / f"damaged{seed}.mp4", at_fraction=at, length=512, seed=seed)
        try:
            with VideoReader(path) as reader:
                frames = reader.get_frames([0, 30, 60, 89]).numpy()
        except CorruptVideoError:
            raised += 1
            continue
        assert [read_index(f) for f in frames] == [0, 30, 60, 89]
        assert np.array_equal(frames[0], clean[0])  # before any damage
    assert raised >= 1


def test_frames_past_a_cut_raise_instead_of_coming_back_short(good, tmp_path):
    # Shorten only the frame data, keep the header sizes: the reader must not return fewer frames.
    data = bytearray(good["faststart"].read_bytes())
    cut = tmp_path / "zeroed_tail.mp4"
    keep = int(len(data) * 0.6)
    cut.write_bytes(bytes(data[:keep]) + bytes(len(data) - keep))  # same size, zeros where frames were
    with pytest.raises(CorruptVideoError):
        with VideoReader(cut) as reader:
            reader.get_frames([0, 89])


def test_no_audio_stream(good):
    with VideoReader(good["indexed"]) as reader:
        with pytest.raises(NoAudioStreamError, match="no audio stream"):
            reader.get_audio(0.0, 1.0)


def test_unknown_backend_and_bad_options(good):
    with pytest.raises(VideoError, match="unknown video backend"):
        VideoReader(good["indexed"], backend="decord")
    with pytest.raises(ValueError):
        VideoReader(good["indexed"], short_side=0)
    with pytest.raises(ValueError):
        VideoReader(good["indexed"], short_side=128, size=(128, 72))


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(NotAVideoError, match="directory"):
        probe(tmp_path)


def test_no_file_descriptor_leaks_on_errors(good, tmp_path):
    cases = broken_files(good, tmp_path)
    corrupt = corrupt_middle(good["tail_index"], tmp_path / "corrupt.mp4", at_fraction=0.3, length=4096)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        for path, error_type, _ in cases.values():
            with pytest.raises(error_type):
                VideoReader(path)
        with pytest.raises(CorruptVideoError):
            with VideoReader(corrupt) as reader:
                reader.get_frames(range(reader.num_frames))
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    for open_it in (probe, VideoReader):
        with pytest.raises(NotAVideoError, match="not a regular file"):
            open_it(fifo)
