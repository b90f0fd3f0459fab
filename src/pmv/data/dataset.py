"""Datasets of clips: training (one random clip per video), testing (video x temporal x spatial views) and the
view sweep (every view of a video from one decode).

Items are dicts of tensors and plain values (see each builder). The spatial pipeline follows the seed
(seed_code.md 2.2 and 2.4), built from :mod:`pmv.data.transforms`:

* train: RandAugment (if ``transform.randaugment``) on the full decoded frames -> short-side jitter (auto-adjusted
  for rectangular crops if asked) and a random (rect) crop, or an Inception-style crop when
  ``transform.scale_relative``/``aspect_relative`` are set -> flip -> normalise -> random erasing. Resize, crop and
  RandAugment are evaluated in one sampling pass at the crop's pixels only (no full-frame resize).
* test: short side ``test.short_side`` (auto-adjusted if ``test.auto_adjust``) done by the decoder -> crop
  ``test.crop`` at index 0/1/2 along the long side (top/centre/bottom of a portrait frame) -> normalise.

Broken videos never crash training: the first failure of a video is logged (WARNING) with its reason, counted in
``failures`` and ``failed``, and the item is replaced by another video drawn from the item's generator. In test,
a broken video gives ``valid=False`` and a zero clip of the right shape, so every view is still accounted for.
``failures`` is shared by data-loader workers (forked or spawned); ``failed`` (path -> reason) holds the failures
this process has seen.
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import replace
from typing import Optional, Sequence

import av
import torch
from torch.utils.data import Dataset

from pmv.config.schema import DataConfig, TestConfig, TransformConfig
from pmv.data import sampling
from pmv.data.annotations import SplitAnnotations, load_split, video_root
from pmv.data.audio import clip_log_mel, misaligned_start, silent_log_mel
from pmv.data.transforms import functional as TF
from pmv.data.transforms.pipeline import TestTransform, build_train_transform
from pmv.errors import DataError
from pmv.video.errors import NoAudioStreamError, VideoError
from pmv.video.reader import VideoReader

logger = logging.getLogger(__name__)

# What a broken video raises while being read: our typed errors, and whatever FFmpeg or the OS let through.
DECODE_ERRORS = (VideoError, av.error.FFmpegError, OSError, EOFError)
MAX_REPLACEMENTS = 20  # consecutive broken videos before training gives up (the data root is probably wrong)


def _seed_from(generator: Optional[torch.Generator]) -> int:
    return int(torch.randint(0, 2**62, (), generator=generator).item())


def _split_key(key) -> tuple[int, Optional[int]]:
    """A dataset key is an index, or ``(index, seed)`` from a sampler that keys each draw's randomness
    (:class:`pmv.data.loader.SeededSampler`): then an item depends on nothing but its key, whichever worker makes it."""
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return int(key), None


class ClipDataset(Dataset):
    """Common part: the split's videos, labels, class names, and failure bookkeeping."""

    def __init__(self, annotations: SplitAnnotations, data: DataConfig):
        if not annotations.paths:
            raise DataError(f"{annotations.list_file} lists no videos")
        self.split = annotations.split
        self.list_file = annotations.list_file
        self.paths: list[str] = list(annotations.paths)
        self.labels: list[int] = list(annotations.labels)
        self.class_names: list[str] = list(annotations.class_names)
        self.missing: list[str] = list(annotations.missing)
        self.data = data
        self.failed: dict[str, str] = {}
        self._failure_count = multiprocessing.Value("i", 0)
        # Items draw their randomness from this generator (set per worker by pmv.data.loader); None = torch's global.
        self.generator: Optional[torch.Generator] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_videos(self) -> int:
        return len(self.paths)

    @property
    def failures(self) -> int:
        """How many distinct videos failed to decode, over all data-loader workers."""
        return self._failure_count.value

    def _record_failure(self, path: str, error: BaseException) -> None:
        if path in self.failed:
            return
        reason = str(error) or type(error).__name__
        self.failed[path] = reason
        with self._failure_count.get_lock():
            self._failure_count.value += 1
        logger.warning("cannot decode %s (%s split): %s", path, self.split, reason)

    def _item_generator(self, seed: Optional[int] = None) -> torch.Generator:
        return torch.Generator().manual_seed(_seed_from(self.generator) if seed is None else seed)

    def _audio(self, reader: VideoReader, start_s: float, end_s: float) -> torch.Tensor:
        try:
            waveform = reader.get_audio(start_s, end_s, self.data.audio_sample_rate)
        except NoAudioStreamError:
            return silent_log_mel(self.data)
        return clip_log_mel(waveform, self.data)

    def _misaligned_audio(self, reader: VideoReader, start_s: float, end_s: float, generator) -> torch.Tensor:
        """The AV-sync negative: audio of the same length from elsewhere in the video, at least the gap away."""
        duration = reader.metadata.duration or (end_s - start_s)
        gap_s = self.data.audio_misaligned_gap * self.data.audio_step_ms / 1000.0
        start = misaligned_start(start_s, end_s - start_s, duration, gap_s, generator)
        if start is None:  # too short for a gap: the batch step swaps in another video's audio (an easy negative)
            return self._audio(reader, start_s, end_s)
        return self._audio(reader, start, start + (end_s - start_s))


