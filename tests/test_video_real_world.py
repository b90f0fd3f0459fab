"""Real-world files read exactly as FFmpeg plays them: hidden frames, MPEG-TS, FLV, mirrored phones, live WebM,
several video streams, truncated Matroska. Each file is made at test time; frames are checked against a plain
sequential decode, turned by FFmpeg's own filters the way its autorotate picks them."""

from __future__ import annotations

import av
import av.filter
import numpy as np
import pytest
import torch

from media import (
    make_video,
    make_video_streams,
    read_index,
    set_flv_frame_rate,
    split_hidden_frames,
    truncate,
)
from pmv.video import NonIntegerIndexError, NoVideoStreamError, VideoReader, probe
from pmv.video.index import DECODED, PACKETS, av1_shown, vp9_shown

HAS_AV1 = "libsvtav1" in av.codecs_available and ("libdav1d" in av.codecs_available or "av1" in av.codecs_available)


def sequential_decode(path, filters=(), stream=None) -> np.ndarray:
    """Every frame of a plain PyAV decode of the stream FFmpeg picks, passed through FFmpeg ``filters``
    (name, arguments) before the RGB conversion, as the ffmpeg CLI's autorotate inserts them."""
    frames = []
    with av.open(str(path)) as container:
        chosen = container.streams.best("video") if stream is None else container.streams.video[stream]
        graph = None
        for frame in container.decode(chosen):
            if filters:
                if graph is None:
                    graph = av.filter.Graph()
                    nodes = [graph.add_buffer(template=chosen)]
                    nodes += [graph.add(name, args) for name, args in filters]
                    nodes.append(graph.add("buffersink"))
                    for a, b in zip(nodes, nodes[1:]):
                        a.link_to(b)
                    graph.configure()
                graph.push(frame)
                frame = graph.pull()
            frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames)


def check_every_frame(path, reference, rng_seed=3, **reader_options):
    rng = np.random.default_rng(rng_seed)
    with VideoReader(path, **reader_options) as reader:
        assert reader.num_frames == len(reference)
        assert np.array_equal(reader.get_frames_at(range(len(reference))).numpy(), reference)
        for _ in range(6):
            indices = rng.integers(0, len(reference), size=int(rng.integers(1, 6))).tolist()
            assert np.array_equal(reader.get_frames_at(indices).numpy(), reference[indices]), indices
        return reader.metadata


# -- 1. hidden frames ---------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_AV1, reason="PyAV's FFmpeg has no AV1 encoder (libsvtav1) or decoder")
@pytest.mark.parametrize("split", [False, True])
def test_av1_hidden_alt_ref_frames_count_as_the_decoder_outputs(tmp_path, split):
    source = make_video(tmp_path / "av1.mkv", num_frames=40, height=64, width=64, codec="libsvtav1", gop=30)
    path = split_hidden_frames(source, tmp_path / "split.webm") if split else source
    with av.open(str(path)) as container:
        packets = sum(1 for p in container.demux(video=0) if p.size)
    reference = sequential_decode(path)
    assert len(reference) == 40
    if split:
        assert packets > 40  # hidden frames in packets of their own, sharing the next frame's timestamp
    assert probe(path).num_frames == 40 and probe(path, count_frames=True).num_frames == 40
    meta = check_every_frame(path, reference)
    assert meta.fps == pytest.approx(30, rel=0.01) and meta.duration == pytest.approx(40 / 30, abs=0.04)
    assert [read_index(f) for f in reference[:3]] == [0, 1, 2]
    with VideoReader(path) as reader:
        assert reader._index.mode in (PACKETS, DECODED)


