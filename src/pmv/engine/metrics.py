"""Accuracy metrics, multi-view score aggregation and the prediction files of ``pmv test``.

Videos that could not be decoded (``valid`` False) stay in every table: they count as errors in the headline
accuracies and are left out of the ``*_valid`` ones, so a broken test set is never silently smaller.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pmv.utils import atomic_output

from pmv.config.schema import AGGREGATIONS


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[int]:
    """How many rows have their label among the ``k`` highest scores, for each ``k`` (clamped to the classes)."""
    if logits.numel() == 0:
        return [0 for _ in ks]
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hits = top == labels.reshape(-1, 1)
    return [int(hits[:, : min(k, kmax)].any(dim=1).sum().item()) for k in ks]


def view_scores(logits: torch.Tensor, aggregation: str) -> torch.Tensor:
    """The per-view score that is summed (or maxed) per video: softmax probabilities or the raw logits."""
    if aggregation in ("softmax_sum", "softmax_max"):
        return logits.float().softmax(dim=-1)
    if aggregation == "logits_sum":
        return logits.float()
    raise ValueError(f"unknown aggregation {aggregation!r}; use one of {', '.join(AGGREGATIONS)}")


class VideoAggregator:
    """Accumulates per-view scores into per-video scores, the seed's ``TestMeter``.

    ``add(video_index, view_key, scores)``: a view seen twice (e.g. a padded duplicate from another rank) is counted
    once. ``mark_invalid`` records videos that failed to decode.
    """

    def __init__(self, num_videos: int, num_classes: int, aggregation: str = "softmax_sum") -> None:
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; use one of {', '.join(AGGREGATIONS)}")
        self.aggregation = aggregation
        self.scores = np.zeros((num_videos, num_classes), dtype=np.float64)
        self.view_counts = np.zeros(num_videos, dtype=np.int64)
        self.invalid = np.zeros(num_videos, dtype=bool)
        self._keys: dict[int, set] = {}

    def _combine(self, video_index: int, scores: np.ndarray) -> None:
        if self.aggregation == "softmax_max":
            if self.view_counts[video_index] == 0:
                self.scores[video_index] = scores
            else:
                np.maximum(self.scores[video_index], scores, out=self.scores[video_index])
        else:
            self.scores[video_index] += scores

    def add(self, video_index: int, view_key: tuple, scores: np.ndarray) -> None:
        video_index, view_key = int(video_index), tuple(view_key)
        keys = self._keys.setdefault(video_index, set())
        if view_key in keys:
            return
        keys.add(view_key)
        self._combine(video_index, scores)
        self.view_counts[video_index] += 1

    def add_partial(self, video_index: int, view_keys: set, scores: np.ndarray, count: int) -> None:
        """Merge another process's partial result for a video (``count`` views combined into ``scores``)."""
        if count <= 0:
            return
        self._keys.setdefault(int(video_index), set()).update(view_keys)
        self._combine(int(video_index), scores)
        self.view_counts[video_index] += count

    def keys_by_video(self) -> dict[int, set]:
        return self._keys

    def mark_invalid(self, video_index: int) -> None:
        self.invalid[int(video_index)] = True

    @property
    def valid(self) -> np.ndarray:
        return ~self.invalid & (self.view_counts > 0)


@dataclass
class TestMetrics:
    num_videos: int
    num_valid: int
    top1: float  # % over all videos; videos that failed to decode count as wrong
    top5: float
    mean_class_top1: float  # mean over classes of the per-class top-1 (% , all videos)
    top1_valid: float  # % over decodable videos only
    top5_valid: float
    per_class: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "per_class"}


def _percent(numerator: float, denominator: float) -> float:
    return 100.0 * numerator / denominator if denominator else 0.0