# ------------------------------------------------------------------------------------------------ train
class TrainClipDataset(ClipDataset):
    """One random clip per video per visit; ``num_sample`` augmented copies from one decode."""

    def __init__(self, annotations: SplitAnnotations, data: DataConfig, transform: TransformConfig):
        super().__init__(annotations, data)
        self.transform_config = transform
        self.transform = build_train_transform(transform, data.mean, data.std)
        self.num_sample = transform.num_sample

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, index: int, generator: torch.Generator) -> dict:
        data = self.data
        path = self.paths[index]
        reader_options = {"short_side": data.decode_short_side} if data.decode_short_side else {}
        with VideoReader(path, threads=1, **reader_options) as reader:
            meta = reader.metadata
            clip = sampling.train_clip(
                reader.num_frames, data.num_frames, data.sampling_rate, meta.fps, data.target_fps, generator
            )
            frames = reader.get_frames_at(clip.indices)
            audio = self._audio(reader, clip.start_s, clip.end_s) if data.audio else None
            if audio is not None and data.audio_negatives:
                audio = torch.cat([audio, self._misaligned_audio(reader, clip.start_s, clip.end_s, generator)])
        if self.num_sample == 1:
            clip = self.transform(frames, generator)
        else:  # all copies in one pass over the frames, each written into its slot of the stack
            clip = self.transform.copies(frames, self.num_sample, generator)
        item = {
            "clip": clip,
            "label": self.labels[index],
            "index": index,
        }
        if audio is not None:
            item["audio"] = audio
        return item

    def __getitem__(self, key) -> dict:
        index, seed = _split_key(key)
        generator = self._item_generator(seed)
        for _ in range(MAX_REPLACEMENTS):
            path = self.paths[index]
            if path not in self.failed:
                try:
                    return self._decode(index, generator)
                except DECODE_ERRORS as err:
                    self._record_failure(path, err)
            index = TF.randint(generator, 0, len(self.paths))
        raise DataError(
            f"{MAX_REPLACEMENTS} videos in a row from {self.list_file} could not be decoded "
            f"(last: {self.paths[index]}: {self.failed.get(self.paths[index], '?')}); check data.root and the files"
        )


# ------------------------------------------------------------------------------------------------ test
class _TestDecoder:
    """Reads frames at the test size (resized by the decoder) and cuts the spatial views with ``TestTransform``,
    the one tested test transform (resize rule, crop along the long side, normalisation)."""

    def __init__(self, data: DataConfig, test: TestConfig):
        self.data = data
        self.test = test
        self.spatial = [0, 1, 2] if test.num_spatial_views == 3 else [test.spatial_index]
        self.transform = TestTransform(test, data.mean, data.std)
        self.crop = self.transform.crop
        self._sizes: dict[str, tuple[int, int]] = {}  # path -> decoded (H, W) at the test scale

    def spatial_indices(self) -> list[int]:
        return list(self.spatial)

    def open(self, path: str) -> VideoReader:
        """A reader that returns frames already at the test size (exact shape: floor of the long side)."""
        size = self._sizes.get(path)
        if size is None:
            reader = VideoReader(path, threads=1)
            meta = reader.metadata
            size = self.transform.resized_shape(meta.height, meta.width)
            self._sizes[path] = size
            if size == (meta.height, meta.width):
                return reader
            reader.close()
        return VideoReader(path, threads=1, size=size)

    def clip_of(self, frames: torch.Tensor, spatial: int) -> torch.Tensor:
        return self.transform(frames, spatial)

    def empty_clip(self) -> torch.Tensor:
        return torch.zeros(3, self.data.num_frames, *self.crop)

    def clips_for_video(self, reader: VideoReader, temporal_views: Sequence[tuple[int, int]]):
        """The clip samples of ``(num_views, view)`` pairs."""
        data = self.data
        return [
            sampling.test_clip(
                reader.num_frames, data.num_frames, data.sampling_rate, reader.metadata.fps, k, count,
                data.target_fps, data.offset_sampling,
            )
            for count, k in temporal_views
        ]