def test_vp9_and_av1_headers_say_which_frames_are_shown():
    # VP9 uncompressed header: frame marker 0b10, profile 0, show_existing_frame, frame_type, show_frame.
    shown, hidden, existing = bytes([0b10000110, 0]), bytes([0b10000100, 0]), bytes([0b10001000])
    assert vp9_shown(shown) == 1 and vp9_shown(hidden) == 0 and vp9_shown(existing) == 1

    def superframe(*frames):
        marker = 0b11000000 | (len(frames) - 1)  # one byte per frame size
        return b"".join(frames) + bytes([marker, *[len(f) for f in frames], marker])

    assert vp9_shown(superframe(hidden, shown)) == 1
    assert vp9_shown(superframe(hidden, hidden, shown)) == 1
    assert vp9_shown(superframe(shown, existing)) == 2
    # AV1: OBU_TEMPORAL_DELIMITER, then OBU_FRAME with show_frame 0 (hidden) and a FRAME_HEADER showing an
    # existing frame (show_existing_frame 1).
    delimiter = bytes([0x12, 0x00])
    hidden_frame = bytes([0x32, 0x02, 0b00100000, 0x00])  # frame_type 1, show_frame 0
    show_existing = bytes([0x1A, 0x01, 0b10000000])
    assert av1_shown(delimiter + hidden_frame) == 0
    assert av1_shown(delimiter + hidden_frame + show_existing) == 1


# -- 2. MPEG-TS -------------------------------------------------------------------------------------------
def test_mpeg_ts_with_b_frames_reads_every_frame_including_the_first_gop(tmp_path):
    path = make_video(tmp_path / "clip.ts", num_frames=50, height=64, width=48, gop=12, bframes=2)
    with av.open(str(path)) as container:
        first = next(p for p in container.demux(video=0) if p.size)
        assert first.pts > first.dts  # the case that made seeks land after the first keyframe
    reference = sequential_decode(path)
    assert [read_index(f) for f in reference] == list(range(50))
    meta = check_every_frame(path, reference)
    assert meta.fps == pytest.approx(30) and meta.duration == pytest.approx(50 / 30, abs=1e-3)
    assert not meta.variable_rate and not meta.truncated
    with VideoReader(path) as reader:  # frames by time, on the stream's clock
        times = reader.frame_times.numpy()
        assert [read_index(f.numpy()) for f in reader.get_frames_played_at(times[[0, 13, 49]])] == [0, 13, 49]


# -- 3. FLV with a bogus frame rate --------------------------------------------------------------------------
def test_flv_with_a_bogus_container_frame_rate_gets_the_rate_of_its_timestamps(tmp_path):
    source = make_video(tmp_path / "clip.flv", num_frames=45, height=64, width=48, gop=15, bframes=2)
    path = set_flv_frame_rate(source, tmp_path / "bogus.flv", 1000.0)
    with av.open(str(path)) as container:
        assert float(container.streams.video[0].average_rate) == 1000  # what the container says
    meta = probe(path)
    assert meta.fps == pytest.approx(30, rel=0.02) and meta.duration == pytest.approx(1.5, abs=0.04)
    reference = sequential_decode(path)
    read = check_every_frame(path, reference)
    assert read.fps == pytest.approx(30, rel=0.02) and read.num_frames == 45


# -- 4. display matrix with a reflection ----------------------------------------------------------------------
def _transpose(p):
    return np.ascontiguousarray(p.transpose(1, 0, 2))


def _anti_transpose(p):
    return np.ascontiguousarray(np.rot90(p, 2).transpose(1, 0, 2))


