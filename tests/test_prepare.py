"""`pmv data prepare`: outputs read upright at the expected size, with a short GOP; re-runs skip; failures never
replace a good output."""

from __future__ import annotations

import json

import av
import numpy as np
from media import corrupt_middle, make_video, read_index, set_flv_frame_rate, truncate

from pmv.cli.main import main
from pmv.acquire.prepare import PrepareOptions, output_size, prepare_video, prepare_videos
from pmv.video import VideoReader, probe


def test_output_size_keeps_aspect_even_and_never_upscales():
    assert output_size(1280, 720, 320) == (568, 320)
    assert output_size(720, 1280, 320) == (320, 568)
    assert output_size(100, 50, 320) == (100, 50)
    assert output_size(101, 51, 320) == (100, 52)


def test_prepare_folder_upright_sized_and_resumable(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    made = {
        "r90.mp4": make_video(src / "r90.mp4", num_frames=40, height=128, width=72, rotation=90, audio=True, gop=100),
        "sub/r270.mp4": make_video(src / "sub" / "r270.mp4", num_frames=30, height=128, width=72, rotation=-90),
        "r180.mp4": make_video(src / "r180.mp4", num_frames=30, height=128, width=72, rotation=180),
        "land.mp4": make_video(src / "land.mp4", num_frames=30, height=72, width=128, audio=True),
        "small.mp4": make_video(src / "small.mp4", num_frames=20, height=32, width=18),
        "vfr.mp4": make_video(src / "vfr.mp4", num_frames=30, height=128, width=72, vfr=True),
    }
    good = make_video(tmp_path / "good.mp4", num_frames=30, height=128, width=72)
    truncate(good, src / "cut.mp4", keep_fraction=0.5)
    corrupt_middle(good, src / "damaged.mp4", at_fraction=0.5, length=3000)
    # An earlier good output of the damaged source must survive a failed re-encode.
    dst.mkdir()
    (dst / "damaged.mp4").write_bytes(good.read_bytes())

    argv = ["data", "prepare", "--src", str(src), "--dst", str(dst), "--short-side", "36", "--gop", "8", "--workers", "2", "--no-progress"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "8 videos" in printed and "6 re-encoded" in printed and "2 failed" in printed
    assert "cut.mp4" in printed and "damaged.mp4" in printed
    assert (dst / "damaged.mp4").read_bytes() == good.read_bytes()
    assert not (dst / "cut.mp4").exists() and not list(dst.rglob("*.tmp"))

    expected = {"r90.mp4": (64, 36), "sub/r270.mp4": (64, 36), "r180.mp4": (64, 36), "land.mp4": (36, 64),
                "small.mp4": (32, 18), "vfr.mp4": (64, 36)}
    for name, size in expected.items():
        meta = probe(dst / name)
        source = probe(made[name])
        assert (meta.height, meta.width, meta.rotation, meta.codec) == (*size, 0, "h264"), name
        assert meta.num_frames == source.num_frames and meta.has_audio == source.has_audio, name
        with VideoReader(dst / name) as reader:
            last = len(reader) - 1
            frames = reader.get_frames([0, 7, last]).numpy()
            times = reader.frame_times.tolist()
        assert [read_index(frame) for frame in frames] == [0, 7, last], f"{name} is not upright"
        with VideoReader(made[name]) as reader:
            assert times == reader.frame_times.tolist(), f"{name}: timestamps changed"
    with av.open(str(dst / "r90.mp4")) as container:
        keyframes = [k for k, packet in enumerate(container.demux(video=0)) if packet.is_keyframe]
        assert container.streams.audio[0].codec_context.name == "aac"
    assert keyframes == [0, 8, 16, 24, 32]

    # A re-run skips every finished output and retries only the failures.
    stamps = {name: (dst / name).stat().st_mtime_ns for name in expected}
    summary = prepare_videos(src, dst, PrepareOptions(short_side=36, gop=8), workers=1, progress=False)
    assert (summary.ok, summary.skipped, summary.failed) == (0, 6, 2)
    assert stamps == {name: (dst / name).stat().st_mtime_ns for name in expected}
    records = [json.loads(line) for line in (dst / "prepare_manifest.jsonl").read_text().splitlines()]
    assert len(records) == 16 and {r["status"] for r in records} == {"ok", "skipped", "failed"}
    # A different size is a different job: outputs are redone, not skipped.
    resized = prepare_videos(src / "sub", dst / "sub", PrepareOptions(short_side=18, gop=8), workers=1, progress=False)
    assert resized.ok == 1 and (probe(dst / "sub" / "r270.mp4").height, probe(dst / "sub" / "r270.mp4").width) == (32, 18)


def test_audio_can_be_re_encoded_or_dropped(tmp_path):
    source = make_video(tmp_path / "a.mp4", num_frames=30, height=64, width=36, audio=True)
    record = prepare_video(source, tmp_path / "out" / "aac.mp4", PrepareOptions(short_side=36, audio="aac"))
    assert record["audio"] == "aac"
    with av.open(str(tmp_path / "out" / "aac.mp4")) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.codec_context.sample_rate == 44100
        assert abs(float(audio.duration * audio.time_base) - 1.0) < 0.1  # the 1 s of sound is all there
    record = prepare_video(source, tmp_path / "out" / "mute.mp4", PrepareOptions(short_side=36, audio="drop"))
    assert record["audio"] == "none" and not probe(tmp_path / "out" / "mute.mp4").has_audio


def test_mirrored_ts_and_flv_sources_come_out_as_ffmpeg_shows_them(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    transpose = [0, 1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30]  # a front camera: turned and mirrored
    make_video(src / "selfie.mp4", num_frames=20, height=96, width=64, gop=10, display_matrix=transpose,
               coded_picture=lambda p: p.transpose(1, 0, 2))
    make_video(src / "hflip.mov", num_frames=20, height=96, width=64, gop=10,
               display_matrix=[-(1 << 16), 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30], coded_picture=lambda p: p[:, ::-1])
    make_video(src / "broadcast.ts", num_frames=20, height=96, width=64, gop=10)
    flv = make_video(tmp_path / "web.flv", num_frames=20, height=96, width=64, gop=10)
    set_flv_frame_rate(flv, src / "web.flv", 1000.0)
    whole = make_video(tmp_path / "whole.mkv", num_frames=40, height=96, width=64, gop=10)
    truncate(whole, src / "cut.mkv", keep_fraction=0.5)
    (src / "readme.md").write_text("notes")
    argv = ["data", "prepare", "--src", str(src), "--dst", str(dst), "--short-side", "32", "--workers", "1",
            "--no-progress"]
    assert main(argv) == 1  # the truncated source
    printed = capsys.readouterr().out
    assert "5 videos" in printed and "4 re-encoded" in printed and "1 failed" in printed
    assert "cut.mkv: the file is truncated" in printed
    assert "skipped 1 file(s) that are not media by extension: readme.md" in printed
    for name in ("selfie.mp4", "hflip.mp4", "broadcast.mp4", "web.mp4"):
        meta = probe(dst / name)
        assert (meta.height, meta.width, meta.rotation, meta.mirrored) == (48, 32, 0, False), name
        assert meta.num_frames == 20 and abs(meta.fps - 30) < 0.1, name  # FLV times are whole milliseconds
        with VideoReader(dst / name) as reader:
            frames = reader.get_frames_at([0, 9, 19]).numpy()
        assert [read_index(frame) for frame in frames] == [0, 9, 19], f"{name} is turned or mirrored"
    records = {r["name"]: r for r in map(json.loads, (dst / "prepare_manifest.jsonl").read_text().splitlines())}
    assert records["selfie.mp4"]["mirrored"] and records["selfie.mp4"]["rotation_applied"] == 270
    with VideoReader(src / "selfie.mp4") as mirrored, VideoReader(dst / "selfie.mp4") as prepared:
        # The same picture (scaled), not its mirror image: compare against the source read by pmv, scaled.
        source = mirrored.get_frames_at([5]).numpy()[0, ::2, ::2].astype(np.float32)
        out = prepared.get_frames_at([5]).numpy()[0].astype(np.float32)
        assert np.abs(source - out).mean() < np.abs(source[:, ::-1] - out).mean()
