import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pmv.config.schema import DataConfig
from pmv.data.annotations import load_split
from pmv.acquire.synth import (
    SynthOptions,
    _rng,
    _VideoJob,
    choose_classes,
    render_audio,
    render_frames,
    synthesize,
)
from pmv.errors import DataError
from pmv.video import probe
from pmv.video.reader import VideoReader

SMALL = dict(
    kinds=("motion", "position", "sound"),
    classes_per_kind=2,
    train_per_class=2,
    val_per_class=1,
    test_per_class=1,
    size=(96, 54),
    duration=1.0,
    fps=10,
)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "small"
    summary = synthesize(out, SynthOptions(**SMALL, seed=7), progress=False)
    return out, summary


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_lists_parse_and_splits_are_distinct_videos(small_dataset):
    out, summary = small_dataset
    assert summary.videos == {"train": 12, "val": 6, "test": 6}
    data = DataConfig(list_dir=str(out), root=summary.root)
    splits = {split: load_split(data, split) for split in ("train", "val", "test")}
    for split, annotations in splits.items():
        assert not annotations.missing, split
        assert annotations.class_names == [c.name for c in summary.classes]
        assert sorted(set(annotations.labels)) == list(range(6))
    assert not set(splits["train"].paths) & set(splits["test"].paths)
    assert not set(splits["val"].paths) & set(splits["test"].paths)
    text = (out / "train.csv").read_text()
    assert not text.endswith("\n") and text.splitlines()[0] == "train_000_0000.mp4,0"
    assert (out / "class_name_mapping.csv").read_text().splitlines()[0] == "moving up,0"
    assert [c.kind for c in summary.classes] == ["motion"] * 2 + ["position"] * 2 + ["sound"] * 2
    overrides = summary.config_overrides()
    assert f"data.root={summary.root}" in overrides and "model.num_classes=6" in overrides


def test_videos_are_portrait_h264_with_audio(small_dataset):
    out, summary = small_dataset
    path = Path(summary.root) / "test_005_0000.mp4"
    meta = probe(path)
    assert (meta.height, meta.width) == (96, 54) and meta.orientation == "portrait"
    assert meta.codec == "h264" and meta.has_audio and meta.audio_sample_rate == 16000
    with VideoReader(path) as reader:
        assert reader.num_frames == 10
        frames = reader.get_frames(list(range(10)))
        assert tuple(frames.shape) == (10, 96, 54, 3)
        audio = reader.get_audio(0.0, 1.0, 16000).numpy()
    # a sound class: the tone's pitch is the class (tone 400 Hz, +-3 %)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peak_hz = np.argmax(spectrum) * 16000 / len(audio)
    assert 380 <= peak_hz <= 420


def test_same_seed_same_bytes_any_workers_other_seed_differs(small_dataset, tmp_path):
    out, _ = small_dataset
    again = tmp_path / "again"
    synthesize(again, SynthOptions(**SMALL, seed=7, workers=2), progress=False)
    assert digest(again) == digest(out)
    other = tmp_path / "other"
    synthesize(other, SynthOptions(**{**SMALL, "kinds": ("motion",)}, seed=8), progress=False)
    assert digest(other)["videos/train_000_0000.mp4"] != digest(out)["videos/train_000_0000.mp4"]


def _activity(kind, name, index, size=(160, 90)):
    """Per-pixel temporal spread of the rendered (not encoded) frames, and the object's path over time."""
    options = SynthOptions(size=size, duration=2.0, fps=15)
    job = _VideoJob("unused.mp4", kind, name, f"train/{name}/{index}", options)
    frames = render_frames(job, _rng(0, job.stream_key)).astype(np.float32)
    spread = frames.std(axis=0).mean(axis=-1)  # H x W
    return frames, spread > 20


@pytest.mark.parametrize("band", ["top", "bottom"])
def test_position_classes_act_outside_the_centre_square(band):
    height, width = 160, 90
    square = slice((height - width) // 2, (height + width) // 2)
    for action in ("waving", "blinking"):
        for index in range(3):
            _, active = _activity("position", f"{action} at the {band}", index)
            rows = np.flatnonzero(active.any(axis=1))
            assert rows.size, (action, index)
            assert not active[square].any(), (action, band, index)
            assert (rows < square.start).all() if band == "top" else (rows >= square.stop).all()


@pytest.mark.parametrize("name, axis, sign", [("moving up", 0, -1), ("moving right", 1, 1), ("moving down-left", 1, -1)])
def test_motion_classes_move_in_their_direction(name, axis, sign):
    for index in range(3):
        frames, _ = _activity("motion", name, index)
        # the object is far from the background colour: its centroid is where frames differ from the median frame
        median = np.median(frames, axis=0)
        centroids = []
        for frame in frames[[0, -1]]:
            mask = np.abs(frame - median).sum(-1) > 120
            centroids.append(np.argwhere(mask).mean(0))
        assert sign * (centroids[1][axis] - centroids[0][axis]) > 5


def test_sound_classes_share_visual_statistics_and_differ_in_pitch():
    job_a = _VideoJob("a.mp4", "sound", "tone 200 Hz", "k", SynthOptions())
    job_b = _VideoJob("b.mp4", "sound", "tone 1600 Hz", "k", SynthOptions())
    # same random stream, different class: identical frames, different audio
    assert np.array_equal(render_frames(job_a, _rng(0, "k")), render_frames(job_b, _rng(0, "k")))
    rng_a, rng_b = _rng(0, "k"), _rng(0, "k")
    render_frames(job_a, rng_a)
    render_frames(job_b, rng_b)
    audio_a, audio_b = render_audio(job_a, rng_a), render_audio(job_b, rng_b)
    peaks = [np.argmax(np.abs(np.fft.rfft(a))) * 16000 / len(a) for a in (audio_a, audio_b)]
    assert 190 < peaks[0] < 210 and 1550 < peaks[1] < 1650


def test_option_errors():
    with pytest.raises(DataError, match="not portrait"):
        synthesize("/tmp/unused-pmv-synth", SynthOptions(size=(90, 160)))
    with pytest.raises(DataError, match="unknown synthetic class kind 'smell'"):
        choose_classes(SynthOptions(kinds=("smell",)))
    with pytest.raises(DataError, match="out of range"):
        choose_classes(SynthOptions(kinds=("position",), classes_per_kind=5))
    names = [c.name for c in choose_classes(SynthOptions(kinds=("motion", "position"), num_classes=5))]
    assert names == ["moving up", "waving at the top", "moving down", "waving at the bottom", "moving left"]


def test_cli_writes_a_dataset(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "pmv", "data", "synth", str(out), "--kinds", "position", "--classes-per-kind", "2",
         "--train", "1", "--val", "1", "--test", "1", "--size", "64x36", "--duration", "0.5", "--workers", "1"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 6 videos" in result.stdout and "waving at the bottom" in result.stdout
    assert (out / "val.csv").read_text() == "val_000_0000.mp4,0\nval_001_0000.mp4,1"
    bad = subprocess.run([sys.executable, "-m", "pmv", "data", "synth", str(out), "--kinds", "smell"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "pmv: error: unknown synthetic class kind" in bad.stderr
