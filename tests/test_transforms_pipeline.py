"""Train/test pipelines built from the config: the paper's four recipes, test views, agreement with the ops."""

import numpy as np
import pytest
import torch
from media import make_video

from pmv.config import schema
from pmv.config.schema import TransformConfig
from pmv.data.transforms import build_test_transform, build_train_transform
from pmv.data.transforms import functional as TF
from pmv.data.transforms.functional import TransformError
from pmv.errors import ConfigError

MEAN, STD = [0.45, 0.45, 0.45], [0.225, 0.225, 0.225]
SEED_AUG = dict(randaugment="rand-m7-n4-mstd0.5-inc1", erase_prob=0.25)
RECIPES = {
    "shorter": (TransformConfig(jitter_scales=[256, 320], train_crop=[224, 224], **SEED_AUG), (224, 224)),
    "default": (TransformConfig(scale_relative=[0.08, 1.0], aspect_relative=[0.75, 1.3333], train_crop=[224, 224],
                                **SEED_AUG), (224, 224)),  # fmt: skip
    "rect_256x192": (TransformConfig(train_crop=[256, 192], auto_adjust=True, **SEED_AUG), (256, 192)),
    "rect_288x192": (TransformConfig(train_crop=[288, 192], auto_adjust=True, **SEED_AUG), (288, 192)),
}


