import logging
import math
import shutil

import pytest
import torch

from pmv.config.schema import DataConfig, TransformConfig
from pmv.config.schema import TestConfig as ViewConfig  # a name pytest does not try to collect
from pmv.data import sampling
from pmv.data.audio import log_mel, mel_filterbank
from pmv.data.dataset import build_test_dataset, build_train_dataset, build_video_views_dataset
from pmv.data.loader import build_loader, collate_clips
from pmv.acquire.synth import SynthOptions, synthesize
from pmv.data.transforms import functional as TF
from pmv.video.reader import VideoReader

BROKEN = "broken.mp4"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """6 classes (motion, position, sound), 2 train + 1 test video each, 96x54, 10 frames; plus a broken file
    listed in train and test."""
    out = tmp_path_factory.mktemp("clips")
    options = SynthOptions(classes_per_kind=2, train_per_class=2, val_per_class=0, test_per_class=1,
                           size=(96, 54), duration=1.0, fps=10, seed=3)
    synthesize(out, options, progress=False)
    (out / "videos" / BROKEN).write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    for split in ("train", "test"):
        path = out / f"{split}.csv"
        rows = path.read_text().splitlines()
        rows.insert(1, f"{BROKEN},0")
        path.write_text("\n".join(rows))
    return out


def data_config(root, **overrides):
    return DataConfig(list_dir=str(root), root=str(root / "videos"), num_frames=4, sampling_rate=2, **overrides)


TRAIN = dict(jitter_scales=[54, 64], train_crop=[80, 48], randaugment="rand-m7-n2-mstd0.5-inc1", erase_prob=0.5)


def test_train_item_shapes_and_labels(dataset_dir):
    dataset = build_train_dataset(data_config(dataset_dir), TransformConfig(**TRAIN))
    assert dataset.num_classes == 6 and len(dataset.class_names) == 6
    assert len(dataset) == 13 and dataset.paths[1].endswith(BROKEN)
    dataset.generator = torch.Generator().manual_seed(0)
    item = dataset[4]
    assert item["clip"].shape == (3, 4, 80, 48) and item["clip"].dtype == torch.float32
    assert item["index"] == 4 and item["label"] == dataset.labels[4]
    assert "audio" not in item
    # normalised values, not 0..255
    assert -3 < item["clip"].mean() < 3


def test_inception_crop_path(dataset_dir):
    transform = TransformConfig(train_crop=[64, 32], scale_relative=[0.3, 1.0], aspect_relative=[0.5, 1.0])
    item = build_train_dataset(data_config(dataset_dir), transform)[0]
    assert item["clip"].shape == (3, 4, 64, 32)


def test_repeated_augmentation_from_one_decode(dataset_dir):
    dataset = build_train_dataset(data_config(dataset_dir), TransformConfig(**TRAIN, num_sample=3))
    dataset.generator = torch.Generator().manual_seed(1)
    items = [dataset[i] for i in (0, 2)]
    assert items[0]["clip"].shape == (3, 3, 4, 80, 48)
    assert not torch.equal(items[0]["clip"][0], items[0]["clip"][1])  # different augmentations
    batch = collate_clips(items)
    assert batch["clip"].shape == (6, 3, 4, 80, 48)
    assert batch["label"].tolist() == [dataset.labels[0]] * 3 + [dataset.labels[2]] * 3
    assert batch["index"].tolist() == [0, 0, 0, 2, 2, 2]


def test_copies_written_in_place_equal_separate_transform_calls(dataset_dir):
    """num_sample copies go straight into their slots of the stack; same clips as calling the transform in turn."""
    data = data_config(dataset_dir)
    dataset = build_train_dataset(data, TransformConfig(**TRAIN, num_sample=2))
    dataset.generator = torch.Generator().manual_seed(4)
    index = next(i for i, path in enumerate(dataset.paths) if not path.endswith(BROKEN))
    item = dataset[index]
    # replay: the item generator, then the clip's frames, then each copy's transform from the same generator
    replay = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (), generator=torch.Generator().manual_seed(4))))
    with VideoReader(dataset.paths[index], threads=1) as reader:
        clip = sampling.train_clip(reader.num_frames, data.num_frames, data.sampling_rate, reader.metadata.fps,
                                   data.target_fps, replay)  # fmt: skip
        frames = reader.get_frames(clip.indices)
    copies = [dataset.transform(frames, replay) for _ in range(2)]
    assert torch.equal(item["clip"], torch.stack(copies))


