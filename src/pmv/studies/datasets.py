"""Test datasets of the studies: thin wrappers that change what the standard test items show, so that scoring
(``pmv.engine.evaluator.run_test(..., dataset=...)``) stays the engine's.

* :class:`FrameOrderDataset` (temporal study): each clip's frames in order, reversed, shuffled (a fixed random
  permutation per item that is neither the identity nor the reversal) or one frame (the middle one) repeated.
* :class:`ProbeDataset` (spatial-bias study): the seed's dense spatial sweep. Every test clip is cropped at each
  relative position ``(rh, rw)`` of a grid (``linspace(0, 1, 16)`` along H x ``linspace(0, 1, 9)`` along W) after
  the test resize. Each (video, position) pair is its own "video" for the engine's aggregation (video index
  ``position * num_videos + video``), so one test pass scores many positions; a video's clip is decoded once and
  cropped at every position of the pass.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pmv.config.schema import DataConfig, TestConfig
from pmv.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ORDERS = ("ordered", "reversed", "shuffled", "single_frame")
PROBE_STEPS = (16, 9)  # the seed's TEST.DENSE_SPATIAL_CROP_STEPS: positions along H, along W


class _Wrapper(Dataset):
    """Passes the engine-visible attributes (paths, labels, class names, failures, generator) to ``base``."""

    def __init__(self, base: Any):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    @property
    def paths(self) -> list[str]:
        return self.base.paths

    @property
    def labels(self) -> list[int]:
        return self.base.labels

    @property
    def class_names(self) -> list[str]:
        return getattr(self.base, "class_names", [])

    @property
    def num_classes(self) -> int:
        return getattr(self.base, "num_classes", len(self.class_names))

    @property
    def failed(self) -> dict:
        return getattr(self.base, "failed", {})

    @property
    def generator(self):
        return getattr(self.base, "generator", None)

    @generator.setter
    def generator(self, value) -> None:
        if hasattr(self.base, "generator"):
            self.base.generator = value


def frame_order(order: str, num_frames: int, key: int, seed: int = 0) -> torch.Tensor:
    """Frame indices that realise ``order`` for a clip of ``num_frames`` (``key`` picks the shuffle)."""
    if order == "ordered":
        return torch.arange(num_frames)
    if order == "reversed":
        return torch.arange(num_frames - 1, -1, -1)
    if order == "single_frame":
        return torch.full((num_frames,), num_frames // 2, dtype=torch.long)
    if order == "shuffled":
        if num_frames < 3:
            raise ConfigError(f"a shuffled order needs at least 3 frames (a clip has {num_frames}): with 2, every "
                              "permutation is the original or the reversed order")
        generator = torch.Generator().manual_seed(seed * 1_000_003 + key)
        identity, reverse = torch.arange(num_frames), torch.arange(num_frames - 1, -1, -1)
        while True:  # a shuffle that is neither order it is compared with
            perm = torch.randperm(num_frames, generator=generator)
            if not torch.equal(perm, identity) and not torch.equal(perm, reverse):
                return perm
    raise ConfigError(f"unknown frame order {order!r}; choose from {', '.join(ORDERS)}")


class FrameOrderDataset(_Wrapper):
    """The items of a test dataset with each ``clip``'s frames (C x T x H x W, dim 1) put in ``order``."""

    def __init__(self, base: Any, order: str, seed: int = 0):
        super().__init__(base)
        if order not in ORDERS:
            raise ConfigError(f"unknown frame order {order!r}; choose from {', '.join(ORDERS)}")
        self.order, self.seed = order, seed

    def __getitem__(self, index: int) -> dict:
        item = dict(self.base[index])
        clip = item["clip"]
        item["clip"] = clip.index_select(1, frame_order(self.order, clip.shape[1], index, self.seed))
        return item


def probe_positions(steps: Sequence[int] = PROBE_STEPS) -> list[tuple[float, float]]:
    """The seed's dense-crop centres: ``(rh, rw)`` for ``rh in linspace(0,1,steps[0])``, ``rw in
    linspace(0,1,steps[1])``, row-major over ``rh`` (row 0 = the top of the frame)."""
    rows, cols = (int(s) for s in steps)
    if rows < 1 or cols < 1:
        raise ConfigError(f"probe steps must be positive, got {list(steps)}")
    return [(float(h), float(w)) for h in np.linspace(0, 1, rows) for w in np.linspace(0, 1, cols)]


