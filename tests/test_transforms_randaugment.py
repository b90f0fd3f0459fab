"""RandAugment: parser, op draws, per-op agreement with PIL, same op on every frame, lazy evaluation."""

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
    evaluate_augmented,
    parse_randaugment,
    rand_augment,
    sample_augment_ops,
    sample_frames,
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


@pytest.mark.parametrize("name", INCREASING_OPS)
def test_each_op_agrees_with_pil(name):
    img = smooth_image()
    arg = ARGS.get(name, 0.0)
    height, width = img.shape[:2]
    ys, xs = torch.arange(height).float().view(-1, 1), torch.arange(width).float().view(1, -1)
    ours = evaluate_augmented(img.unsqueeze(0), [AugmentOp(name, arg)], ys, xs, stats_size=height)[0]
    diff = (ours.round() - pil_reference(img, name, arg)).abs()
    if AugmentOp(name).geometric:  # one interpolation kernel vs PIL's: close inside, fill edges may differ by a pixel
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
    ys, xs = torch.arange(20).float().view(-1, 1), torch.arange(16).float().view(1, -1)
    out = evaluate_augmented(clip, [AugmentOp("AutoContrast")], ys, xs, stats_size=20)
    assert out[0].min() == 0 and out[0].max() == 255 and out[1].min() == 0 and out[1].max() == 255
    black = torch.zeros(2, 20, 16, 3, dtype=torch.uint8)
    moved = evaluate_augmented(black, [AugmentOp("TranslateXRel", 0.45)], ys, xs, stats_size=20)
    assert torch.all(moved[:, :, :8] == 0) and torch.all(moved[:, :, -7:] == FILL_VALUE)  # content moved left
    # a colour op after a geometric op also changes the fill
    inverted = evaluate_augmented(black, [AugmentOp("TranslateXRel", 0.45), AugmentOp("Invert")], ys, xs)
    assert torch.all(inverted[:, :, -7:] == 255 - FILL_VALUE) and torch.all(inverted[:, :, :8] == 255)


def test_lazy_evaluation_at_a_resize_grid_matches_augment_then_resize():
    img = smooth_image(96, 64)
    frames = img.unsqueeze(0)
    ops = [AugmentOp("Rotate", 12.0), AugmentOp("ContrastIncreasing", 1.4), AugmentOp("Equalize")]
    ys_full, xs_full = torch.arange(96).float().view(-1, 1), torch.arange(64).float().view(1, -1)
    whole = evaluate_augmented(frames, ops, ys_full, xs_full, stats_size=64)[0]  # H x W x 3
    resized = F.interpolate(whole.permute(2, 0, 1)[None], size=(48, 32), mode="bilinear", align_corners=False)[0]
    ys = ((torch.arange(48).float() + 0.5) * 2 - 0.5).view(-1, 1)
    xs = ((torch.arange(32).float() + 0.5) * 2 - 0.5).view(1, -1)
    lazy = evaluate_augmented(frames, ops, ys, xs, stats_size=64)[0].permute(2, 0, 1)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # away from the rotated corners
    assert (lazy - resized)[inner].abs().mean() < 6.0