class TestClipDataset(ClipDataset):
    """Item ``i``: video ``i // (K * S)``, temporal view ``(i % (K * S)) // S``, spatial view ``i % S``."""

    __test__ = False  # not a pytest class

    def __init__(self, annotations: SplitAnnotations, data: DataConfig, test: TestConfig):
        super().__init__(annotations, data)
        self.test = test
        self.decoder = _TestDecoder(data, test)
        self.num_temporal_views = test.num_temporal_views
        self.spatial_views = self.decoder.spatial_indices()
        self.views_per_video = self.num_temporal_views * len(self.spatial_views)

    def __len__(self) -> int:
        return len(self.paths) * self.views_per_video

    def __getitem__(self, index: int) -> dict:
        video, rest = divmod(index, self.views_per_video)
        temporal, spatial_slot = divmod(rest, len(self.spatial_views))
        path = self.paths[video]
        item = {
            "label": self.labels[video],
            "index": video,
            "temporal_view": temporal,
            "spatial_view": self.spatial_views[spatial_slot],
            "valid": True,
            "error": "",
        }
        try:
            if path in self.failed:
                raise DataError(self.failed[path])
            with self.decoder.open(path) as reader:
                (sample,) = self.decoder.clips_for_video(reader, [(self.num_temporal_views, temporal)])
                frames = reader.get_frames_at(sample.indices)
                audio = self._audio(reader, sample.start_s, sample.end_s) if self.data.audio else None
            item["clip"] = self.decoder.clip_of(frames, item["spatial_view"])
            if audio is not None:
                item["audio"] = audio
        except DECODE_ERRORS + (DataError,) as err:
            self._record_failure(path, err)
            item["clip"] = self.decoder.empty_clip()
            item["valid"] = False
            item["error"] = self.failed[path]
            if self.data.audio:
                item["audio"] = silent_log_mel(self.data)
        return item


class VideoViewsDataset(ClipDataset):
    """One item per video with every clip of every view set, from one decode of the union of their frames."""

    def __init__(
        self, annotations: SplitAnnotations, data: DataConfig, test: TestConfig, temporal_view_counts: Sequence[int]
    ):
        super().__init__(annotations, data)
        counts = sampling.check_view_counts(temporal_view_counts)
        self.test = test
        self.decoder = _TestDecoder(data, test)
        self.temporal_view_counts = counts
        spatial = self.decoder.spatial_indices()
        self.view_table = torch.tensor(
            [(count, k, s) for count in counts for k in range(count) for s in spatial], dtype=torch.long
        )

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_views(self) -> int:
        return len(self.view_table)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        item = {"views": self.view_table.clone(), "label": self.labels[index], "index": index, "valid": True,
                "error": ""}
        try:
            if path in self.failed:
                raise DataError(self.failed[path])
            temporal = sorted({(int(c), int(k)) for c, k, _ in self.view_table.tolist()})
            with self.decoder.open(path) as reader:
                samples = dict(zip(temporal, self.decoder.clips_for_video(reader, temporal)))
                wanted = sorted({i for sample in samples.values() for i in sample.indices})
                frames = reader.get_frames_at(wanted)
            position = {frame: row for row, frame in enumerate(wanted)}
            clips = []
            for count, k, s in self.view_table.tolist():
                rows = torch.tensor([position[i] for i in samples[(count, k)].indices])
                clips.append(self.decoder.clip_of(frames.index_select(0, rows), s))
            item["clips"] = torch.stack(clips)
        except DECODE_ERRORS + (DataError,) as err:
            self._record_failure(path, err)
            item["clips"] = self.decoder.empty_clip().expand(len(self.view_table), -1, -1, -1, -1).clone()
            item["valid"] = False
            item["error"] = self.failed[path]
        return item


# ------------------------------------------------------------------------------------------------ builders
def _annotations(data: DataConfig, split: str) -> SplitAnnotations:
    annotations = load_split(data, split, check_files=True)
    if annotations.paths and len(annotations.missing) == len(annotations.paths):
        root = video_root(data, split)
        raise DataError(
            f"none of the {len(annotations.paths):,} videos listed in {annotations.list_file} is under {root} "
            f"(e.g. {annotations.missing[0]}); set data.root to the folder that holds them"
        )
    if annotations.missing:
        # missing files are not silently dropped: they stay listed and count as failures when read
        logger.warning(
            "%s: %d listed videos are not on disk; they will be reported as failures", split, len(annotations.missing)
        )
    return annotations


def build_train_dataset(data: DataConfig, transform: TransformConfig, split: str = "train") -> ClipDataset:
    """Training clips: item = ``clip`` (C x T x H x W, or N x C x T x H x W with ``transform.num_sample = N > 1``),
    ``label``, ``index`` (the video), and ``audio`` (1 x frames x mel) when ``data.audio``."""
    return TrainClipDataset(_annotations(data, split), data, transform)


def validation_views(test: TestConfig) -> TestConfig:
    """Validation during training: one centre clip per video (one temporal, one spatial view), sized and cropped
    like the test (``test.short_side``, ``test.crop``), so epochs are comparable and cheap."""
    return replace(test, num_temporal_views=1, num_spatial_views=1, spatial_index=1)


def build_test_dataset(data: DataConfig, test: TestConfig, split: str = "test") -> ClipDataset:
    """Test views: item = ``clip``, ``label``, ``index`` (the video), ``temporal_view``, ``spatial_view``, ``valid``."""
    return TestClipDataset(_annotations(data, split), data, test)


def build_video_views_dataset(
    data: DataConfig, test: TestConfig, split: str = "test", temporal_view_counts: Sequence[int] = (1, 3, 5, 7, 10)
) -> ClipDataset:
    """Every view of every view set per video: item = ``clips`` (V x C x T x H x W), ``views`` (V x 3: number of
    temporal views K, temporal index k, spatial index s), ``label``, ``index``, ``valid``."""
    return VideoViewsDataset(_annotations(data, split), data, test, temporal_view_counts)
