"""Spatial transforms of video clips (the seed's semantics, plain torch). See ``docs/transforms.md``.

Image work runs on OpenCV (one ``warpAffine`` per frame into the crop, colour ops as lookup tables).

* :mod:`~pmv.data.transforms.functional`: pure ops on tensors (short-side jitter, auto-adjust, random/rect and
  Inception crops, flip, normalise, test crops along the long side and at relative positions).
* :mod:`~pmv.data.transforms.randaugment`: timm-style RandAugment, warped straight into the crop.
* :mod:`~pmv.data.transforms.erasing`: random erasing, same box on every frame.
* :mod:`~pmv.data.transforms.mixup`: batch mixup/cutmix with label smoothing and the soft-target loss.
* :mod:`~pmv.data.transforms.pipeline`: ``build_train_transform`` / ``build_test_transform`` from the config.

Randomness always comes from an explicit ``torch.Generator`` (clip ops) or ``random.Random`` (mixup).
"""

import cv2

# One OpenCV thread per process: the transforms make many small per-frame calls that threads barely speed up (the
# DataLoader workers are the parallelism), and a forked worker deadlocks in OpenCV (in cv2.setNumThreads, on a
# condition variable of the parent's pool) when the parent's pool threads were running at the fork.
cv2.setNumThreads(1)

from pmv.data.transforms.erasing import (
    ERASE_MODES,
    RandomErasing,
    apply_erasing,
    draw_erasing,
    erase_box,
    random_erasing,
)
from pmv.data.transforms.functional import *  # noqa: F401,F403
from pmv.data.transforms.functional import __all__ as _functional_all
from pmv.data.transforms.mixup import Mixup, cutmix_box, mix_targets, smooth_one_hot, soft_target_cross_entropy
from pmv.data.transforms.pipeline import (
    TestTransform,
    TrainTransform,
    build_test_transform,
    build_train_transform,
    normalize_frames,
    resize_matrix,
)
from pmv.data.transforms.randaugment import (
    AugmentOp,
    RandAugment,
    RandAugmentPolicy,
    augment_warp,
    parse_randaugment,
    plan_warp,
    rand_augment,
    render,
    sample_augment_ops,
    warp_frames,
)

__all__ = list(_functional_all) + [
    "ERASE_MODES", "RandomErasing", "apply_erasing", "draw_erasing", "erase_box", "random_erasing",
    "Mixup", "cutmix_box", "mix_targets", "smooth_one_hot", "soft_target_cross_entropy",
    "TestTransform", "TrainTransform", "build_test_transform", "build_train_transform", "normalize_frames",
    "resize_matrix",
    "AugmentOp", "RandAugment", "RandAugmentPolicy", "augment_warp", "parse_randaugment", "plan_warp", "rand_augment",
    "render", "sample_augment_ops", "warp_frames",
]  # fmt: skip
