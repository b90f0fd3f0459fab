"""Functional spatial transforms: the seed's semantics (seed_code.md 2.2-2.5) on small tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from pmv.data.transforms import functional as TF
from pmv.data.transforms.functional import TransformError


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def row_index_clip(height, width, frames=2):
    """C x T x H x W float clip whose value at (y, x) is the row index y (channel 0) and column x (channel 1)."""
    rows = torch.arange(height, dtype=torch.float32).view(1, 1, height, 1).expand(1, frames, height, width)
    cols = torch.arange(width, dtype=torch.float32).view(1, 1, 1, width).expand(1, frames, height, width)
    return torch.cat([rows, cols, torch.zeros_like(rows)]).contiguous()


# ------------------------------------------------------------------------------------------------ short-side jitter
@pytest.mark.parametrize(
    "frame, size, expected",
    [((1280, 720), 256, (455, 256)), ((720, 1280), 256, (256, 455)), ((300, 300), 256, (256, 256)),
     ((1280, 720), 320, (568, 320)), ((480, 270), 300, (533, 300))],
)  # fmt: skip
def test_short_side_resize_shape_floors_the_long_side(frame, size, expected):
    assert TF.short_side_resize_shape(*frame, size) == expected
    clip = torch.zeros(3, 1, *frame)
    assert tuple(TF.short_side_resize(clip, size).shape[-2:]) == expected


def test_short_side_already_equal_is_a_no_op():
    clip = torch.rand(3, 2, 455, 256)
    assert TF.short_side_resize(clip, 256) is clip
    assert TF.short_side_resize_shape(256, 455, 256) == (256, 455)


def test_short_side_resize_is_bilinear_align_corners_false_without_antialias():
    clip = row_index_clip(64, 32, frames=1)
    out = TF.short_side_resize(clip, 16)  # 2x downsample: source row of output d is (d + 0.5) * 2 - 0.5
    assert out.shape == (3, 1, 32, 16)
    expected_rows = torch.arange(32, dtype=torch.float32) * 2 + 0.5
    assert torch.allclose(out[0, 0, :, 0], expected_rows)
    assert torch.allclose(out[1, 0, 0, :], torch.arange(16, dtype=torch.float32) * 2 + 0.5)


def test_jitter_scale_draws_cover_the_range_and_are_reproducible():
    g = gen(1)
    draws = [TF.sample_jitter_scale(256, 320, g) for _ in range(400)]
    assert min(draws) == 256 and max(draws) == 320
    inverse = [TF.sample_jitter_scale(256, 320, g, inverse_uniform=True) for _ in range(400)]
    assert 256 <= min(inverse) and max(inverse) <= 320
    assert [TF.sample_jitter_scale(256, 320, gen(7)) for _ in range(3)] == [
        TF.sample_jitter_scale(256, 320, gen(7)) for _ in range(3)
    ]
    assert {TF.sample_jitter_scale(224, 224, g) for _ in range(20)} == {224}
    out = TF.random_short_side_scale_jitter(torch.zeros(3, 1, 1280, 720), 256, 320, gen(3))
    size = out.shape[-1]
    assert 256 <= size <= 320 and out.shape[-2] == math.floor(1280 / 720 * size)


# ------------------------------------------------------------------------------------------------ auto-adjust (2.3)
PORTRAIT, LANDSCAPE, SQUARE = (1280, 720), (720, 1280), (720, 720)  # H x W


@pytest.mark.parametrize("frame", [PORTRAIT, LANDSCAPE, SQUARE])
def test_auto_adjust_leaves_256x192_and_192x256_unchanged(frame):
    assert TF.adjust_jitter_scales(256, 320, (256, 192), frame) == (256, 320)
    assert TF.adjust_jitter_scales(256, 320, (192, 256), frame) == (256, 320)


def test_auto_adjust_288x192_raises_min_for_landscape_and_square_only():
    assert TF.adjust_jitter_scales(256, 320, (288, 192), LANDSCAPE) == (288, 320)
    assert TF.adjust_jitter_scales(256, 320, (288, 192), SQUARE) == (288, 320)
    assert TF.adjust_jitter_scales(256, 320, (288, 192), PORTRAIT) == (256, 320)


def test_auto_adjust_checks_are_asymmetric_as_in_the_seed():
    # portrait + tall crop: only the long side is checked: ceil(720 / 1280 * 288) = 162, the crop width is not
    assert TF.adjust_jitter_scales(128, 320, (288, 192), PORTRAIT) == (162, 320)
    # portrait + wide crop: min >= crop width
    assert TF.adjust_jitter_scales(128, 320, (192, 256), PORTRAIT) == (256, 320)
    # landscape + wide crop: ceil(720 / 1280 * 600) = 338 > max: max is kept
    assert TF.adjust_jitter_scales(256, 320, (200, 600), LANDSCAPE) == (338, 320)


# ------------------------------------------------------------------------------------------------ random crops
def test_random_crop_offsets_never_draw_the_last_offset():
    g = gen(2)
    tops, lefts = set(), set()
    for _ in range(300):
        top, left = TF.random_crop_offsets(10, 8, (7, 5), g)
        tops.add(top)
        lefts.add(left)
    assert tops == {0, 1, 2} and lefts == {0, 1, 2}  # 3 = H - Hc and W - Wc are never drawn (numpy randint)


def test_random_crop_exact_size_returns_a_tensor_and_too_small_raises():
    clip = row_index_clip(12, 9)
    out = TF.random_crop(clip, (12, 9), gen())
    assert isinstance(out, torch.Tensor) and out.shape == clip.shape and torch.equal(out, clip)
    out = TF.random_crop(clip, 4, gen())
    assert out.shape == (3, 2, 4, 4)
    top, left = int(out[0, 0, 0, 0]), int(out[1, 0, 0, 0])  # content tells where the crop came from
    assert torch.equal(out, clip[..., top : top + 4, left : left + 4])
    with pytest.raises(TransformError, match="does not fit"):
        TF.random_crop(clip, (13, 4), gen())


def test_inception_crop_boxes_respect_scale_and_aspect_ranges():
    g = gen(4)
    height, width = 480, 270
    for _ in range(300):
        top, left, box_h, box_w = TF.inception_crop_box(height, width, (0.08, 1.0), (0.75, 4 / 3), g)
        assert 0 <= top and top + box_h <= height and 0 <= left and left + box_w <= width
        fallback = (box_w == width and box_h == 360)
        if not fallback:
            area = box_h * box_w / (height * width)
            assert 0.08 - 0.01 <= area <= 1.0
            assert 0.75 - 0.02 <= box_w / box_h <= 4 / 3 + 0.02
    out = TF.random_resized_crop(torch.rand(3, 2, height, width), (256, 192), generator=g)
    assert out.shape == (3, 2, 256, 192)


def test_inception_crop_fallback_is_central_and_clamped_to_the_ratio_range():
    # an unreachable scale forces the fallback; the portrait frame is narrower than 3:4, so w = W, h = round(W / 0.75)
    assert TF.inception_crop_box(480, 270, (2.0, 3.0), (0.75, 4 / 3), gen()) == (60, 0, 360, 270)
    assert TF.inception_crop_box(270, 480, (2.0, 3.0), (0.75, 4 / 3), gen()) == (0, 60, 270, 360)
    assert TF.inception_crop_box(300, 300, (2.0, 3.0), (0.75, 4 / 3), gen()) == (0, 0, 300, 300)


def test_resized_crop_matches_interpolate_of_the_box():
    clip = torch.rand(3, 2, 40, 30)
    out = TF.resized_crop(clip, (5, 3, 20, 16), (10, 8))
    ref = F.interpolate(clip[:, :, 5:25, 3:19], size=(10, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(out, ref)


# ------------------------------------------------------------------------------------------------ flip, normalise
def test_flip_mirrors_columns_and_random_flip_follows_p():
    clip = row_index_clip(4, 5)
    assert torch.equal(TF.horizontal_flip(clip)[1, 0, 0], torch.tensor([4.0, 3, 2, 1, 0]))
    assert torch.equal(TF.random_horizontal_flip(clip, gen(), p=1.0), TF.horizontal_flip(clip))
    assert TF.random_horizontal_flip(clip, gen(), p=0.0) is clip
    g = gen(9)
    flips = sum(bool(TF.random_horizontal_flip(clip, g)[1, 0, 0, 0] == 4) for _ in range(200))
    assert 60 < flips < 140


def test_normalize_scales_to_unit_range_then_mean_std():
    frames = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 1, 1, 3).expand(2, 2, 3, 3)
    clip = TF.thwc_to_cthw(frames)
    assert clip.shape == (3, 2, 2, 3)
    out = TF.normalize(clip, [0.5, 0.5, 0.2], [0.25, 0.5, 0.1])
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([-2.0, 1.0, 0.0]), atol=1e-6)
    with pytest.raises(TransformError):
        TF.normalize(torch.zeros(3, 4, 4), [0.5] * 3, [0.2] * 3)


# ------------------------------------------------------------------------------------------------ test crops
def test_long_side_crops_portrait_top_centre_bottom():
    # the seed's example: a 720x1280 (W x H) portrait video, short side 256 -> 455x256 (H x W); 256-crops at y=0,100,199
    clip = row_index_clip(455, 256)
    for index, top in [(0, 0), (1, 100), (2, 199)]:
        out = TF.long_side_crop(clip, 256, index)
        assert out.shape == (3, 2, 256, 256)
        assert out[0, 0, 0, 0] == top and out[1, 0, 0, 0] == 0
    # rectangular crops move along the height too; the width is centred with ceil
    assert [TF.long_side_crop_offsets(455, 256, (256, 192), i) for i in range(3)] == [(0, 32), (100, 32), (199, 32)]


def test_long_side_crops_landscape_and_square_move_left_centre_right():
    clip = row_index_clip(256, 455)
    for index, left in [(0, 0), (1, 100), (2, 199)]:
        out = TF.long_side_crop(clip, 256, index)
        assert out[1, 0, 0, 0] == left and out[0, 0, 0, 0] == 0
    assert [TF.long_side_crop_offsets(256, 256, 224, i) for i in range(3)] == [(16, 0), (16, 16), (16, 32)]
    with pytest.raises(TransformError, match="0, 1 or 2"):
        TF.long_side_crop(clip, 224, 3)


def test_relative_position_crops():
    clip = row_index_clip(455, 256)
    assert TF.relative_crop_offsets(455, 256, 224, (0.0, 0.0)) == (0, 0)
    assert TF.relative_crop_offsets(455, 256, 224, (1.0, 1.0)) == (231, 32)
    assert TF.relative_crop_offsets(455, 256, 224, (0.5, 0.5)) == (116, 16)  # ceil(115.5), ceil(16)
    assert TF.relative_crop_offsets(455, 256, (256, 192), (0.3, 0.7)) == (60, 45)  # ceil(59.7), ceil(44.8)
    out = TF.relative_position_crop(clip, (256, 192), (0.3, 0.7))
    assert out.shape == (3, 2, 256, 192) and out[0, 0, 0, 0] == 60 and out[1, 0, 0, 0] == 45
    with pytest.raises(TransformError):
        TF.relative_position_crop(clip, (500, 100), (0.5, 0.5))


def test_short_side_resize_of_uint8_frames_is_opencv_bilinear_rounded_and_close_to_float():
    g = gen(12)
    frames = torch.randint(0, 256, (3, 40, 24, 3), dtype=torch.uint8, generator=g)  # T x H x W x 3
    frames = F.avg_pool2d(frames.permute(0, 3, 1, 2).float(), 3, 1, 1).round().to(torch.uint8).permute(0, 2, 3, 1)
    out = TF.short_side_resize(TF.thwc_to_cthw(frames), 15)  # 40x24 -> 25x15: a fractional scale
    assert out.dtype == torch.uint8 and out.shape == (3, 3, 25, 15)
    exact = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(25, 15), mode="bilinear", align_corners=False)
    assert (out.permute(1, 0, 2, 3).float() - exact).abs().max() <= 1.0  # rounding and 11-bit weights only
    # every plane alike: the same numbers as resizing each frame on its own (OpenCV's bit-exact path)
    single = TF.short_side_resize(TF.thwc_to_cthw(frames[1:2].contiguous()), 15)
    assert torch.equal(single[:, 0], out[:, 1])