def test_broken_video_in_training_is_replaced_and_counted(dataset_dir, caplog):
    dataset = build_train_dataset(data_config(dataset_dir), TransformConfig(**TRAIN))
    dataset.generator = torch.Generator().manual_seed(2)
    with caplog.at_level(logging.WARNING, logger="pmv.data.dataset"):
        first = dataset[1]
        second = dataset[1]
    assert first["index"] != 1 and second["index"] != 1
    assert first["clip"].shape == (3, 4, 80, 48)
    assert dataset.failures == 1
    assert list(dataset.failed) == [dataset.paths[1]]
    assert "not" in dataset.failed[dataset.paths[1]]  # the reader's reason, e.g. "not a media file ..."
    warnings = [r for r in caplog.records if "cannot decode" in r.getMessage()]
    assert len(warnings) == 1 and BROKEN in warnings[0].getMessage()
    # the replacement is drawn from the item's generator: the same seed gives the same replacement
    again = build_train_dataset(data_config(dataset_dir), TransformConfig(**TRAIN))
    again.generator = torch.Generator().manual_seed(2)
    assert again[1]["index"] == first["index"]


def test_test_views_enumerate_every_view_and_mark_broken_video(dataset_dir):
    test = ViewConfig(num_temporal_views=2, num_spatial_views=3, short_side=54, crop=[54, 54])
    dataset = build_test_dataset(data_config(dataset_dir), test)
    assert len(dataset) == 7 * 2 * 3
    items = [dataset[i] for i in range(len(dataset))]
    views = [(it["index"], it["temporal_view"], it["spatial_view"]) for it in items]
    assert views == [(v, t, s) for v in range(7) for t in range(2) for s in range(3)]
    broken = [it for it in items if it["index"] == 1]
    assert all(not it["valid"] for it in broken) and all(it["clip"].abs().sum() == 0 for it in broken)
    assert all(it["clip"].shape == (3, 4, 54, 54) for it in items)
    assert all(it["valid"] for it in items if it["index"] != 1)
    assert dataset.failures == 1 and dataset.paths[1] in dataset.failed
    # crops along the long side of a portrait frame: top, centre, bottom
    video = [it["clip"] for it in items if it["index"] == 0 and it["temporal_view"] == 0]
    with VideoReader(dataset.paths[0], size=(96, 54)) as reader:
        frames = reader.get_frames([0, 2, 4, 6])
    for spatial, clip in enumerate(video):
        top = (0, 21, 42)[spatial]
        expected = TF.normalize(TF.thwc_to_cthw(frames)[:, :, top : top + 54], [0.45] * 3, [0.225] * 3)
        assert torch.allclose(clip, expected)


def test_test_short_side_resizes_in_the_decoder(dataset_dir):
    test = ViewConfig(num_temporal_views=1, num_spatial_views=1, spatial_index=1, short_side=36, crop=[48, 32])
    item = build_test_dataset(data_config(dataset_dir), test)[0]
    assert item["clip"].shape == (3, 4, 48, 32) and item["spatial_view"] == 1


def test_video_views_match_the_test_dataset(dataset_dir):
    data = data_config(dataset_dir)
    test = ViewConfig(num_spatial_views=3, short_side=54, crop=[54, 54])
    views = build_video_views_dataset(data, test, temporal_view_counts=[1, 3])
    assert len(views) == 7
    item = views[2]
    assert item["valid"] and item["clips"].shape == (12, 3, 4, 54, 54)
    expected_table = [(1, 0, s) for s in range(3)] + [(3, k, s) for k in range(3) for s in range(3)]
    assert item["views"].tolist() == [list(row) for row in expected_table]
    for count in (1, 3):
        single = build_test_dataset(data, ViewConfig(num_temporal_views=count, num_spatial_views=3, short_side=54,
                                                     crop=[54, 54]))
        for k in range(count):
            for s in range(3):
                row = expected_table.index((count, k, s))
                reference = single[2 * count * 3 + k * 3 + s]
                assert torch.equal(item["clips"][row], reference["clip"])
    broken = views[1]
    assert not broken["valid"] and broken["clips"].shape == (12, 3, 4, 54, 54)
    assert views.failures == 1


def test_audio_log_mel_of_sound_classes(dataset_dir):
    dataset = build_train_dataset(data_config(dataset_dir, audio=True), TransformConfig(**TRAIN))
    dataset.generator = torch.Generator().manual_seed(0)
    names = dataset.class_names
    low = next(i for i, lab in enumerate(dataset.labels) if names[lab] == "tone 200 Hz")
    high = next(i for i, lab in enumerate(dataset.labels) if names[lab] == "tone 400 Hz")
    spectra = [dataset[i]["audio"] for i in (low, high)]
    assert spectra[0].shape == (1, 128, 80)
    peaks = [int(s[0].mean(0).argmax()) for s in spectra]
    assert peaks[1] > peaks[0]


