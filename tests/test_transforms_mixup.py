"""Random erasing (same box on every frame) and batch mixup/cutmix with label smoothing."""

import random

import pytest
import torch
import torch.nn.functional as F

from pmv.config.schema import MixupConfig
from pmv.data.transforms import (
    Mixup,
    RandomErasing,
    erase_box,
    mix_targets,
    random_erasing,
    smooth_one_hot,
    soft_target_cross_entropy,
)
from pmv.data.transforms.functional import TransformError
from pmv.errors import ConfigError


# ------------------------------------------------------------------------------------------------ erasing
def test_erasing_uses_the_same_box_on_every_frame_with_fresh_noise():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        clip = torch.full((3, 4, 32, 24), 7.0)
        random_erasing(clip, g, prob=1.0, mode="pixel")
        changed = clip != 7.0
        mask = changed[0, 0]
        assert mask.any()
        assert all(torch.equal(changed[c, t], mask) for c in range(3) for t in range(4))
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        box_h, box_w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(mask.sum()) == box_h * box_w  # a rectangle
        assert 0.02 * 32 * 24 - 6 <= box_h * box_w <= 32 * 24 / 3 + 6
        assert not torch.equal(clip[:, 0][:, mask], clip[:, 1][:, mask])  # noise drawn per frame


def test_erasing_probability_modes_and_errors():
    g = torch.Generator().manual_seed(1)
    clip = torch.zeros(3, 2, 16, 16)
    assert torch.equal(random_erasing(clip.clone(), g, prob=0.0), clip)
    hits = sum(bool((random_erasing(clip.clone(), g, prob=0.25) != 0).any()) for _ in range(400))
    assert 60 < hits < 140
    rand = random_erasing(torch.zeros(3, 2, 16, 16), g, prob=1.0, mode="rand")
    per_channel = [rand[c][rand[c] != 0].unique().numel() for c in range(3)]
    assert per_channel == [1, 1, 1]  # one colour per channel
    const = random_erasing(torch.ones(3, 2, 16, 16), g, prob=1.0, mode="const")
    assert (const == 0).any()
    assert erase_box(1, 50, g) is None  # no box fits strictly inside a 1-pixel-high frame
    with pytest.raises(TransformError):
        random_erasing(clip, g, prob=1.0, mode="blur")
    with pytest.raises(TransformError):
        RandomErasing(mode="blur")
    assert RandomErasing(prob=1.0, count=2)(torch.zeros(3, 1, 20, 20), g).ne(0).any()


# ------------------------------------------------------------------------------------------------ mixup / cutmix
def test_smoothed_targets_carry_the_right_mass():
    labels = torch.tensor([0, 3, 1])
    targets = smooth_one_hot(labels, 4, 0.1)
    assert torch.allclose(targets.sum(1), torch.ones(3))
    assert targets[1, 3] == pytest.approx(1 - 0.1 + 0.1 / 4) and targets[1, 0] == pytest.approx(0.1 / 4)
    mixed = mix_targets(labels, 4, 0.7, 0.1)
    assert torch.allclose(mixed.sum(1), torch.ones(3))
    assert mixed[0, 0] == pytest.approx(0.7 * 0.925 + 0.3 * 0.025)  # own label, partner (label 1) is sample 2
    assert mixed[0, 1] == pytest.approx(0.7 * 0.025 + 0.3 * 0.925)


def test_mixup_only_is_a_weighted_sum_with_the_flipped_batch():
    mixup = Mixup(MixupConfig(alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1), num_classes=5, seed=0)
    clips = torch.rand(4, 3, 2, 8, 6)
    labels = torch.tensor([0, 1, 2, 3])
    out, targets = mixup(clips.clone(), labels)
    lam = mixup.last_lam
    assert not mixup.last_used_cutmix and 0.0 < lam < 1.0
    assert torch.allclose(out, lam * clips + (1 - lam) * clips.flip(0), atol=1e-6)
    assert torch.allclose(targets, mix_targets(labels, 5, lam, 0.1))
    assert torch.allclose(targets.sum(1), torch.ones(4))


def test_cutmix_lam_is_the_true_box_area_and_the_box_comes_from_the_partner():
    mixup = Mixup(MixupConfig(alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0), num_classes=4, rng=random.Random(3))
    for _ in range(10):
        clips = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1, 1).expand(4, 3, 2, 16, 12).clone()
        labels = torch.tensor([0, 1, 2, 3])
        out, targets = mixup(clips, labels)
        assert mixup.last_used_cutmix
        from_partner = out[0] == 3.0  # sample 0's partner is sample 3
        box_area = int(from_partner[0, 0].sum())
        assert all(torch.equal(from_partner[c, t], from_partner[0, 0]) for c in range(3) for t in range(2))
        assert mixup.last_lam == pytest.approx(1 - box_area / (16 * 12))
        assert targets[0, 0] == pytest.approx(mixup.last_lam) and targets[0, 3] == pytest.approx(1 - mixup.last_lam)


def test_mixup_probability_switch_and_reproducibility():
    config = MixupConfig(prob=1.0, switch_prob=0.5)
    draws = [Mixup(config, 10, seed=s).sample() for s in range(200)]
    cutmix_share = sum(used for _, used in draws) / len(draws)
    assert 0.35 < cutmix_share < 0.65
    assert Mixup(config, 10, seed=5).sample() == Mixup(config, 10, seed=5).sample()
    never = Mixup(MixupConfig(prob=0.0, label_smoothing=0.2), 10, seed=0)
    clips = torch.rand(2, 3, 1, 4, 4)
    out, targets = never(clips.clone(), torch.tensor([1, 2]))
    assert torch.equal(out, clips) and never.last_lam == 1.0
    assert targets[0, 1] == pytest.approx(0.8 + 0.02)
    with pytest.raises(ConfigError):
        Mixup(MixupConfig(alpha=0.0, cutmix_alpha=0.0), 10)


def test_soft_target_cross_entropy_matches_torch_for_hard_and_smoothed_targets():
    logits = torch.randn(6, 7, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 4, 6])
    assert torch.allclose(soft_target_cross_entropy(logits, smooth_one_hot(labels, 7)), F.cross_entropy(logits, labels))
    smoothed = soft_target_cross_entropy(logits, smooth_one_hot(labels, 7, 0.1))
    assert torch.allclose(smoothed, F.cross_entropy(logits, labels, label_smoothing=0.1))
    assert soft_target_cross_entropy(logits, smooth_one_hot(labels, 7), reduction="none").shape == (6,)
