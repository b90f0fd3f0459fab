"""The clip pipeline: annotation lists, clip sampling, transforms, datasets and loaders.

``build_train_dataset(data, transform)`` gives augmented training clips, ``build_test_dataset(data, test)`` the
multi-view test items, ``build_loader`` a reproducibly seeded DataLoader. Getting and preparing the videos
themselves is :mod:`pmv.acquire`.
"""

from pmv.data.annotations import (
    AnnotationNotFoundError,
    SplitAnnotations,
    VideoList,
    list_file,
    load_split,
    read_class_names,
    read_video_list,
    video_root,
)
from pmv.data.audio import clip_log_mel, log_mel, misaligned_start, mix_easy_negatives
from pmv.data.dataset import (
    ClipDataset,
    TestClipDataset,
    TrainClipDataset,
    VideoViewsDataset,
    build_test_dataset,
    build_train_dataset,
    build_video_views_dataset,
    validation_views,
)
from pmv.data.loader import build_loader, collate_clips, set_epoch
from pmv.data.sampling import ClipSample, test_clip, test_clips, train_clip
from pmv.data.transforms import Mixup, TestTransform, TrainTransform, build_test_transform, build_train_transform

__all__ = [
    "AnnotationNotFoundError",
    "ClipDataset",
    "ClipSample",
    "Mixup",
    "SplitAnnotations",
    "TestClipDataset",
    "TestTransform",
    "TrainClipDataset",
    "TrainTransform",
    "VideoList",
    "VideoViewsDataset",
    "build_loader",
    "build_test_dataset",
    "build_test_transform",
    "build_train_dataset",
    "build_train_transform",
    "build_video_views_dataset",
    "clip_log_mel",
    "collate_clips",
    "list_file",
    "load_split",
    "log_mel",
    "misaligned_start",
    "mix_easy_negatives",
    "read_class_names",
    "read_video_list",
    "set_epoch",
    "test_clip",
    "test_clips",
    "train_clip",
    "validation_views",
    "video_root",
]
