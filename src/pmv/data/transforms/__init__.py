"""Spatial transforms of video clips (the seed's semantics, plain torch). See ``docs/transforms.md``.

* :mod:`~pmv.data.transforms.functional`: pure ops on tensors (short-side jitter, auto-adjust, random/rect and
  Inception crops, flip, normalise, test crops along the long side and at relative positions).
* :mod:`~pmv.data.transforms.randaugment`: timm-style RandAugment, evaluated only at the pixels a crop needs.
* :mod:`~pmv.data.transforms.erasing`: random erasing, same box on every frame.
* :mod:`~pmv.data.transforms.mixup`: batch mixup/cutmix with label smoothing and the soft-target loss.
* :mod:`~pmv.data.transforms.pipeline`: ``build_train_transform`` / ``build_test_transform`` from the config.

Randomness always comes from an explicit ``torch.Generator`` (clip ops) or ``random.Random`` (mixup).
"""

from pmv.data.transforms.erasing import ERASE_MODES, RandomErasing, erase_box, random_erasing
from pmv.data.transforms.functional import *  # noqa: F401,F403
from pmv.data.transforms.functional import __all__ as _functional_all
from pmv.data.transforms.mixup import Mixup, cutmix_box, mix_targets, smooth_one_hot, soft_target_cross_entropy
from pmv.data.transforms.pipeline import (
    TestTransform,
    TrainTransform,
    build_test_transform,
    build_train_transform,
    resize_coordinates,
)
from pmv.data.transforms.randaugment import (
    AugmentOp,
    RandAugment,
    RandAugmentPolicy,
    evaluate_augmented,
    parse_randaugment,
    rand_augment,
    sample_augment_ops,
    sample_frames,
)

__all__ = list(_functional_all) + [
    "ERASE_MODES", "RandomErasing", "erase_box", "random_erasing",
    "Mixup", "cutmix_box", "mix_targets", "smooth_one_hot", "soft_target_cross_entropy",
    "TestTransform", "TrainTransform", "build_test_transform", "build_train_transform", "resize_coordinates",
    "AugmentOp", "RandAugment", "RandAugmentPolicy", "evaluate_augmented", "parse_randaugment", "rand_augment",
    "sample_augment_ops", "sample_frames",
]  # fmt: skip