FIXED = 1 << 16
# matrix (a, b, c, d), the stored picture for an upright one, FFmpeg's autorotate filters, pmv's orientation.
MATRICES = {
    "front_camera_transpose": ((0, FIXED, FIXED, 0), _transpose, [("transpose", "cclock_flip")], (270, True)),
    "anti_transpose": ((0, -FIXED, -FIXED, 0), _anti_transpose, [("transpose", "clock_flip")], (90, True)),
    "hflip": ((-FIXED, 0, 0, FIXED), lambda p: p[:, ::-1], [("hflip", "")], (0, True)),
    "vflip": ((FIXED, 0, 0, -FIXED), lambda p: p[::-1], [("vflip", "")], (180, True)),
    "half_turn": ((-FIXED, 0, 0, -FIXED), lambda p: p[::-1, ::-1], [("hflip", ""), ("vflip", "")], (180, False)),
    "quarter_turn": ((0, FIXED, -FIXED, 0), lambda p: np.rot90(p, 1), [("transpose", "clock")], (270, False)),
}


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_display_matrix_rotation_and_reflection_as_ffmpeg_shows_them(tmp_path, name):
    (a, b, c, d), stored, filters, (rotation, mirrored) = MATRICES[name]
    matrix = [a, b, 0, c, d, 0, 0, 0, 1 << 30]
    path = make_video(tmp_path / f"{name}.mp4", num_frames=12, height=64, width=48, gop=6, bframes=0,
                      display_matrix=matrix, coded_picture=stored)
    reference = sequential_decode(path, filters)
    assert reference.shape[1:3] == (64, 48)
    assert [read_index(f) for f in reference] == list(range(12))  # FFmpeg shows it upright, not mirrored
    meta = probe(path)
    assert (meta.rotation, meta.mirrored, meta.height, meta.width) == (rotation, mirrored, 64, 48)
    assert check_every_frame(path, reference).mirrored == mirrored
    with VideoReader(path, size=(32, 24)) as reader:  # scaled while converting, then turned
        assert [read_index(f.numpy()) for f in reader.get_frames_at([0, 7])] == [0, 7]
    # The same matrix in Matroska: the orientation comes from the decoded frame's side data.
    mkv = make_video(tmp_path / f"{name}.mkv", num_frames=6, height=64, width=48, gop=6, bframes=0,
                     display_matrix=matrix, coded_picture=stored)
    assert (probe(mkv).rotation, probe(mkv).mirrored) == (rotation, mirrored)
    check_every_frame(mkv, sequential_decode(mkv, filters))


# -- 5. WebM written live, without a duration ------------------------------------------------------------------
def test_webm_without_container_duration_gets_it_from_the_timestamps(tmp_path):
    path = make_video(tmp_path / "live.webm", num_frames=36, height=48, width=32, codec="libvpx-vp9", bframes=0,
                      muxer_options={"live": "1"})
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert not stream.duration and not container.duration  # nothing to read it from
    meta = probe(path)
    assert meta.duration == pytest.approx(36 / 30, abs=0.035) and meta.fps == pytest.approx(30, rel=0.02)
    assert meta.num_frames == 36 and not meta.truncated
    check_every_frame(path, sequential_decode(path))


# -- 6. several video streams -----------------------------------------------------------------------------------
def test_several_video_streams_read_the_one_ffmpeg_picks_or_the_one_asked_for(tmp_path):
    # A motion-photo-like file: a one-frame still first, then the video.
    path = make_video_streams(tmp_path / "motion.mp4", [
        {"num_frames": 1, "height": 96, "width": 64},
        {"num_frames": 30, "height": 64, "width": 48, "gop": 10},
    ], default=1)
    with av.open(str(path)) as container:
        best = container.streams.best("video")
        assert best.index == 1  # what ffmpeg and torchcodec read by default
    meta = probe(path)
    assert (meta.stream, meta.height, meta.width, meta.num_frames) == (1, 64, 48, 30)
    listed = [(s.index, s.height, s.width, s.num_frames, s.best) for s in meta.video_streams]
    assert listed == [(0, 96, 64, 1, False), (1, 64, 48, 30, True)]
    counted = probe(path, count_frames=True)  # by the packets of every stream: the same here
    assert [(s.index, s.num_frames, s.best) for s in counted.video_streams] == [(0, 1, False), (1, 30, True)]
    check_every_frame(path, sequential_decode(path))
    check_every_frame(path, sequential_decode(path), stream=1)
    with VideoReader(path, stream=0) as reader:
        assert (reader.num_frames, reader.metadata.height, reader.metadata.stream) == (1, 96, 0)
        assert read_index(reader.get_frames_at([0])[0].numpy()) == 0
    assert probe(path, stream=0).num_frames == 1
    for bad in (2, -1, "1"):
        with pytest.raises(NoVideoStreamError, match="2 video stream"):
            VideoReader(path, stream=bad)