def compute_test_metrics(
    scores: np.ndarray, labels: np.ndarray, valid: np.ndarray, class_names: Sequence[str] | None = None
) -> TestMetrics:
    """Top-1/top-5 (all videos and valid only), mean per-class accuracy and the per-class table."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    valid = np.asarray(valid, dtype=bool)
    num_videos, num_classes = scores.shape
    k = min(5, num_classes)
    # argsort of the negated scores, stable, so ties resolve to the lower class index like torch.topk does.
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hit1 = (ranked[:, 0] == labels) & valid
    hit5 = (ranked == labels[:, None]).any(axis=1) & valid
    predictions = np.where(valid, ranked[:, 0], -1)
    per_class = []
    class_accuracies = []
    for c in range(num_classes):
        rows = labels == c
        count = int(rows.sum())
        entry = {
            "class_index": c,
            "class_name": class_names[c] if class_names is not None and c < len(class_names) else str(c),
            "videos": count,
            "invalid": int((rows & ~valid).sum()),
            "top1": _percent(hit1[rows].sum(), count),
            "top5": _percent(hit5[rows].sum(), count),
            "predicted_as": int((predictions == c).sum()),
        }
        per_class.append(entry)
        if count:
            class_accuracies.append(entry["top1"])
    return TestMetrics(
        num_videos=num_videos,
        num_valid=int(valid.sum()),
        top1=_percent(hit1.sum(), num_videos),
        top5=_percent(hit5.sum(), num_videos),
        mean_class_top1=float(np.mean(class_accuracies)) if class_accuracies else 0.0,
        top1_valid=_percent(hit1.sum(), valid.sum()),
        top5_valid=_percent(hit5.sum(), valid.sum()),
        per_class=per_class,
    )


def confusion_matrix(scores: np.ndarray, labels: np.ndarray, valid: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``[true, predicted]`` over the valid videos."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    valid = np.asarray(valid, dtype=bool)
    predicted = np.asarray(scores).argmax(axis=1)
    np.add.at(matrix, (np.asarray(labels)[valid], predicted[valid]), 1)
    return matrix


# ---------------------------------------------------------------------------------------------------- files


def _atomic_write(path: Path, write) -> Path:
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return path


def write_json(path: str | os.PathLike, data: dict) -> Path:
    text = json.dumps(data, indent=2, default=float).encode("utf-8")
    return _atomic_write(Path(path), lambda h: h.write(text))


def seed_predictions_name(num_frames: int, crop: Sequence[int], temporal_views: int, spatial_views: int,
                          spatial_index: int) -> str:
    """The seed's file name ``{T}x{H}x{W}x{views}x{crops}_{spatial_index}.pkl``, e.g. ``16x224x224x5x1_1.pkl``."""
    return f"{num_frames}x{crop[0]}x{crop[1]}x{temporal_views}x{spatial_views}_{spatial_index}.pkl"


def write_seed_predictions(path: str | os.PathLike, scores: np.ndarray, labels: np.ndarray) -> Path:
    """The seed's test output: a pickle of ``{"video_preds": float [V, C], "video_labels": int [V]}`` in list order."""
    data = {
        "video_preds": np.asarray(scores, dtype=np.float32),
        "video_labels": np.asarray(labels, dtype=np.int64),
    }
    return _atomic_write(Path(path), lambda h: pickle.dump(data, h, protocol=4))


def write_predictions_npz(path: str | os.PathLike, *, scores: np.ndarray, labels: np.ndarray, valid: np.ndarray,
                          view_counts: np.ndarray, paths: Sequence[str]) -> Path:
    def write(handle):
        np.savez(handle, scores=np.asarray(scores, dtype=np.float32), labels=np.asarray(labels, dtype=np.int64),
                 valid=np.asarray(valid, dtype=bool), view_counts=np.asarray(view_counts, dtype=np.int64),
                 paths=np.asarray([str(p) for p in paths]))

    return _atomic_write(Path(path), write)


def write_per_class_csv(path: str | os.PathLike, per_class: list[dict]) -> Path:
    columns = ["class_index", "class_name", "videos", "invalid", "top1", "top5", "predicted_as"]

    def write(handle):
        import io

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        for row in per_class:
            writer.writerow({k: (f"{row[k]:.2f}" if isinstance(row[k], float) else row[k]) for k in columns})
        handle.write(text.getvalue().encode("utf-8"))

    return _atomic_write(Path(path), write)
