"""`pmv data check` gives the right verdict for good, broken, odd and missing files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import av
from media import corrupt_middle, make_audio_only, make_video, set_flv_frame_rate, split_hidden_frames, truncate

from pmv.cli.main import main
from pmv.acquire.check import MEDIA_EXTENSIONS, ClipNeed, check_videos, entries_from_folder, skipped_in_folder
from pmv.video import VideoReader

CLIP = ["--num-frames", "4", "--sampling-rate", "4"]  # one clip = 16 frames


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, str]]]:
    """A folder of test videos and a list naming them (plus one that is not there); name -> (label, verdict)."""
    root = tmp_path_factory.mktemp("videos")
    good = make_video(root / "good.mp4", num_frames=30, height=64, width=36, index_in_pixels=False)
    make_video(root / "with_audio.mp4", num_frames=30, height=64, width=36, audio=True)
    make_video(root / "rotated.mp4", num_frames=30, height=64, width=36, rotation=90)
    make_video(root / "landscape.mp4", num_frames=30, height=36, width=64)
    make_video(root / "short.mp4", num_frames=10, height=64, width=36)
    faststart = make_video(root / "faststart_src.mp4", num_frames=30, height=64, width=36, faststart=True, index_in_pixels=False)
    truncate(good, root / "cut_index.mp4", keep_fraction=0.6)
    truncate(faststart, root / "cut_data.mp4", keep_fraction=0.6)
    faststart.unlink()
    corrupt_middle(good, root / "damaged.mp4", at_fraction=0.4, length=2000)
    make_audio_only(root / "audio_only.mp4")
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 50)
    verdicts = {
        "good.mp4": "ok",
        "with_audio.mp4": "ok",
        "rotated.mp4": "ok",
        "landscape.mp4": "ok",
        "short.mp4": "short",
        "cut_index.mp4": "corrupt",
        "cut_data.mp4": "truncated",  # the frames before the cut are readable, but it is not the whole video
        "damaged.mp4": "corrupt",  # with --deep; probing alone cannot see it
        "audio_only.mp4": "no_video",
        "empty.mp4": "empty",
        "text.mp4": "unreadable",
        "gone.mp4": "missing",
    }
    listed = {name: (k % 3, verdict) for k, (name, verdict) in enumerate(verdicts.items())}
    return root, listed


def _write_list(path: Path, listed: dict[str, tuple[int, str]]) -> Path:
    path.write_text("\n".join(f"{name},{label}" for name, (label, _) in listed.items()))
    return path


def test_deep_check_of_a_list_gives_each_verdict(folder, tmp_path, capsys):
    root, listed = folder
    list_file = _write_list(tmp_path / "train_x.csv", listed)
    out = tmp_path / "report"
    argv = ["data", "check", "--list", str(list_file), "--root", str(root), "--deep", "--workers", "2", "--out", str(out), "--no-progress"]
    assert main(argv + CLIP) == 1  # some videos are unusable
    printed = capsys.readouterr().out
    assert "train_x: 5 of 12 usable" in printed and "usable" in printed
    report = json.loads((out / "report.json").read_text())
    got = {video["name"]: video for video in report["videos"]}
    assert {name: video["status"] for name, video in got.items()} == {name: v for name, (_, v) in listed.items()}
    assert got["rotated.mp4"]["rotation"] == 90 and got["rotated.mp4"]["orientation"] == "portrait"
    assert (got["rotated.mp4"]["height"], got["rotated.mp4"]["width"]) == (64, 36)
    assert got["landscape.mp4"]["orientation"] == "landscape"
    assert got["with_audio.mp4"]["has_audio"] and not got["good.mp4"]["has_audio"]
    assert got["good.mp4"]["decoded_frames"] == 30 and got["good.mp4"]["fps"] == 30
    assert got["short.mp4"]["usable"] and not got["audio_only.mp4"]["usable"]
    assert report["summary"]["orientation"] == {"portrait": 6, "landscape": 1}  # of the files with a readable stream
    assert report["summary"]["rotation"] == {"0": 6, "90": 1}
    assert "the file is truncated" in got["cut_data.mp4"]["error"] and not got["cut_data.mp4"]["usable"]
    clean = (out / "train_x_clean.csv").read_text().splitlines()
    assert clean == [f"{name},{label}" for name, (label, v) in listed.items() if v in ("ok", "short")]
    for png in ("duration.png", "fps.png", "resolution.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_only_check_misses_mid_file_damage_but_drops_short_on_request(folder, tmp_path):
    root, listed = folder
    entries = [(name, str(root / name), label) for name, (label, _) in listed.items() if name in ("damaged.mp4", "short.mp4", "good.mp4")]
    report = check_videos(entries, ClipNeed(num_frames=4, sampling_rate=4), workers=1, progress=False)
    assert {v.name: v.status for v in report.videos} == {"good.mp4": "ok", "short.mp4": "short", "damaged.mp4": "ok"}
    # At a target rate of 15 fps, the 1 s videos hold 15 frames: one clip of 16 no longer fits.
    slow = check_videos(entries[:1], ClipNeed(num_frames=4, sampling_rate=4, target_fps=15), workers=1, progress=False)
    assert slow.videos[0].status == "short"


def test_config_checks_every_split_and_probes_shared_videos_once(folder, tmp_path, capsys):
    root, listed = folder
    lists = tmp_path / "lists"
    lists.mkdir()
    good = {name: entry for name, entry in listed.items() if entry[1] == "ok"}
    _write_list(lists / "train_small.csv", {**good, "gone.mp4": listed["gone.mp4"]})
    _write_list(lists / "val_small.csv", dict(list(good.items())[:2]))
    _write_list(lists / "test_small.csv", dict(list(good.items())[:2]))
    config = tmp_path / "cfg.yaml"
    config.write_text(f"data:\n  list_dir: {lists}\n  subset: _small\n  root: {root}\n  num_frames: 4\n  sampling_rate: 4\n")
    out = tmp_path / "report"
    assert main(["data", "check", "--config", str(config), "--out", str(out), "--no-plots", "--workers", "1", "--no-progress"]) == 1
    report = json.loads((out / "report.json").read_text())
    assert len(report["videos"]) == len(good) + 1  # val and test share their videos with train
    assert report["summary"]["per_list"]["train_small"]["missing"] == 1
    assert (out / "val_small_clean.csv").read_text().splitlines() == [f"{n},{good[n][0]}" for n in list(good)[:2]]
    assert "missing" in capsys.readouterr().out
    assert not list(out.glob("*.png"))


def test_nothing_to_check_is_a_clean_error(tmp_path, capsys):
    assert main(["data", "check", "--out", str(tmp_path)]) == 2
    assert "say what to check" in capsys.readouterr().err


def test_a_bare_folder_is_checked_file_by_file(folder, tmp_path, capsys):
    root, listed = folder
    out = tmp_path / "report"
    assert main(["data", "check", "--root", str(root), "--out", str(out), "--no-plots", "--no-progress"] + CLIP) == 1
    report = json.loads((out / "report.json").read_text())
    on_disk = {name: verdict for name, (_, verdict) in listed.items() if verdict != "missing"}
    on_disk["damaged.mp4"] = "ok"  # probing alone cannot see mid-file damage
    assert {video["name"]: video["status"] for video in report["videos"]} == on_disk
    clean = (out / f"{root.name}_clean.csv").read_text().splitlines()
    assert sorted(clean) == sorted(name for name, verdict in on_disk.items() if verdict in ("ok", "short"))


def test_a_folder_of_real_world_containers_is_scanned_whole_and_agrees_with_the_reader(tmp_path, capsys):
    root = tmp_path / "mixed"
    root.mkdir()
    make_video(root / "broadcast.ts", num_frames=30, height=64, width=36, gop=10)
    make_video(root / "camcorder.m2ts", num_frames=30, height=64, width=36, gop=10)
    flv = make_video(tmp_path / "web.flv", num_frames=30, height=64, width=36, gop=10)
    set_flv_frame_rate(flv, root / "web.flv", 1000.0)
    make_video(root / "phone.3gp", num_frames=30, height=64, width=36, gop=10)
    make_video(root / "dvd.mpg", num_frames=30, height=64, width=36, codec="mpeg2video", gop=10)
    make_video(root / "mirrored.mp4", num_frames=30, height=64, width=36, gop=10,
               display_matrix=[0, 1 << 16, 0, 1 << 16, 0, 0, 0, 0, 1 << 30],
               coded_picture=lambda p: p.transpose(1, 0, 2))
    live = make_video(root / "live.webm", num_frames=30, height=64, width=36, codec="libvpx-vp9", bframes=0,
                      muxer_options={"live": "1"})
    whole = make_video(tmp_path / "whole.mkv", num_frames=60, height=64, width=36, gop=10)
    truncate(whole, root / "cut.mkv", keep_fraction=0.5)
    if "libsvtav1" in av.codecs_available:
        split_hidden_frames(make_video(tmp_path / "av1.mkv", num_frames=30, height=64, width=64, codec="libsvtav1",
                                       gop=30), root / "hidden.webm")
    (root / "notes.txt").write_text("not a video")
    (root / "._broadcast.ts").write_bytes(b"\x00\x05\x16\x07")  # a macOS companion file
    assert {".ts", ".m2ts", ".mts", ".flv", ".3gp", ".mpg", ".mpeg", ".wmv", ".ogv"} <= set(MEDIA_EXTENSIONS)
    assert skipped_in_folder(root) == ["._broadcast.ts", "notes.txt"]
    names = [name for name, _, _ in entries_from_folder(root)]
    assert "broadcast.ts" in names and "web.flv" in names and "notes.txt" not in names

    out = tmp_path / "report"
    assert main(["data", "check", "--root", str(root), "--out", str(out), "--no-plots", "--no-progress", "--deep",
                 "--workers", "1"] + CLIP) == 1  # the truncated one
    printed = capsys.readouterr().out
    assert "skipped 2 file(s)" in printed and "notes.txt" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["skipped_files"] == ["._broadcast.ts", "notes.txt"]
    got = {video["name"]: video for video in report["videos"]}
    assert got["cut.mkv"]["status"] == "truncated"
    assert {name: video["status"] for name, video in got.items() if name != "cut.mkv"} == \
        {name: "ok" for name in got if name != "cut.mkv"}
    assert got["web.flv"]["fps"] == pytest.approx(30, rel=0.02)
    assert got["live.webm"]["duration"] == pytest.approx(1.0, abs=0.04)
    assert (got["mirrored.mp4"]["height"], got["mirrored.mp4"]["width"]) == (64, 36)
    for name, video in got.items():  # a verdict the reader agrees with
        with VideoReader(root / name) as reader:
            assert reader.num_frames == video["num_frames"] == video["decoded_frames"], name
            reader.get_frames_at([0, reader.num_frames - 1])