def test_mel_filterbank_and_log_mel():
    bank = mel_filterbank(16000, 512, 40)
    assert bank.shape == (40, 257) and (bank >= 0).all()
    t = torch.arange(16000) / 16000
    spec = log_mel(torch.sin(2 * math.pi * 1000 * t), 16000, 32.0, 16.0, 40)
    assert spec.shape == (1 + (16000 - 512) // 256, 40)
    mel_of = lambda hz: 2595 * math.log10(1 + hz / 700)  # noqa: E731
    expected_bin = mel_of(1000) / mel_of(8000) * 41 - 1
    assert abs(int(spec.mean(0).argmax()) - expected_bin) <= 1


def test_loader_is_deterministic_for_a_seed(dataset_dir):
    data = data_config(dataset_dir)
    transform = TransformConfig(**{**TRAIN, "randaugment": "rand-m7-n1-mstd0.5-inc1"})

    def batches(seed, workers):
        dataset = build_train_dataset(data, transform)
        loader = build_loader(dataset, batch_size=3, shuffle=True, num_workers=workers, seed=seed,
                              persistent_workers=False)
        return [(b["clip"].clone(), b["index"].tolist()) for b in loader]

    first = batches(5, 2)
    second = batches(5, 2)
    assert len(first) == 5
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(first, second))
    inline = batches(5, 0)
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(inline, batches(5, 0)))
    other = batches(6, 0)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(inline, other))


def test_missing_video_is_reported(dataset_dir, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset_dir, root)
    (root / "videos" / "test_000_0000.mp4").unlink()
    dataset = build_test_dataset(data_config(root), ViewConfig(short_side=54, crop=[54, 54]))
    assert dataset.missing == [str(root / "videos" / "test_000_0000.mp4")]
    item = dataset[0]
    assert not item["valid"] and dataset.failures == 1


def test_preview_cli_writes_a_png(dataset_dir, tmp_path, capsys):
    from PIL import Image

    from pmv.cli.main import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "data: {num_frames: 4, sampling_rate: 2}\n"
        "transform: {jitter_scales: [54, 64], train_crop: [80, 48], randaugment: rand-m7-n4-mstd0.5-inc1}\n"
    )
    out = tmp_path / "preview.png"
    code = main(["data", "preview", str(recipe), f"data.list_dir={dataset_dir}", f"data.root={dataset_dir / 'videos'}",
                 "--num", "3", "--frames", "2", "--out", str(out)])
    assert code == 0 and "3 train clips" in capsys.readouterr().out
    image = Image.open(out)
    # 3 rows of 80-pixel crops; each row: full frame (80 x 45) + 2 crops of width 48
    assert image.height >= 3 * 80 and image.width >= 45 + 2 * 48
    assert main(["data", "preview", str(tmp_path / "none.yaml"), "--out", str(out)]) == 2


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_train_transform_equals_resize_crop_flip_normalise(dataset_dir, seed):
    """Without RandAugment the one-pass sampler gives the seed's chain: short-side resize of the whole frame
    (bilinear), random crop, flip, normalise."""
    from pmv.data.transforms import build_train_transform

    data = data_config(dataset_dir)
    config = TransformConfig(jitter_scales=[54, 70], train_crop=[80, 48])
    with VideoReader(dataset_dir / "videos" / "train_003_0001.mp4") as reader:
        frames = reader.get_frames([0, 3, 6, 9])
    clip = build_train_transform(config, data.mean, data.std)(frames, torch.Generator().manual_seed(seed))
    generator = torch.Generator().manual_seed(seed)
    size = TF.sample_jitter_scale(54, 70, generator)
    resized = TF.short_side_resize(TF.thwc_to_cthw(frames).float(), size)
    top, left = TF.random_crop_offsets(resized.shape[-2], resized.shape[-1], (80, 48), generator)
    expected = TF.crop(resized, top, left, (80, 48))
    if TF.uniform(generator, 0.0, 1.0) < 0.5:
        expected = TF.horizontal_flip(expected)
    expected = TF.normalize(expected, data.mean, data.std)
    assert clip.shape == expected.shape == (3, 4, 80, 48)
    # one uint8 warp (OpenCV: coordinates in 1/32 pixel) against a float resize: within the documented tolerance
    assert (clip - expected).abs().max() * (min(data.std) * 255) <= 2.0
