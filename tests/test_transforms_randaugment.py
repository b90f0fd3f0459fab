"""RandAugment: parser, op draws, per-op agreement with PIL, same op on every frame, the OpenCV warp and tables."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from pmv.data.transforms.randaugment import (
    FILL_VALUE,
    INCREASING_OPS,
    AugmentOp,
    RandAugment,
    augment_warp,
    parse_randaugment,
    rand_augment,
    sample_augment_ops,
    warp_frames,
)
from pmv.errors import ConfigError


def test_parser_reads_the_seed_policy_and_rejects_bad_strings():
    policy = parse_randaugment("rand-m7-n4-mstd0.5-inc1")
    assert (policy.magnitude, policy.num_ops, policy.magnitude_std, policy.increasing) == (7.0, 4, 0.5, True)
    assert policy.prob == 0.5 and policy.magnitude_max == 10.0 and policy.ops == INCREASING_OPS
    assert len(set(policy.ops)) == 15
    x3d = parse_randaugment("rand-m9-mstd0.5-inc1")
    assert x3d.num_ops == 2 and x3d.magnitude == 9.0
    assert parse_randaugment("rand-m5-n2-inc0-p1.0").ops[4] == "Posterize"
    for bad in ("auto-m7", "rand-m7-x3", "rand-mfoo", "rand-n2.5", "rand-p2"):
        with pytest.raises(ConfigError, match="randaugment"):
            parse_randaugment(bad)


def test_op_draws_with_replacement_probability_and_clipped_magnitude():
    g = torch.Generator().manual_seed(0)
    always = parse_randaugment("rand-m10-n30-mstd0-inc1-p1.0")
    ops = sample_augment_ops(always, g)
    assert len(ops) == 30 and len({op.name for op in ops}) < 30  # drawn with replacement
    for op in ops:
        if op.name == "Rotate":
            assert abs(op.arg) == pytest.approx(30.0)
        if op.name in ("ShearX", "ShearY"):
            assert abs(op.arg) == pytest.approx(0.3)
        if op.name in ("TranslateXRel", "TranslateYRel"):
            assert abs(op.arg) == pytest.approx(0.45)
        if op.name == "PosterizeIncreasing":
            assert op.arg == 0.0
        if op.name == "SolarizeIncreasing":
            assert op.arg == 0.0
        if op.name == "SolarizeAdd":
            assert op.arg == 110.0
        if op.name.endswith("Increasing") and op.name[:-10] in ("Color", "Contrast", "Brightness", "Sharpness"):
            assert op.arg == pytest.approx(1.9) or op.arg == pytest.approx(0.1)
    seed_policy = parse_randaugment("rand-m7-n4-mstd0.5-inc1")
    counts = [len(sample_augment_ops(seed_policy, g)) for _ in range(400)]
    assert 1.7 < sum(counts) / len(counts) < 2.3  # 4 ops x p 0.5
    noisy = parse_randaugment("rand-m9.8-n200-mstd3-inc1-p1")
    rotations = [abs(op.arg) for op in sample_augment_ops(noisy, g) if op.name == "Rotate"]
    assert rotations and max(rotations) <= 30.0 + 1e-9  # magnitude clipped to 10


def smooth_image(height=48, width=36, seed=0):
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    img = torch.stack([yy * 200 // height + 20, xx * 180 // width + 40, (yy + xx) * 2 + 30], -1).float()
    noise = torch.randn(height, width, 3, generator=torch.Generator().manual_seed(seed)) * 8
    return (img + noise).clamp(0, 255).to(torch.uint8)


ARGS = {"Rotate": 20.0, "PosterizeIncreasing": 2.0, "SolarizeIncreasing": 100.0, "SolarizeAdd": 60.0,
        "ColorIncreasing": 1.6, "ContrastIncreasing": 0.4, "BrightnessIncreasing": 1.5, "SharpnessIncreasing": 1.8,
        "ShearX": 0.2, "ShearY": -0.2, "TranslateXRel": 0.3, "TranslateYRel": -0.25}  # fmt: skip


def pil_reference(img, name, arg):
    pil = Image.fromarray(img.numpy())
    width, height = pil.size
    kw = dict(resample=Image.BICUBIC, fillcolor=(128, 128, 128))
    affine = {"ShearX": (1, arg, 0, 0, 1, 0), "ShearY": (1, 0, 0, arg, 1, 0),
              "TranslateXRel": (1, 0, arg * width, 0, 1, 0),
              "TranslateYRel": (1, 0, 0, 0, 1, arg * height)}  # fmt: skip
    if name in affine:
        out = pil.transform(pil.size, Image.AFFINE, affine[name], **kw)
    elif name == "Rotate":
        out = pil.rotate(arg, **kw)
    elif name == "AutoContrast":
        out = ImageOps.autocontrast(pil)
    elif name == "Equalize":
        out = ImageOps.equalize(pil)
    elif name == "Invert":
        out = ImageOps.invert(pil)
    elif name == "PosterizeIncreasing":
        out = ImageOps.posterize(pil, int(arg))
    elif name == "SolarizeIncreasing":
        out = ImageOps.solarize(pil, arg)
    elif name == "SolarizeAdd":
        out = pil.point([min(255, i + int(arg)) if i < 128 else i for i in range(256)] * 3)
    else:
        enhancers = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
                     "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}  # fmt: skip
        out = enhancers[name[: -len("Increasing")]](pil).enhance(arg)
    return torch.from_numpy(np.array(out)).float()


def whole(frames, ops, **kw):
    """The frames after ``ops`` at every pixel (identity map), float T x H x W x 3."""
    height, width = frames.shape[1:3]
    kw.setdefault("stats_size", min(height, width))
    return torch.from_numpy(augment_warp(frames, ops, np.eye(3), (height, width), **kw)).float()


@pytest.mark.parametrize("name", INCREASING_OPS)
def test_each_op_agrees_with_pil(name):
    img = smooth_image()
    arg = ARGS.get(name, 0.0)
    ours = whole(img.unsqueeze(0), [AugmentOp(name, arg)])[0]
    diff = (ours - pil_reference(img, name, arg)).abs()
    if AugmentOp(name).geometric:  # OpenCV's cubic (a = -0.75) vs PIL's (-0.5); fill edges may differ by a pixel
        assert diff.mean() < 2.0 and (diff > 8).float().mean() < 0.05
    else:  # colour ops: PIL's integer rounding only
        assert diff.max() <= 1.0


def test_same_op_and_magnitude_on_every_frame():
    img = smooth_image(40, 30)
    clip = img.unsqueeze(0).repeat(3, 1, 1, 1)
    policy = parse_randaugment("rand-m9-n4-mstd0.5-inc1-p1")
    for seed in range(6):
        out = rand_augment(clip, policy, torch.Generator().manual_seed(seed))
        assert out.dtype == torch.uint8 and out.shape == clip.shape
        assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    # different draws for different generator states
    outs = {rand_augment(clip, policy, torch.Generator().manual_seed(s)).float().sum().item() for s in range(6)}
    assert len(outs) > 1


def test_statistics_ops_use_each_frame_and_geometric_ops_fill_gray():
    dark = torch.full((20, 16, 3), 10, dtype=torch.uint8)
    dark[:10] = 60
    bright = torch.full((20, 16, 3), 200, dtype=torch.uint8)
    bright[:10] = 230
    clip = torch.stack([dark, bright])
    out = whole(clip, [AugmentOp("AutoContrast")])
    assert out[0].min() == 0 and out[0].max() == 255 and out[1].min() == 0 and out[1].max() == 255
    black = torch.zeros(2, 20, 16, 3, dtype=torch.uint8)
    moved = whole(black, [AugmentOp("TranslateXRel", 0.45)])
    assert torch.all(moved[:, :, :8] == 0) and torch.all(moved[:, :, -7:] == FILL_VALUE)  # content moved left
    # a colour op after a geometric op also changes the fill; one before it does not
    inverted = whole(black, [AugmentOp("TranslateXRel", 0.45), AugmentOp("Invert")])
    assert torch.all(inverted[:, :, -7:] == 255 - FILL_VALUE) and torch.all(inverted[:, :, :8] == 255)
    before = whole(black, [AugmentOp("Invert"), AugmentOp("TranslateXRel", 0.45), AugmentOp("SolarizeAdd", 30)])
    assert torch.all(before[:, :, -7:] == FILL_VALUE) and torch.all(before[:, :, :8] == 255)


def test_a_fill_takes_only_the_ops_after_its_own_geometric_op():
    """Two fills in one run of lookup tables: each carries the tables after it (the composed-LUT bookkeeping)."""
    black = torch.zeros(1, 20, 20, 3, dtype=torch.uint8)
    ops = [AugmentOp("TranslateXRel", 0.3), AugmentOp("Invert"), AugmentOp("TranslateYRel", 0.3),
           AugmentOp("SolarizeAdd", 100.0)]  # fmt: skip
    out = whole(black, ops)[0, ..., 0]
    # bottom rows: filled at the last shift (128, then SolarizeAdd leaves >= 128 alone)
    assert torch.all(out[-5:] == 128)
    # right columns above them: filled at the first shift, inverted (127), then +100
    assert torch.all(out[:13, -5:] == 227)
    assert torch.all(out[:13, :13] == 255)  # black, inverted; 255 >= 128 so SolarizeAdd leaves it


def test_statistics_come_from_the_frame_before_the_op_not_after_later_geometric_ops():
    frames = smooth_image(48, 40).unsqueeze(0)
    ops = [AugmentOp("AutoContrast"), AugmentOp("TranslateXRel", 0.45)]  # a shift by 18 pixels
    shifted = whole(frames, ops)
    alone = whole(frames, ops[:1])
    # the gray fill a later shift brings must not enter AutoContrast's range: inside, the shift only moves pixels
    assert torch.equal(shifted[0, :, :22], alone[0, :, 18:])
    assert alone[0].amin() == 0 and alone[0].amax() == 255


def test_composed_tables_equal_the_ops_one_by_one():
    frames = smooth_image(30, 24).unsqueeze(0).repeat(2, 1, 1, 1).contiguous()
    frames[1] = 255 - frames[1]
    ops = [AugmentOp("ContrastIncreasing", 1.5), AugmentOp("PosterizeIncreasing", 3.0), AugmentOp("Equalize"),
           AugmentOp("SolarizeIncreasing", 140.0), AugmentOp("BrightnessIncreasing", 0.7)]  # fmt: skip
    stepwise = frames
    for op in ops:
        stepwise = whole(stepwise, [op]).to(torch.uint8)
    assert torch.equal(whole(frames, ops).to(torch.uint8), stepwise)


def test_warp_at_a_resize_grid_matches_augment_then_resize():
    img = smooth_image(96, 64)
    frames = img.unsqueeze(0)
    ops = [AugmentOp("Rotate", 12.0), AugmentOp("ContrastIncreasing", 1.4), AugmentOp("Equalize")]
    augmented = whole(frames, ops, stats_size=64)[0]  # H x W x 3
    resized = F.interpolate(augmented.permute(2, 0, 1)[None], size=(48, 32), mode="bilinear", align_corners=False)[0]
    half = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5]])  # output pixel -> (d + 0.5) * 2 - 0.5
    direct = torch.from_numpy(augment_warp(frames, ops, half, (48, 32), stats_size=64))[0].permute(2, 0, 1).float()
    inner = (slice(None), slice(4, -4), slice(4, -4))  # away from the rotated corners
    assert (direct - resized)[inner].abs().mean() < 6.0


# ------------------------------------------------------------------------------- the warp vs straightforward code
def keys_cubic(d, a=-0.75):
    d = abs(d)
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    if d < 2:
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return 0.0


def reference_warp(frames, matrix, out_h, out_w, mode):
    """Per-pixel loops over the taps (the slow, obvious warp, edge pixels replicated): float64 T x h x w x 3."""
    num_frames, height, width, _ = frames.shape
    src = frames.double()
    out = torch.zeros(num_frames, out_h, out_w, 3, dtype=torch.float64)
    reach = {"bilinear": [0, 1], "bicubic": [-1, 0, 1, 2]}[mode]
    for i in range(out_h):
        for j in range(out_w):
            x = matrix[0][0] * j + matrix[0][1] * i + matrix[0][2]
            y = matrix[1][0] * j + matrix[1][1] * i + matrix[1][2]
            y0, x0 = math.floor(y), math.floor(x)
            for oy in reach:
                for ox in reach:
                    if mode == "bicubic":
                        w = keys_cubic(y - (y0 + oy)) * keys_cubic(x - (x0 + ox))
                    else:
                        w = (1 - abs(y - (y0 + oy))) * (1 - abs(x - (x0 + ox)))
                    row, col = min(max(y0 + oy, 0), height - 1), min(max(x0 + ox, 0), width - 1)
                    out[:, i, j] += w * src[:, row, col]
    return out.clamp(0, 255)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_warp_frames_equals_per_pixel_loops(mode):
    g = torch.Generator().manual_seed(5)
    frames = torch.randint(0, 256, (3, 23, 17, 3), dtype=torch.uint8, generator=g)
    frames = F.avg_pool2d(frames.permute(0, 3, 1, 2).float(), 3, 1, 1).round().to(torch.uint8).permute(0, 2, 3, 1)
    frames = frames.contiguous()  # smoothed: OpenCV's 1/32-pixel coordinates then move values by little
    matrix = [[1.7, 0.2, -1.3], [-0.15, 1.9, 0.4], [0.0, 0.0, 1.0]]  # partly outside: edge pixels replicated
    ours = torch.from_numpy(warp_frames(frames.numpy(), np.array(matrix), 11, 9, mode)).double()
    ref = reference_warp(frames, matrix, 11, 9, mode)
    assert ours.shape == (3, 11, 9, 3)
    assert (ours - ref).abs().max() <= 1.5  # uint8 rounding + OpenCV's fixed point


def test_sharpen_kernel_is_pil_smooth_on_the_frame_grid_and_spreads_when_downscaled():
    from pmv.data.transforms.randaugment import _sharpen_kernel

    smooth = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13.0
    assert np.allclose(_sharpen_kernel(np.eye(2)), smooth)
    assert np.allclose(_sharpen_kernel(np.diag([-1.0, 1.0])), smooth)  # a mirrored crop: the same kernel
    half = _sharpen_kernel(np.diag([2.0, 2.0]))  # output pixels 2 frame pixels apart: neighbours half-way
    one_d = np.array([0.5, 2.0, 0.5])
    assert np.allclose(half, (np.outer(one_d, one_d) + 4 * np.eye(3)[1][:, None] * np.eye(3)[1]) / 13.0)
    wide = _sharpen_kernel(np.diag([0.5, 0.5]))  # upscaled crop: neighbours 2 output pixels away
    assert wide.shape == (5, 5) and np.isclose(wide.sum(), 1.0) and np.isclose(wide[0, 0], 1 / 13)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_a_slanted_warp_copies_its_source_box_first_with_the_same_pixels(interpolation):
    """A rotation or ShearY reads the box of source rows it needs from a sequential copy; the pixels are those of
    the warp from the whole frame (up to the rounding of the shifted map's coordinates), inside the frame and where
    the box is cut at the frame's edges."""
    from pmv.data.transforms.randaugment import plan_warp, render

    frames = torch.stack([smooth_image(120, 90, seed) for seed in range(2)])
    zoom = np.array([[0.5, 0.0, 20.0], [0.0, 0.5, 30.0], [0.0, 0.0, 1.0]])  # a crop inside the frame
    corner = np.array([[0.8, 0.0, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 1.0]])  # a crop at the top-left corner
    for ops, matrix in (([AugmentOp("ShearY", 0.1)], zoom), ([AugmentOp("Rotate", 9.0)], zoom),
                        ([AugmentOp("Rotate", -12.0)], corner)):  # fmt: skip
        plan = plan_warp(ops, matrix, (120, 90), (64, 48), interpolation, interpolation)
        made = render(frames.numpy(), [plan])[0].image
        direct = warp_frames(frames.numpy(), plan.warp, 64, 48, plan.interpolation)
        kept = np.ones((64, 48), dtype=bool)
        for mask in plan.masks.values():
            kept &= mask == 0
        diff = np.abs(made[:, kept].astype(int) - direct[:, kept])
        assert kept.mean() > 0.5 and diff.max() <= 1 and (diff > 0).mean() < 0.03  # the shift's float rounding


def test_axis_aligned_sharpness_kernel_is_separable():
    """Sharpness without a rotation or shear after it filters with outer(ky, kx) + 4 at the centre (/ 13): the same
    kernel as the 2-D spread, for downscaled, upscaled and mirrored crops."""
    from pmv.data.transforms.randaugment import _sharpen_kernel, _smooth_taps

    for sx, sy in ((1.0, 1.0), (2.5, 2.25), (-2.5, 2.5), (0.5, 0.7), (0.3, 1.0), (3.1, -0.9)):
        kernel = _sharpen_kernel(np.diag([sx, sy]))
        taps_x, taps_y = _smooth_taps(1 / sx), _smooth_taps(1 / sy)
        r, rx, ry = kernel.shape[0] // 2, len(taps_x) // 2, len(taps_y) // 2
        rebuilt = np.zeros_like(kernel)
        rebuilt[r - ry : r + ry + 1, r - rx : r + rx + 1] = np.outer(taps_y, taps_x)
        rebuilt[r, r] += 4.0
        assert np.allclose(rebuilt / 13.0, kernel, atol=1e-6)


def test_randaugment_class_and_bad_input():
    augment = RandAugment("rand-m7-n4-mstd0.5-inc1")
    frames = smooth_image(24, 18).unsqueeze(0).repeat(2, 1, 1, 1)
    out = augment(frames, torch.Generator().manual_seed(3))
    assert out.shape == frames.shape and out.dtype == torch.uint8
    again = augment(frames, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    with pytest.raises(Exception, match="uint8"):
        augment_warp(frames.float(), [], np.eye(3), (4, 4))
    with pytest.raises(ConfigError):
        RandAugment("rand-m7", interpolation="nearest-exact")