# -- 7. truncated Matroska --------------------------------------------------------------------------------------
def test_truncated_mkv_reads_the_frames_before_the_cut_and_says_truncated(tmp_path):
    source = make_video(tmp_path / "whole.mkv", num_frames=60, height=64, width=48, gop=12, bframes=2)
    path = truncate(source, tmp_path / "cut.mkv", keep_fraction=0.6)
    reference = sequential_decode(path)
    assert 10 < len(reference) < 60
    meta = probe(path)
    assert meta.truncated and "bytes" in meta.truncation and meta.num_frames == len(reference)
    assert meta.duration < 60 / 30  # from the frames that are there, not the header's
    read = check_every_frame(path, reference)
    assert read.truncated and read.num_frames == len(reference)
    assert not probe(source).truncated


# -- frame access by index and by time ------------------------------------------------------------------------
def test_frame_indices_must_be_integers_and_times_go_to_get_frames_played_at(tmp_path):
    path = make_video(tmp_path / "clip.mp4", num_frames=20, height=48, width=32, gop=10)
    with VideoReader(path) as reader:
        for bad in ([0.0, 1.0], [1.5], torch.tensor([0.0, 0.5]), np.array([2.0]), [True]):
            with pytest.raises(NonIntegerIndexError, match="integers") as info:
                reader.get_frames_at(bad)
            assert isinstance(info.value, ValueError) and "get_frames_played_at" in str(info.value)
        ints = [read_index(f.numpy()) for f in reader.get_frames_at(torch.tensor([3, 0, 19]))]
        assert ints == [3, 0, 19] == [read_index(f.numpy()) for f in reader.get_frames(np.array([3, 0, 19]))]
        assert [read_index(f.numpy()) for f in reader.get_frames_played_at([0.0, 0.5, 0.51])] == [0, 15, 15]
        assert np.array_equal(reader.get_frames_played_at(torch.tensor([0.1])).numpy(),
                              reader.get_frames_at([3]).numpy())


def test_indexes_built_by_decoding_or_counting_in_order_read_the_same_frames(tmp_path, monkeypatch):
    """The fallbacks for streams whose packets do not map to frames: an index from a full decode (frames known
    by timestamp, decoded from a keyframe), and one that counts frames from the start (no usable timestamps)."""
    from dataclasses import replace

    import pmv.video.index as index_module
    from pmv.video.index import SEQUENTIAL
    from pmv.video.reader import INDEX_CACHE

    path = make_video(tmp_path / "clip.mp4", num_frames=40, height=48, width=32, gop=12, bframes=3)
    reference = sequential_decode(path)
    INDEX_CACHE.clear()
    monkeypatch.setitem(index_module.SHOWN_COUNTERS, "h264", lambda data: 2)  # "each packet shows two frames"
    with VideoReader(path) as reader:
        assert reader._index.mode == DECODED and reader.num_frames == 40
        key = reader._cache_key
    check_every_frame(path, reference)
    metadata, index = INDEX_CACHE.get(key)
    INDEX_CACHE.put(key, (metadata, replace(index, mode=SEQUENTIAL)))
    check_every_frame(path, reference, rng_seed=5)
    INDEX_CACHE.clear()


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_avi_with_b_frames_and_empty_chunks_reads_as_decoded(tmp_path, codec):
    # AVI has no presentation timestamps: the demuxer makes up packet pts in decode order, and a frame rate the
    # time base cannot hold is written as empty chunks between frames (here 5 per frame).
    path = make_video(tmp_path / "clip.avi", num_frames=40, height=64, width=48, codec=codec, gop=12, bframes=2)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames > 40  # what the header counts
    reference = sequential_decode(path)
    assert [read_index(f) for f in reference] == list(range(40))
    meta = probe(path)
    assert meta.num_frames == 40 and meta.fps == pytest.approx(30, rel=0.06)
    check_every_frame(path, reference)
