"""VideoReader returns exactly the frames of a full sequential decode, upright, for any index list."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest
import torch

from media import frame_times, make_video, read_index, render_frame, trim_start_with_edit_list
from pmv.video import FrameIndexError, VideoReader, probe, read_frames
from pmv.video.reader import _DECODE_FROM_START, INDEX_CACHE


def full_decode(path) -> np.ndarray:
    """Every frame of a plain sequential PyAV decode, turned upright by the frame's rotation."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            picture = frame.to_ndarray(format="rgb24")
            frames.append(np.rot90(picture, k=(frame.rotation // 90) % 4))
    return np.stack(frames)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    return {
        # Long GOP with B-frames: most clips need decoding from a keyframe far before them.
        "long_gop": make_video(root / "long_gop.mp4", num_frames=160, height=64, width=48, gop=75, bframes=3),
        "short_gop": make_video(root / "short_gop.mp4", num_frames=60, height=48, width=32, gop=8, bframes=2),
        "no_bframes": make_video(root / "no_b.mp4", num_frames=40, height=48, width=32, gop=20, bframes=0),
        "rot90": make_video(root / "rot90.mp4", num_frames=30, height=64, width=48, rotation=90, gop=10),
        "rot-90": make_video(root / "rot-90.mp4", num_frames=30, height=64, width=48, rotation=-90, gop=10),
        "rot180": make_video(root / "rot180.mp4", num_frames=30, height=64, width=48, rotation=180, gop=10),
        "vfr": make_video(root / "vfr.mp4", num_frames=45, height=48, width=32, vfr=True, gop=15),
        # Camera-like content (B-frames carry residual) with B-pyramid references, long GOP.
        "camera": make_video(root / "camera.mp4", num_frames=140, height=96, width=64, gop=120, bframes=3,
                             index_in_pixels=False, crf=23),
        # Other codecs and GOP shapes phones and apps produce.
        "hevc": make_video(root / "hevc.mp4", num_frames=70, height=96, width=64, codec="libx265", gop=30,
                           bframes=3, rotation=90),
        "hevc_open_gop": make_video(root / "hevc_open.mp4", num_frames=70, height=96, width=64, codec="libx265",
                                    gop=30, bframes=3, open_gop=True),
        "h264_open_gop": make_video(root / "h264_open.mp4", num_frames=100, height=64, width=48, gop=30,
                                    bframes=3, open_gop=True),
        "mpeg4": make_video(root / "mpeg4.mp4", num_frames=50, height=64, width=48, codec="mpeg4", gop=20,
                            bframes=2),
        "late_start": make_video(root / "late.mp4", num_frames=40, height=48, width=32, start_time=1.0,
                                 audio=True, audio_sample_rate=16000, audio_channels=1, gop=15),
    }


@pytest.mark.parametrize(
    "name",
    ["long_gop", "short_gop", "no_bframes", "rot90", "vfr", "late_start", "camera", "hevc", "hevc_open_gop",
     "h264_open_gop", "mpeg4"],
)
def test_random_index_lists_equal_a_full_decode(videos, name):
    reference = full_decode(videos[name])
    rng = np.random.default_rng(7)
    with VideoReader(videos[name]) as reader:
        assert reader.num_frames == len(reference)
        for _ in range(12):
            indices = rng.integers(0, len(reference), size=int(rng.integers(1, 10))).tolist()
            frames = reader.get_frames(indices)
            assert frames.dtype == torch.uint8 and frames.shape[1:] == reference.shape[1:]
            assert np.array_equal(frames.numpy(), reference[indices]), indices
        # A strided clip, as a dataset asks for it, and every frame in order.
        assert np.array_equal(reader.get_frames(range(3, 67, 4) if len(reference) > 67 else range(0, len(reference), 3)).numpy(),
                              reference[3:67:4] if len(reference) > 67 else reference[::3])
        assert np.array_equal(reader.get_frames(range(len(reference))).numpy(), reference)


def test_frame_threads_give_the_same_frames(videos):
    reference = full_decode(videos["camera"])
    indices = [130, 4, 5, 66, 67, 68, 139, 0]
    with VideoReader(videos["camera"], threads=2) as reader:
        assert np.array_equal(reader.get_frames(indices).numpy(), reference[indices])


def test_unwanted_non_reference_frames_are_not_decoded(videos, monkeypatch):
    """The decoder is told to skip non-reference frames exactly when they are not wanted."""
    import av.video.codeccontext

    decoded_pict_types = []
    original = av.video.codeccontext.VideoCodecContext.decode

    def counting_decode(self, packet=None):
        frames = original(self, packet)
        decoded_pict_types.extend(str(frame.pict_type) for frame in frames)
        return frames

    reference = full_decode(videos["camera"])
    monkeypatch.setattr(av.video.codeccontext.VideoCodecContext, "decode", counting_decode)
    wanted = [100, 104, 108, 112]
    with VideoReader(videos["camera"]) as reader:
        frames = reader.get_frames(wanted)
    assert np.array_equal(frames.numpy(), reference[wanted])
    # From the keyframe at 0 a plain decode makes at least 113 frames, about 60% of them B-frames; only
    # the wanted B-frames and the B-pyramid references among the others are decoded.
    assert 16 < len(decoded_pict_types) < 0.8 * 113
    assert sum(t in ("B", "3") for t in decoded_pict_types) < 0.5 * 113 * 0.6 + len(wanted)


def test_frame_content_is_the_frame_asked_for(videos):
    with VideoReader(videos["long_gop"]) as reader:
        indices = [159, 0, 80, 80, 74, 75, 76, 3, 3]
        frames = reader.get_frames(indices)
    assert [read_index(frame.numpy()) for frame in frames] == indices
    for name in ["hevc", "hevc_open_gop", "h264_open_gop", "mpeg4"]:
        with VideoReader(videos[name]) as reader:
            # Around the second keyframe: the open-GOP frames shown before it are coded after it.
            indices = [31, 27, 28, 29, 30, 45, 1]
            assert [read_index(f.numpy()) for f in reader.get_frames(indices)] == indices, name
    # H.264 started at this file's last open-GOP I-frame reports missing references; the reader then decodes
    # the file from its start instead of calling it damaged, and remembers to.
    with VideoReader(videos["h264_open_gop"]) as reader:
        _DECODE_FROM_START.discard(reader._cache_key)  # as if no earlier test had read it
        assert [read_index(f.numpy()) for f in reader.get_frames([95, 93])] == [95, 93]
        assert reader._cache_key in _DECODE_FROM_START
        assert [read_index(f.numpy()) for f in reader.get_frames([99])] == [99]


def test_duplicates_unsorted_negative_and_empty_indices(videos):
    with VideoReader(videos["short_gop"]) as reader:
        frames = reader.get_frames(torch.tensor([5, 2, 5, -1, 2]))
        assert [read_index(f.numpy()) for f in frames] == [5, 2, 5, 59, 2]
        assert reader.get_frames([]).shape == (0, 48, 32, 3)
        assert torch.equal(reader.get_frames(np.array([7])), reader.get_frames([7]))


@pytest.mark.parametrize("bad", [[60], [0, 1000], [-61]])
def test_out_of_range_index_raises_frame_index_error(videos, bad):
    with VideoReader(videos["short_gop"]) as reader:
        with pytest.raises(FrameIndexError) as info:
            reader.get_frames(bad)
    assert "short_gop.mp4" in str(info.value) and "out of range" in str(info.value)
    assert isinstance(info.value, IndexError)


@pytest.mark.parametrize("name,rotation", [("rot90", 90), ("rot-90", 270), ("rot180", 180)])
def test_phone_rotation_comes_out_upright(videos, name, rotation):
    meta = probe(videos[name])
    assert meta.rotation == rotation
    if rotation in (90, 270):
        assert (meta.coded_width, meta.coded_height) == (64, 48)  # stored landscape
    assert (meta.width, meta.height) == (48, 64) and meta.orientation == "portrait"
    with VideoReader(videos[name]) as reader:
        assert reader.metadata.rotation == rotation and (reader.metadata.height, reader.metadata.width) == (64, 48)
        frames = reader.get_frames([0, 17, 29])
    assert frames.shape == (3, 64, 48, 3)
    for index, frame in zip([0, 17, 29], frames.numpy()):
        assert read_index(frame) == index
        # The same picture that was drawn upright, within compression noise (a sideways or flipped
        # frame, or swapped colour channels, would be far off).
        error = np.abs(frame.astype(np.int16) - render_frame(index, 64, 48).astype(np.int16)).mean()
        assert error < 8, error


def test_vfr_timestamps_and_get_frames_played_at(videos):
    expected = frame_times(45, 30, vfr=True)
    with VideoReader(videos["vfr"]) as reader:
        assert np.allclose(reader.frame_times.numpy(), expected, atol=1e-6)
        # At each frame's own time, and just before the next frame's time.
        asked = expected[:10] + [t - 0.001 for t in expected[1:10]]
        frames = reader.get_frames_played_at(asked)
        assert [read_index(f.numpy()) for f in frames] == list(range(10)) + list(range(9))
        assert reader.metadata.variable_rate
        assert reader.indices_at(torch.tensor([expected[20] + 1e-4])) == [20]
        last_end = expected[-1] + (2 / 30)  # the last gap of the 1-2-3 cycle before frame 45 is 2 frames
        with pytest.raises(FrameIndexError):
            reader.get_frames_played_at([last_end + 0.5])
        with pytest.raises(FrameIndexError):
            reader.get_frames_played_at([-0.01])


def test_stream_that_does_not_start_at_zero(videos):
    path = videos["late_start"]
    meta = probe(path)
    assert meta.start_time == pytest.approx(1.0) and meta.num_frames == 40
    with VideoReader(path) as reader:
        assert reader.frame_times[0].item() == pytest.approx(1.0)
        assert [read_index(f.numpy()) for f in reader.get_frames([0, 39])] == [0, 39]
        assert [read_index(f.numpy()) for f in reader.get_frames_played_at([1.0, 1.5])] == [0, 15]
        assert not reader.metadata.variable_rate
        with pytest.raises(FrameIndexError):
            reader.get_frames_played_at([0.5])  # before the first video frame


def test_edit_list_that_trims_the_start(tmp_path):
    source = make_video(tmp_path / "src.mp4", num_frames=50, height=48, width=32, gop=25, bframes=3)
    trimmed = trim_start_with_edit_list(source, tmp_path / "trimmed.mp4", skip_frames=4)
    reference = full_decode(trimmed)
    assert len(reference) == 46 and read_index(reference[0]) == 4
    assert probe(trimmed).num_frames == 46
    with VideoReader(trimmed) as reader:
        assert reader.num_frames == 46
        indices = [0, 45, 1, 20, 21, 0]
        assert np.array_equal(reader.get_frames(indices).numpy(), reference[indices])


@pytest.mark.parametrize(
    "name,options,shape",
    [
        ("short_gop", {"short_side": 24}, (36, 24)),  # 48x32 -> short side 24, aspect kept
        ("rot90", {"short_side": 24}, (32, 24)),  # 64x48 upright (stored 48x64 landscape)
        ("short_gop", {"size": (40, 30)}, (40, 30)),
        ("rot90", {"size": (40, 30)}, (40, 30)),  # exact upright H x W, also for a rotated file
        ("short_gop", {"short_side": 64}, (96, 64)),  # upscaling works too
    ],
)
def test_decode_time_resize(videos, name, options, shape):
    with VideoReader(videos[name], **options) as reader:
        assert reader.output_size == shape
        frames = reader.get_frames([0, 11])
    assert tuple(frames.shape) == (2, *shape, 3)
    assert [read_index(f.numpy()) for f in frames] == [0, 11]
    # The same picture as the full-size frame scaled afterwards, within interpolation differences.
    with VideoReader(videos[name]) as reader:
        full = reader.get_frames([11]).permute(0, 3, 1, 2).float()
    scaled = torch.nn.functional.interpolate(full, size=shape, mode="bilinear", antialias=True)
    error = (frames[1:].permute(0, 3, 1, 2).float() - scaled).abs().mean().item()
    assert error < 6, error


def test_webm_without_a_frame_count(tmp_path):
    path = make_video(tmp_path / "clip.webm", num_frames=12, height=32, width=32, codec="libvpx-vp9", bframes=0)
    assert probe(path).num_frames == 12  # counted from packets: WebM stores no count
    with VideoReader(path) as reader:
        assert [read_index(f.numpy()) for f in reader.get_frames([11, 0, 6])] == [11, 0, 6]


def test_index_is_cached_and_files_are_closed(videos):
    path = videos["short_gop"]
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        pytest.skip("needs /proc")
    read_frames(path, [0])  # warm the cache and any lazily opened library files
    before = len(os.listdir(fd_dir))
    for k in range(150):
        with VideoReader(path) as reader:
            reader.get_frames([k % 60, (k * 7) % 60])
        read_frames(path, [k % 60], short_side=16)
        reader = VideoReader(path)  # closed by close(), not by the context manager
        reader.close()
    with pytest.raises(FrameIndexError):
        read_frames(path, [600])
    assert len(os.listdir(fd_dir)) == before
    assert any(key[0] == os.path.realpath(path) for key in INDEX_CACHE._entries)


def test_closed_reader_refuses_to_read(videos):
    reader = VideoReader(videos["short_gop"])
    reader.close()
    reader.close()  # twice is fine
    with pytest.raises(Exception, match="closed"):
        reader.get_frames([0])