def frames_with_position(height, width, num_frames=2):
    """uint8 T x H x W x 3 frames: R = row // 8, G = column // 8 (smooth, so resizing keeps positions readable)."""
    rows = (torch.arange(height) // 8).clamp(max=255).view(1, height, 1).expand(num_frames, height, width)
    cols = (torch.arange(width) // 8).clamp(max=255).view(1, 1, width).expand(num_frames, height, width)
    return torch.stack([rows, cols, torch.full_like(rows, 100)], -1).to(torch.uint8).contiguous()


@pytest.fixture(scope="module")
def portrait():
    return frames_with_position(1280, 720)


@pytest.fixture(scope="module")
def landscape():
    return frames_with_position(720, 1280)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_the_four_recipes_give_their_crop_for_portrait_and_landscape(recipe, portrait, landscape):
    config, crop = RECIPES[recipe]
    transform = build_train_transform(config, MEAN, STD)
    for seed, frames in enumerate([portrait, landscape]):
        clip = transform(frames, torch.Generator().manual_seed(seed))
        assert clip.shape == (3, 2, *crop) and clip.dtype == torch.float32 and clip.is_contiguous()
        assert torch.isfinite(clip).all()


def test_rect_288x192_needs_auto_adjust_on_landscape(landscape):
    without = build_train_transform(TransformConfig(train_crop=[288, 192], auto_adjust=False, jitter_scales=[256, 256]),
                                    MEAN, STD)  # fmt: skip
    with pytest.raises(TransformError, match="auto_adjust"):
        without(landscape, torch.Generator().manual_seed(0))


def test_train_pipeline_equals_resize_crop_flip_normalise():
    portrait = frames_with_position(640, 360)
    config = TransformConfig(jitter_scales=[128, 160], train_crop=[128, 96], random_flip=True)
    transform = build_train_transform(config, MEAN, STD)
    for seed in range(4):
        clip = transform(portrait, torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)  # replay the same draws with the functional ops
        size = TF.sample_jitter_scale(128, 160, g)
        resized = TF.short_side_resize(TF.thwc_to_cthw(portrait), size)
        top, left = TF.random_crop_offsets(resized.shape[-2], resized.shape[-1], (128, 96), g)
        expected = TF.crop(resized, top, left, (128, 96))
        if TF.uniform(g, 0.0, 1.0) < 0.5:
            expected = TF.horizontal_flip(expected)
        expected = TF.normalize(expected, MEAN, STD)
        # one OpenCV warp (coordinates in 1/32 pixel) against cv2.resize + crop, both rounded to uint8: within 1 level
        assert (clip - expected).abs().max() <= 1.0 / (STD[0] * 255) + 1e-5


def test_train_pipeline_is_reproducible_from_the_generator(portrait):
    transform = build_train_transform(RECIPES["rect_256x192"][0], MEAN, STD)
    a = transform(portrait, torch.Generator().manual_seed(11))
    b = transform(portrait, torch.Generator().manual_seed(11))
    c = transform(portrait, torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_train_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="jitter_scales"):
        build_train_transform(TransformConfig(jitter_scales=[320, 256]), MEAN, STD)
    with pytest.raises(ConfigError, match="randaugment"):
        build_train_transform(TransformConfig(randaugment="rand-q3"), MEAN, STD)
    with pytest.raises(ConfigError, match="erase_mode"):
        build_train_transform(TransformConfig(erase_mode="blur"), MEAN, STD)
    with pytest.raises(ConfigError, match="interpolation"):
        build_train_transform(TransformConfig(interpolation="area"), MEAN, STD)


def unnormalise(clip):
    return clip * (0.225 * 255) + 0.45 * 255


@pytest.mark.parametrize("index, top", [(0, 0), (1, 100), (2, 199)])
def test_test_crops_top_centre_bottom_of_a_portrait_video(portrait, index, top):
    test_config = schema.TestConfig(short_side=256, crop=[256, 256])
    transform = build_test_transform(test_config, MEAN, STD, spatial_index=index)
    assert transform.resized_shape(1280, 720) == (455, 256)
    assert transform.crop_offsets(455, 256) == (top, 0)
    clip = transform(portrait)
    assert clip.shape == (3, 2, 256, 256)
    resized = TF.short_side_resize(TF.thwc_to_cthw(portrait), 256)
    expected = TF.normalize(TF.long_side_crop(resized, 256, index), MEAN, STD)
    assert torch.allclose(clip, expected, atol=1e-4)
    first_row = unnormalise(clip)[0, 0, 0, 0]  # R = source row // 8 at the crop's first row
    assert abs(first_row - (top * 1280 / 455) / 8) < 1.0


def test_test_crops_left_centre_right_of_a_landscape_video(landscape):
    lefts = []
    for index in range(3):
        test_config = schema.TestConfig(short_side=256, crop=[224, 224])
        transform = build_test_transform(test_config, MEAN, STD, spatial_index=index)
        assert transform.resized_shape(720, 1280) == (256, 455)
        top, left = transform.crop_offsets(256, 455)
        assert top == 16
        lefts.append(left)
        first_col = unnormalise(transform(landscape))[1, 0, 0, 0]
        assert abs(first_col - (left * 1280 / 455) / 8) < 1.0
    assert lefts == [0, 116, 231]


def test_relative_position_test_crop_and_rect_auto_adjust(portrait, landscape):
    test_config = schema.TestConfig(short_side=256, crop=[224, 224])
    probe = build_test_transform(test_config, MEAN, STD, relative_position=(1.0, 0.5))
    assert probe.crop_offsets(455, 256) == (231, 16)
    assert probe(portrait).shape == (3, 2, 224, 224)
    rect = build_test_transform(schema.TestConfig(short_side=256, crop=[288, 192], auto_adjust=True), MEAN, STD)
    assert rect.resized_shape(720, 1280) == (288, 512)
    assert rect(landscape).shape == (3, 2, 288, 192)
    with pytest.raises(ConfigError):
        build_test_transform(schema.TestConfig(), MEAN, STD, spatial_index=5)
    with pytest.raises(ConfigError):
        build_test_transform(schema.TestConfig(), MEAN, STD, relative_position=(1.5, 0.0))


def test_pipelines_on_frames_decoded_from_a_real_portrait_mp4(tmp_path):
    from pmv.video import VideoReader

    path = make_video(tmp_path / "portrait.mp4", num_frames=8, height=320, width=180)  # real H.264
    with VideoReader(path) as reader:
        frames = reader.get_frames([0, 3, 6])
    assert frames.shape == (3, 320, 180, 3) and frames.dtype == torch.uint8
    small = {
        "shorter": TransformConfig(jitter_scales=[128, 160], train_crop=[112, 112], **SEED_AUG),
        "default": TransformConfig(scale_relative=[0.08, 1.0], aspect_relative=[0.75, 1.3333], train_crop=[112, 112]),
        "rect": TransformConfig(jitter_scales=[128, 160], train_crop=[128, 96], auto_adjust=True, **SEED_AUG),
    }
    for name, config in small.items():
        clip = build_train_transform(config, MEAN, STD)(frames, torch.Generator().manual_seed(0))
        assert clip.shape == (3, 3, *config.train_crop), name
    views = [build_test_transform(schema.TestConfig(short_side=128, crop=[128, 128]), MEAN, STD, spatial_index=i)
             for i in range(3)]  # fmt: skip
    top, centre, bottom = (view(frames) for view in views)
    assert top.shape == centre.shape == bottom.shape == (3, 3, 128, 128)
    resized = TF.short_side_resize(TF.thwc_to_cthw(frames), 128)  # 227 x 128: crops at y = 0, 50, 99
    assert torch.allclose(bottom, TF.normalize(resized[..., 99:227, :], MEAN, STD), atol=1e-4)
    assert not torch.allclose(top, bottom)


def test_writing_into_out_gives_the_same_clip(portrait):
    transform = build_train_transform(RECIPES["rect_256x192"][0], MEAN, STD)
    for seed in range(3):
        plain = transform(portrait, torch.Generator().manual_seed(seed))
        out = torch.full((3, 2, 256, 192), float("nan"))
        written = transform(portrait, torch.Generator().manual_seed(seed), out=out)
        assert written.data_ptr() == out.data_ptr() and torch.equal(written, plain)
    with pytest.raises(TransformError, match="contiguous"):
        transform(portrait, torch.Generator().manual_seed(0), out=torch.empty(3, 2, 192, 256))


def test_copies_in_one_pass_equal_separate_calls(portrait):
    """The repeated-augmentation path (all copies planned, then one pass over the frames) gives the clips of
    separate calls with the same generator, RandAugment and erasing included."""
    config = TransformConfig(train_crop=[256, 192], auto_adjust=True, randaugment="rand-m9-n4-mstd0.5-inc1-p0.9",
                             erase_prob=1.0)  # fmt: skip
    transform = build_train_transform(config, MEAN, STD)
    frames = portrait.clone()
    frames[1] = 255 - frames[1]  # frames differ, so per-frame statistics differ
    for seed in range(4):
        together = transform.copies(frames, 3, torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        apart = torch.stack([transform(frames, g) for _ in range(3)])
        assert together.shape == (3, 3, 2, 256, 192) and torch.equal(together, apart)
    with pytest.raises(TransformError, match="contiguous"):
        transform.copies(frames, 2, torch.Generator(), out=torch.empty(3, 3, 2, 256, 192))


def test_normalising_with_a_table_equals_the_table_then_normalising():
    from pmv.data.transforms.pipeline import normalize_frames

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 8, 6, 3), dtype=torch.uint8, generator=g).numpy()
    mean, inv_std = [120.0, 110.0, 100.0], [1 / 60.0, 1 / 55.0, 1 / 50.0]
    shared = torch.randint(0, 256, (1, 256, 3), dtype=torch.uint8, generator=g).numpy()
    per_frame = torch.randint(0, 256, (3, 256, 3), dtype=torch.uint8, generator=g).numpy()
    for table in (shared, per_frame):
        looked_up = np.stack([np.take_along_axis(table[t % table.shape[0]], frames[t].reshape(-1, 3).astype(np.intp),
                                                 axis=0).reshape(8, 6, 3) for t in range(3)])  # fmt: skip
        expected = normalize_frames(looked_up, mean, inv_std)
        assert torch.allclose(normalize_frames(frames, mean, inv_std, table=table), expected, atol=1e-5)
        strided = np.ascontiguousarray(np.pad(frames, ((0, 0), (0, 0), (0, 2), (0, 0))))[:, :, :6]
        assert torch.allclose(normalize_frames(strided, mean, inv_std, table=table), expected, atol=1e-5)
