"""The six studies' computations on tiny real data (mp4 files made by `pmv data synth` at test time)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pmv.config import Config, config_to_dict, load_config
from pmv.studies.common import StudyRequest, run_key
from pmv.studies.datasets import (
    ORDERS, FrameOrderDataset, ProbeDataset, frame_order, mean_frame, probe_positions,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = ("moving up", "moving down", "tone 200 Hz")
RECIPES = Path(__file__).resolve().parents[1] / "configs" / "demo" / "studies"


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory):
    """3 classes x (train 4, val 2, test 2) videos per class, alternately portrait 56x32 and landscape 32x56."""
    from pmv.acquire.synth import SynthOptions, synthesize

    out = tmp_path_factory.mktemp("mixed")
    options = SynthOptions(class_names=CLASSES, orientation="mixed", size=(56, 32), duration=1.0, fps=12,
                           train_per_class=4, val_per_class=2, test_per_class=2, workers=1)
    return synthesize(out, options, progress=False)


def tiny_config(summary, tmp_path, **extra) -> Config:
    overrides = [*summary.config_overrides(), "data.num_frames=4", "data.sampling_rate=2", "train.epochs=1",
                 "train.batch_size=2", "train.num_workers=0", "train.eval_period=1", "test.short_side=32",
                 "test.crop=[24,24]", "transform.jitter_scales=[32,36]", "transform.train_crop=[24,24]",
                 "test.batch_size=16", f"train.output_dir={tmp_path / 'unused'}",
                 *(f"{k}={v}" for k, v in extra.items())]
    return load_config(RECIPES / "shorter.yaml", overrides)


def make_checkpoint(config, path: Path, model_name: str = "tiny") -> Path:
    """A pmv checkpoint of an untrained model (tests of the test side need no training)."""
    from pmv.engine import checkpointing as ckpt
    from pmv.engine.build import build_model, test_input_size

    config = replace(config, model=replace(config.model, name=model_name))
    torch.manual_seed(0)
    model = build_model(config.model, test_input_size(config))
    state = {"format": ckpt.FORMAT, "version": ckpt.VERSION, "model": model.state_dict(),
             "config": config_to_dict(config), "class_names": list(CLASSES), "epoch": 1}
    return ckpt.atomic_save(state, path)


# ------------------------------------------------------------------------------------------ probe positions
def test_probe_centres_are_the_seeds_16x9_linspace_grid():
    positions = probe_positions()
    assert len(positions) == 144
    seed = [(h, w) for h in np.linspace(0, 1, 16) for w in np.linspace(0, 1, 9)]  # tools/test_net.py, row-major
    assert positions == [(float(h), float(w)) for h, w in seed]
    assert positions[0] == (0.0, 0.0) and positions[8] == (0.0, 1.0) and positions[-1] == (1.0, 1.0)


def test_probe_dataset_decodes_once_and_crops_at_each_position(mixed_data, tmp_path):
    from pmv.data.annotations import load_split
    from pmv.data.transforms import functional as TF
    from pmv.video.reader import VideoReader

    config = tiny_config(mixed_data, tmp_path)
    annotations = load_split(config.data, "test")
    paths, labels = annotations.paths[:2], annotations.labels[:2]
    positions = probe_positions((3, 2))
    dataset = ProbeDataset(paths, labels, list(CLASSES), config.data, config.test, positions)
    assert len(dataset) == 2 * 1 * 6 and len(dataset.paths) == 12
    items = [dataset[i] for i in range(len(dataset))]
    assert dataset.decodes == 2  # one decode per video, six crops from it
    # engine video index = position * num_videos + video; labels repeat per position
    assert [it["index"] for it in items] == [p * 2 + v for v in range(2) for p in range(6)]
    assert all(dataset.labels[it["index"]] == it["label"] for it in items)
    # the top-left and bottom-right crops are exactly the frame's corners after the test resize
    with VideoReader(paths[0], threads=1) as reader:
        meta = reader.metadata
    resized = TF.short_side_resize_shape(meta.height, meta.width, config.test.short_side)
    frames = dataset._frames(0, 0)
    assert tuple(frames.shape[1:3]) == resized
    clip = TF.normalize(TF.thwc_to_cthw(frames), config.data.mean, config.data.std)
    crop = config.test.crop
    top_left = TF.relative_position_crop(clip, crop, (0.0, 0.0))
    bottom_right = TF.relative_position_crop(clip, crop, (1.0, 1.0))
    assert torch.allclose(items[0]["clip"], top_left, atol=1e-4)
    assert torch.allclose(items[5]["clip"], bottom_right, atol=1e-4)
    assert torch.allclose(top_left, clip[..., : crop[0], : crop[1]])
    assert torch.allclose(bottom_right, clip[..., -crop[0]:, -crop[1]:])


def test_mean_frame_has_the_test_scale(mixed_data, tmp_path):
    config = tiny_config(mixed_data, tmp_path)
    portrait = [p for p in sorted(Path(mixed_data.root).glob("test_*_0000.mp4"))]
    frame = mean_frame([str(p) for p in portrait], config.test)
    assert frame.shape == (56, 32, 3) and 0 <= frame.min() and frame.max() <= 1


# ------------------------------------------------------------------------------------------ frame orders
def test_frame_orders_are_what_they_say():
    assert frame_order("ordered", 8, 0).tolist() == list(range(8))
    assert frame_order("reversed", 8, 0).tolist() == list(range(7, -1, -1))
    assert frame_order("single_frame", 8, 0).tolist() == [4] * 8
    seen = set()
    for key in range(50):
        perm = frame_order("shuffled", 8, key)
        assert sorted(perm.tolist()) == list(range(8))  # a permutation
        assert perm.tolist() not in (list(range(8)), list(range(7, -1, -1)))  # neither order it is compared with
        assert torch.equal(perm, frame_order("shuffled", 8, key))  # fixed per item
        seen.add(tuple(perm.tolist()))
    assert len(seen) > 40  # and different between items
    assert len({tuple(frame_order("shuffled", 3, k).tolist()) for k in range(30)}) == 4  # 3! minus the 2 orders
    with pytest.raises(Exception, match="at least 3 frames"):
        frame_order("shuffled", 2, 0)


class _Frames(torch.utils.data.Dataset):
    """Clips whose frame t is filled with the value t (so the order can be read back)."""

    paths, labels, class_names = ["a", "b"], [0, 1], ["x", "y"]

    def __len__(self):
        return 2

    def __getitem__(self, index):
        clip = torch.arange(6, dtype=torch.float32).view(1, 6, 1, 1).expand(3, 6, 4, 2).clone()
        return {"clip": clip, "label": index, "index": index, "temporal_view": 0, "spatial_view": 1, "valid": True}


@pytest.mark.parametrize("order", ORDERS)
def test_frame_order_dataset_reorders_the_time_axis(order):
    dataset = FrameOrderDataset(_Frames(), order)
    assert dataset.paths == ["a", "b"] and dataset.class_names == ["x", "y"] and len(dataset) == 2
    for index in range(2):
        item = dataset[index]
        frames = item["clip"][0, :, 0, 0].long()
        assert torch.equal(frames, frame_order(order, 6, index))
        assert item["label"] == index and item["clip"].shape == (3, 6, 4, 2)


# ------------------------------------------------------------------------------------------ format
def test_split_by_orientation_balances_training_and_keeps_every_test_video(mixed_data, tmp_path):
    from pmv.data.annotations import load_split
    from pmv.studies.format import split_by_orientation
    from pmv.video import probe

    config = tiny_config(mixed_data, tmp_path)
    subsets = split_by_orientation(config, tmp_path / "lists")
    for orientation in ("portrait", "landscape"):
        sub = subsets.configs[orientation]
        for split in ("train", "val", "test"):
            annotations = load_split(sub.data, split)
            assert annotations.class_names == list(CLASSES)
            assert {probe(p).orientation for p in annotations.paths} == {orientation}
            assert sorted(set(annotations.labels)) == [0, 1, 2]
        assert subsets.counts[orientation] == {"train": 6, "val": 3, "test": 3}
    assert subsets.counts["portrait"]["train"] == subsets.counts["landscape"]["train"]


# ------------------------------------------------------------------------------------------ studies end to end
def _request(config, tmp_path, name, checkpoints=(), **options):
    return StudyRequest(configs=[("shorter", config)], out_dir=tmp_path / name, runs_dir=tmp_path / "runs",
                        device="cpu", checkpoints=list(checkpoints), options=options)


def test_views_study_decodes_each_video_once(mixed_data, tmp_path, monkeypatch):
    from pmv.studies import views
    from pmv.video.reader import VideoReader

    config = tiny_config(mixed_data, tmp_path)
    checkpoint = make_checkpoint(config, tmp_path / "ckpt.pt")
    calls = []
    original = VideoReader.get_frames_at

    def counting(self, indices):
        calls.append(1)
        return original(self, indices)

    monkeypatch.setattr(VideoReader, "get_frames_at", counting)
    assert views.TEMPORAL_VIEWS == (1, 3, 5, 7, 10) and views.SPATIAL_VIEWS == (1, 3)
    outcome = views.run(_request(config, tmp_path, "views", [checkpoint], temporal_views=[1, 3, 5]))
    num_test = len(mixed_data.classes) * 2
    assert len(calls) == num_test  # one decode per video for every view count, with 1 and with 3 crops
    body = json.loads((tmp_path / "views" / "results.json").read_text())
    assert [(r["temporal"], r["spatial"]) for r in body["rows"]] == [(t, s) for s in (1, 3) for t in (1, 3, 5)]
    assert set(body["rows"][0]) == {"temporal", "spatial", "top1", "gflops"}
    per_view = body["gflops_per_view"]
    assert body["rows"][-1]["gflops"] == pytest.approx(per_view * 15)
    assert (tmp_path / "views" / "views_top1_vs_gflops.png").is_file()
    assert outcome.results == body

    # The one-crop rows taken from the 3-crop decode equal a sweep that decodes the centre crop alone.
    from pmv.engine.evaluator import run_view_sweep
    from pmv.studies.common import load_for_test

    model, loaded, names = load_for_test(checkpoint, torch.device("cpu"), config)
    alone = run_view_sweep(loaded, model, tmp_path / "alone", [1, 3, 5], spatial_view_counts=[1],
                           class_names=names, progress=False)
    assert [p.metrics.top1 for p in alone.protocols] == [r["top1"] for r in body["rows"][:3]]


def test_temporal_study_keys_and_orders(mixed_data, tmp_path):
    from pmv.studies import temporal

    config = tiny_config(mixed_data, tmp_path)
    checkpoint = make_checkpoint(config, tmp_path / "ckpt.pt")
    temporal.run(_request(config, tmp_path, "temporal", [checkpoint]))
    body = json.loads((tmp_path / "temporal" / "results.json").read_text())
    assert set(body["top1"]) == {"ordered", "reversed", "shuffled", "single_frame", "frame_model"}
    assert all(0.0 <= v <= 100.0 for v in body["top1"].values())
    assert body["frame_model"] == "tiny_frame"
    assert set(body["top1_by_kind"]["ordered"]) == {"motion", "sound"}
    assert (tmp_path / "temporal" / "temporal_top1.png").is_file()
    assert (tmp_path / "temporal" / "report.md").read_text().startswith("# Study: temporal")


def test_spatial_bias_study_writes_a_16x9_grid_per_checkpoint(mixed_data, tmp_path):
    from pmv.studies import spatial_bias
    from pmv.studies.format import split_by_orientation

    config = tiny_config(mixed_data, tmp_path)
    subsets = split_by_orientation(config, tmp_path / "lists")
    portrait, landscape = subsets.configs["portrait"], subsets.configs["landscape"]
    checkpoints = [make_checkpoint(portrait, tmp_path / "p.pt"), make_checkpoint(landscape, tmp_path / "l.pt")]
    request = StudyRequest(configs=[("p", portrait), ("l", landscape)], out_dir=tmp_path / "sb",
                           runs_dir=tmp_path / "runs", device="cpu", checkpoints=checkpoints)
    spatial_bias.run(request)
    body = json.loads((tmp_path / "sb" / "results.json").read_text())
    grid = np.array(body["top1"])
    assert grid.shape == (16, 9) and body["checkpoint"] == str(checkpoints[0])
    assert set(body["probes"]) == {"Probing-P", "Probing-L"}
    # an untrained model's per-position accuracy is a fraction of the 3 portrait test videos
    counts = grid.ravel() * 3 / 100
    assert np.allclose(counts, np.round(counts), atol=1e-3) and counts.min() >= 0 and counts.max() <= 3
    per_class = body["probes"]["Probing-P"]["top1_per_class"]
    assert set(per_class) == set(CLASSES) and np.array(per_class["moving up"]).shape == (16, 9)
    assert (tmp_path / "sb" / "probe_heatmap.png").is_file()
    assert (tmp_path / "sb" / "probe_per_class.png").is_file()


def test_format_and_augmentation_train_and_share_runs(mixed_data, tmp_path):
    from pmv.studies import augmentation, format as format_study

    config = tiny_config(mixed_data, tmp_path)
    outcome = format_study.run(_request(config, tmp_path, "format"))
    body = json.loads((tmp_path / "format" / "results.json").read_text())
    assert set(body["top1"]) == {"portrait", "landscape"}
    assert all(set(row) == {"portrait", "landscape"} for row in body["top1"].values())
    assert (tmp_path / "format" / "format_top1.png").is_file()
    # the same recipe on the portrait lists is the same run (no second training)
    portrait = outcome.trained["format-portrait"]
    rect = replace(portrait.config, transform=replace(portrait.config.transform, train_crop=[40, 24],
                                                      auto_adjust=True), test=replace(portrait.config.test, crop=[40, 24]))
    before = sorted(p.name for p in (tmp_path / "runs").iterdir())
    request = StudyRequest(configs=[("shorter", portrait.config), ("rect", rect)], out_dir=tmp_path / "aug",
                           runs_dir=tmp_path / "runs", device="cpu")
    augmentation.run(request)
    after = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(after) == len(before) + 1  # only the rect recipe trained
    body = json.loads((tmp_path / "aug" / "results.json").read_text())
    assert set(body["top1"]) == {"shorter", "rect"}
    assert body["cost"]["rect"]["train_crop"] == [40, 24]
    assert (tmp_path / "aug" / "training_curves.png").is_file()


def test_run_key_changes_with_config_and_lists(mixed_data, tmp_path):
    config = tiny_config(mixed_data, tmp_path)
    assert run_key(config) == run_key(replace(config, train=replace(config.train, output_dir="elsewhere")))
    assert run_key(config) != run_key(replace(config, train=replace(config.train, epochs=2)))
    copy = tmp_path / "lists"
    copy.mkdir()
    for name in ("train.csv", "val.csv", "test.csv", "class_name_mapping.csv"):
        (copy / name).write_text((Path(mixed_data.list_dir) / name).read_text())
    moved = replace(config, data=replace(config.data, list_dir=str(copy)))
    first_video = Path(mixed_data.root) / (copy / "train.csv").read_text().split(",", 1)[0]
    stat = first_video.stat()
    os.utime(first_video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed_file = run_key(moved)
    os.utime(first_video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    restored = run_key(moved)
    assert changed_file != restored  # a video rewritten under its name
    (copy / "train.csv").write_text((copy / "train.csv").read_text().split("\n", 1)[1])
    assert run_key(moved) != restored  # a video dropped from the list


def test_augmentation_refuses_different_budgets(mixed_data, tmp_path):
    from pmv.errors import ConfigError
    from pmv.studies import augmentation

    config = tiny_config(mixed_data, tmp_path)
    other = replace(config, train=replace(config.train, epochs=3))
    request = StudyRequest(configs=[("a", config), ("b", other)], out_dir=tmp_path / "aug", runs_dir=tmp_path / "r",
                           device="cpu")
    with pytest.raises(ConfigError, match="same budget and seed"):
        augmentation.run(request)


def test_audio_study_trains_visual_audio_visual_and_audio_only_alike(mixed_data, tmp_path, monkeypatch):
    from pmv.models.tiny import TinyAudioVisualNet
    from pmv.studies import audio

    seen = []
    original = TinyAudioVisualNet.forward

    def recording(self, clip, audio_input=None):
        seen.append((self.modality, self.training, tuple(audio_input.shape)))
        return original(self, clip, audio_input)

    monkeypatch.setattr(TinyAudioVisualNet, "forward", recording)
    config = tiny_config(mixed_data, tmp_path, **{"data.audio_frames": 16, "data.audio_mel_bins": 16})
    outcome = audio.run(_request(config, tmp_path, "audio"))
    body = json.loads((tmp_path / "audio" / "results.json").read_text())
    assert set(body["top1"]) == {"visual", "audio_visual", "audio"}
    assert body["models"] == {"visual": "tiny", "audio_visual": "tiny_av", "audio": "tiny_av"}
    # AV batches carry audio: with a misaligned negative (channel 1) in training, the positive only in test
    av_train = {shape for modality, training, shape in seen if modality == "audio_visual" and training}
    av_test = {shape for modality, training, shape in seen if modality == "audio_visual" and not training}
    assert av_train and all(shape[1:] == (2, 16, 16) for shape in av_train)
    assert av_test and all(shape[1:] == (1, 16, 16) for shape in av_test)
    assert any(modality == "audio" for modality, _, _ in seen)
    trained = outcome.trained
    assert trained["audio-visual"].config.data.audio is False
    assert trained["audio-audio_visual"].config.data.audio_negatives is True
    assert trained["audio-audio"].config.model.options == {"modality": "audio"}
    assert len({(t.config.train.epochs, t.config.train.seed) for t in trained.values()}) == 1  # trained alike
    assert (tmp_path / "audio" / "audio_top1.png").is_file()


def test_tiny_av_trains_tests_and_resumes_exactly_through_the_engine(mixed_data, tmp_path):
    from pmv.engine import checkpointing as ckpt
    from pmv.engine.evaluator import evaluate_checkpoint
    from pmv.engine.trainer import train

    config = tiny_config(mixed_data, tmp_path, **{"data.audio": "true", "data.audio_negatives": "true",
                                                  "data.audio_frames": 16, "data.audio_mel_bins": 16,
                                                  "model.name": "tiny_av", "train.epochs": 2,
                                                  "train.eval_period": 2, "train.checkpoint_period": 1})

    def run(folder, epochs, resume=None):
        cfg = replace(config, train=replace(config.train, output_dir=str(tmp_path / folder), epochs=epochs))
        return train(cfg, device="cpu", resume=resume)

    straight = run("straight", 2)
    run("split", 1)
    first = ckpt.list_checkpoints(tmp_path / "split")[-1]
    resumed = run("split", 2, resume=first)
    a = ckpt.read_checkpoint(straight.last_checkpoint)["model"]
    b = ckpt.read_checkpoint(resumed.last_checkpoint)["model"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    report = evaluate_checkpoint(straight.last_checkpoint, output_dir=tmp_path / "test", device="cpu")
    assert report.main.metrics.num_videos == len(CLASSES) * 2 and report.invalid_videos == []


def test_synth_orientation_class_list_and_plain_background(tmp_path):
    from pmv.acquire.synth import SynthOptions, synthesize
    from pmv.errors import DataError
    from pmv.video import VideoReader, probe

    options = SynthOptions(class_names=("tone 800 Hz", "waving at the top"), orientation="landscape",
                           background="plain", size=(56, 32), duration=1.0, fps=8, train_per_class=1,
                           val_per_class=0, test_per_class=0, workers=1)
    summary = synthesize(tmp_path / "l", options, progress=False)
    assert [c.name for c in summary.classes] == ["tone 800 Hz", "waving at the top"]
    assert [c.kind for c in summary.classes] == ["sound", "position"]
    videos = sorted(Path(summary.root).glob("*.mp4"))
    assert {(probe(v).height, probe(v).width) for v in videos} == {(32, 56)}
    with VideoReader(str(videos[0])) as reader:  # a sound class: plain background, a wandering object
        frame = reader.get_frames_at([0])[0].float()
    corner = frame[:4, :4].reshape(-1, 3)
    assert corner.std(0).max() < 12  # one colour plus encoder noise, no texture
    with pytest.raises(DataError, match="unknown synthetic class"):
        synthesize(tmp_path / "x", replace(options, class_names=("moving sideways", "tone 800 Hz")), progress=False)
    with pytest.raises(DataError, match="orientation"):
        synthesize(tmp_path / "x", replace(options, orientation="square"), progress=False)