class ProbeDataset(Dataset):
    """Items ``((video * K) + k) * P + p``: temporal view ``k`` of ``video`` cropped at ``positions[p]``.

    ``index`` (the engine's video) is ``p * num_videos + video``; ``paths``/``labels`` list the videos once per
    position in that order. The crop is ``test.crop`` after the test resize (``test.short_side``), as the seed's
    sweep (``TEST.SPATIAL_SAMPLE_INDEX -2``, one spatial crop).
    """

    def __init__(self, paths: Sequence[str], labels: Sequence[int], class_names: Sequence[str], data: DataConfig,
                 test: TestConfig, positions: Sequence[tuple[float, float]]):
        from pmv.data.transforms.pipeline import build_test_transform

        if not positions:
            raise ConfigError("the probe needs at least one crop position")
        self.video_paths, self.video_labels = list(paths), list(labels)
        self.class_names = list(class_names)
        self.data, self.test = data, test
        self.positions = [tuple(p) for p in positions]
        self.transforms = [build_test_transform(test, data.mean, data.std, relative_position=p) for p in self.positions]
        self.num_temporal_views = test.num_temporal_views
        self.paths = [p for _ in self.positions for p in self.video_paths]
        self.labels = [label for _ in self.positions for label in self.video_labels]
        self.failed: dict[str, str] = {}
        self.generator: Optional[torch.Generator] = None
        self.decodes = 0  # clips decoded by this process (one per video and temporal view, not per position)
        self._cache: tuple[tuple[int, int], Optional[torch.Tensor]] = ((-1, -1), None)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.video_paths) * self.num_temporal_views * len(self.positions)

    def _frames(self, video: int, temporal: int) -> torch.Tensor:
        """The clip's frames (uint8 T x H x W x 3) at the test scale; the last clip is kept for the next items."""
        from pmv.data import sampling
        from pmv.video.reader import VideoReader

        key, frames = self._cache
        if key == (video, temporal) and frames is not None:
            return frames
        path = self.video_paths[video]
        if path in self.failed:
            raise DataError(self.failed[path])
        with VideoReader(path, threads=1) as reader:
            meta = reader.metadata
            size = self.transforms[0].resized_shape(meta.height, meta.width)
        data = self.data
        with VideoReader(path, threads=1, size=size) as reader:  # resized once by the decoder
            sample = sampling.test_clip(reader.num_frames, data.num_frames, data.sampling_rate, reader.metadata.fps,
                                        temporal, self.num_temporal_views, data.target_fps, data.offset_sampling)
            frames = reader.get_frames_at(sample.indices)
        self.decodes += 1
        self._cache = ((video, temporal), frames)
        return frames

    def __getitem__(self, index: int) -> dict:
        from pmv.data.dataset import DECODE_ERRORS

        rest, position = divmod(index, len(self.positions))
        video, temporal = divmod(rest, self.num_temporal_views)
        item = {"label": self.video_labels[video], "index": position * len(self.video_paths) + video,
                "temporal_view": temporal, "spatial_view": 0, "valid": True}
        try:
            item["clip"] = self.transforms[position](self._frames(video, temporal))
        except DECODE_ERRORS + (DataError,) as err:
            path = self.video_paths[video]
            if path not in self.failed:
                self.failed[path] = str(err) or type(err).__name__
                log.warning("cannot decode %s: %s", path, self.failed[path])
            crop_h, crop_w = self.transforms[0].crop
            item["clip"] = torch.zeros(3, self.data.num_frames, crop_h, crop_w)
            item["valid"] = False
        return item


def mean_frame(paths: Sequence[str], test: TestConfig, max_videos: int = 64) -> Optional[np.ndarray]:
    """The mean middle frame (float H x W x 3 in 0..1) of up to ``max_videos`` videos at the test scale, all
    resized to the first video's shape: the background of the probe heatmap. None if nothing decodes."""
    from pmv.data.dataset import DECODE_ERRORS
    from pmv.data.transforms.pipeline import build_test_transform
    from pmv.video.reader import VideoReader

    sizing = build_test_transform(test, [0.5] * 3, [0.5] * 3)
    total, count, shape = None, 0, None
    step = max(1, len(paths) // max_videos)
    for path in list(paths)[::step][:max_videos]:
        try:
            with VideoReader(path, threads=1) as reader:
                meta = reader.metadata
                shape = shape or sizing.resized_shape(meta.height, meta.width)
            with VideoReader(path, threads=1, size=shape) as reader:
                frame = reader.get_frames_at([reader.num_frames // 2])[0].float().numpy() / 255.0
        except DECODE_ERRORS as err:
            log.debug("mean frame: skipping %s (%s)", path, err)
            continue
        total = frame if total is None else total + frame
        count += 1
    return None if total is None else total / count