def test_sampler_reproduces_bilinear_resize_and_reads_only_needed_pixels():
    frames = torch.randint(0, 256, (2, 30, 20, 3), dtype=torch.uint8)
    ys = ((torch.arange(12).float() + 0.5) * 30 / 12 - 0.5).clamp(0, 29).view(-1, 1)
    xs = ((torch.arange(8).float() + 0.5) * 20 / 8 - 0.5).clamp(0, 19).view(1, -1)
    ours = sample_frames(frames, ys, xs, "bilinear")
    ref = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(12, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(ours.permute(0, 3, 1, 2), ref, atol=1e-3)
    rows, cols = torch.arange(30).float().view(-1, 1), torch.arange(20).float().view(1, -1)
    integer = sample_frames(frames, rows, cols, "bicubic")
    assert torch.allclose(integer, frames.float(), atol=1e-3)  # bicubic at pixel centres is exact


def test_randaugment_class_and_bad_input():
    augment = RandAugment("rand-m7-n4-mstd0.5-inc1")
    frames = smooth_image(24, 18).unsqueeze(0).repeat(2, 1, 1, 1)
    out = augment(frames, torch.Generator().manual_seed(3))
    assert out.shape == frames.shape and out.dtype == torch.uint8
    again = augment(frames, torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    with pytest.raises(Exception, match="uint8"):
        evaluate_augmented(frames.float(), [], torch.zeros(1, 1), torch.zeros(1, 1))
    with pytest.raises(ConfigError):
        RandAugment("rand-m7", interpolation="nearest-exact")


# ------------------------------------------------------------------------------- fast paths vs straightforward code
def keys_cubic(d, a=-0.5):
    d = abs(d)
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    if d < 2:
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return 0.0


def reference_sample(frames, ys, xs, mode):
    """Per-pixel loops over the taps (the slow, obvious sampler): float64, T x h x w x 3."""
    num_frames, height, width, _ = frames.shape
    src = frames.double()
    out = torch.zeros(num_frames, ys.numel(), xs.numel(), 3, dtype=torch.float64)
    reach = {"nearest": [0], "bilinear": [0, 1], "bicubic": [-1, 0, 1, 2]}[mode]
    for i, y in enumerate(ys.tolist()):
        for j, x in enumerate(xs.tolist()):
            y, x = min(max(y, 0.0), height - 1.0), min(max(x, 0.0), width - 1.0)
            if mode == "nearest":
                y, x = float(round(y)), float(round(x))
            y0, x0 = math.floor(y), math.floor(x)
            for oy in reach:
                for ox in reach:
                    if mode == "bicubic":
                        w = keys_cubic(y - (y0 + oy)) * keys_cubic(x - (x0 + ox))
                    elif mode == "bilinear":
                        w = (1 - abs(y - (y0 + oy))) * (1 - abs(x - (x0 + ox)))
                    else:
                        w = 1.0
                    row, col = min(max(y0 + oy, 0), height - 1), min(max(x0 + ox, 0), width - 1)
                    out[:, i, j] += w * src[:, row, col]
    return out.clamp(0, 255) if mode == "bicubic" else out


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_pixel_major_window_sampler_equals_per_pixel_loops(mode):
    g = torch.Generator().manual_seed(5)
    frames = torch.randint(0, 256, (3, 23, 17, 3), dtype=torch.uint8, generator=g)
    ys = torch.rand(9, generator=g) * 28 - 3  # some outside the frame: clamped to the border
    xs = torch.rand(7, generator=g) * 22 - 3
    ours = sample_frames(frames, ys.view(-1, 1), xs.view(1, -1), mode)
    assert ours.shape == (3, 9, 7, 3)
    assert torch.allclose(ours.double(), reference_sample(frames, ys, xs, mode), atol=1e-3)


def test_cached_window_and_scratch_buffer_give_the_same_numbers_as_a_fresh_read():
    from pmv.data.transforms.randaugment import _FrameSampler

    g = torch.Generator().manual_seed(6)
    frames = torch.randint(0, 256, (2, 40, 30, 3), dtype=torch.uint8, generator=g)
    sampler = _FrameSampler(frames, reuse_buffer=True)
    big_y, big_x = torch.linspace(-1, 40, 25).view(-1, 1), torch.linspace(-1, 30, 20).view(1, -1)
    sampler.sample(big_y, big_x, "bicubic")  # caches a window over the whole frame
    for ys, xs in [(torch.linspace(0, 5, 6), torch.linspace(25, 29.5, 4)),  # at the frame's edges: clamping
                   (torch.linspace(10.3, 20.7, 5), torch.linspace(3.2, 9.9, 6))]:  # fmt: skip
        for mode in ("nearest", "bilinear", "bicubic"):
            reused = sampler.sample(ys.view(-1, 1), xs.view(1, -1), mode)
            fresh = _FrameSampler(frames).sample(ys.view(-1, 1), xs.view(1, -1), mode)
            assert torch.equal(reused, fresh)
    other = _FrameSampler(frames.flip(0).contiguous(), reuse_buffer=True)  # takes over the scratch buffer
    assert torch.equal(other.sample(big_y, big_x, "bilinear"), _FrameSampler(frames.flip(0)).sample(big_y, big_x, "bilinear"))


def test_shared_statistics_follow_the_frames_and_their_changes():
    frames = smooth_image(48, 36).unsqueeze(0).repeat(2, 1, 1, 1).contiguous()
    frames[1] = 255 - frames[1]
    ys, xs = torch.arange(48).float().view(-1, 1), torch.arange(36).float().view(1, -1)
    ops = [AugmentOp("Equalize"), AugmentOp("AutoContrast"), AugmentOp("ContrastIncreasing", 0.4)]
    first = evaluate_augmented(frames, ops, ys, xs, stats_size=12)
    again = evaluate_augmented(frames, ops, ys, xs, stats_size=12)  # statistics of the first op come from the cache
    assert torch.equal(first, again)
    assert torch.equal(first, evaluate_augmented(frames.clone(), ops, ys, xs, stats_size=12))
    frames[:, :20] = 0  # in place: the cached statistics must not be used any more
    changed = evaluate_augmented(frames, ops, ys, xs, stats_size=12)
    assert torch.equal(changed, evaluate_augmented(frames.clone(), ops, ys, xs, stats_size=12))
    assert not torch.equal(changed, first)


def test_sharpness_after_colour_and_geometric_ops_equals_its_definition():
    """The ring is evaluated one neighbour at a time; compare with the 3x3 SMOOTH blend written out directly."""
    img = smooth_image(30, 24)
    frames = img.unsqueeze(0)
    ys, xs = torch.arange(30).float().view(-1, 1), torch.arange(24).float().view(1, -1)
    before = [AugmentOp("TranslateXRel", 0.1), AugmentOp("ColorIncreasing", 1.5)]
    prior = evaluate_augmented(frames, before, ys, xs, stats_size=24)[0]  # H x W x 3
    ours = evaluate_augmented(frames, before + [AugmentOp("SharpnessIncreasing", 1.7)], ys, xs, stats_size=24)[0]
    nearest = evaluate_augmented(frames, before, ys, xs, interpolation="nearest", geometric_interpolation="nearest")
    smooth = prior * 5.0
    padded = F.pad(nearest[0].permute(2, 0, 1), (1, 1, 1, 1), mode="replicate").permute(1, 2, 0)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if (dy, dx) != (0, 0):
                smooth = smooth + padded[1 + dy : 31 + dy, 1 + dx : 25 + dx]
    smooth = smooth / 13.0
    smooth[[0, -1]] = prior[[0, -1]]
    smooth[:, [0, -1]] = prior[:, [0, -1]]
    expected = (smooth + 1.7 * (prior - smooth)).clamp(0, 255)
    assert torch.allclose(ours, expected, atol=1e-3)


def test_sampling_in_blocks_of_output_pixels_changes_nothing(monkeypatch):
    import pmv.data.transforms.randaugment as randaugment

    g = torch.Generator().manual_seed(8)
    frames = torch.randint(0, 256, (2, 50, 40, 3), dtype=torch.uint8, generator=g)
    ys = (torch.rand(30, generator=g) * 52 - 1).view(-1, 1)
    xs = (torch.rand(20, generator=g) * 42 - 1).view(1, -1)
    whole = {mode: sample_frames(frames, ys, xs, mode) for mode in ("bilinear", "bicubic")}
    monkeypatch.setattr(randaugment, "_CHUNK", 7)  # 600 output pixels: 86 blocks, the last one partial
    for mode, expected in whole.items():
        assert torch.equal(sample_frames(frames, ys, xs, mode), expected)
