"""Validation during training and the multi-view test of ``pmv test``.

The test runs every (temporal clip, spatial crop) view of every video, turns each view's logits into a score
(softmax or logits, ``test.aggregation``), and sums them per video, the seed's protocol. With ``test.view_sweep``
(e.g. ``[1, 3, 5, 7, 10]``) every video is decoded once and scored for each number of temporal views.

Under ``torchrun`` each rank scores its share of the items (no padding, so nothing is counted twice) and rank 0
merges the per-video partial sums and writes the files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from pmv.config import Config
from pmv.engine import distributed as distrib
from pmv.engine import metrics as M
from pmv.engine.build import build_model, config_for_checkpoint, load_weights, make_loader, run_dir_of, test_input_size
from pmv.engine.precision import autocast_context

log = logging.getLogger(__name__)


def _valid_mask(batch: dict, size: int) -> torch.Tensor:
    valid = batch.get("valid")
    if valid is None:
        return torch.ones(size, dtype=torch.bool)
    return torch.as_tensor(valid, dtype=torch.bool).reshape(-1)


@torch.no_grad()
def validate(model: nn.Module, loader, device: torch.device, *, precision: str = "fp32") -> dict:
    """Loss, top-1 and top-5 (%) of one clip per video, summed over ranks. Undecodable videos count as wrong."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(5, dtype=torch.float64)  # loss sum, top1, top5, valid clips, all clips
    for batch in loader:
        clips, labels = batch["clip"].to(device), batch["label"].to(device)
        valid = _valid_mask(batch, labels.shape[0]).to(device)
        with autocast_context(device, precision):
            logits = model(clips)
        logits = logits.float()
        if valid.any():
            loss = F.cross_entropy(logits[valid], labels[valid], reduction="sum")
            top1, top5 = M.topk_correct(logits[valid], labels[valid], (1, 5))
        else:
            loss, top1, top5 = torch.zeros(()), 0, 0
        totals += torch.tensor([float(loss), top1, top5, int(valid.sum()), labels.shape[0]], dtype=torch.float64)
    model.train(was_training)
    loss_sum, top1, top5, num_valid, num_all = distrib.all_reduce_sum(totals, device).tolist()
    return {
        "loss": loss_sum / max(num_valid, 1),
        "top1": 100.0 * top1 / max(num_all, 1),
        "top5": 100.0 * top5 / max(num_all, 1),
        "videos": int(num_all),
        "invalid": int(num_all - num_valid),
    }


# ---------------------------------------------------------------------------------------------- multi-view test


@dataclass
class ProtocolResult:
    name: str  # e.g. "5x1": temporal views x spatial views
    temporal_views: int
    spatial_views: int
    metrics: M.TestMetrics
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class TestReport:
    output_dir: Path
    split: str
    num_videos: int
    protocols: list[ProtocolResult]
    invalid_videos: list[dict]
    report_path: Optional[Path] = None

    @property
    def main(self) -> ProtocolResult:
        return self.protocols[-1]


def _partial_sums(aggregator: M.VideoAggregator) -> dict:
    touched = np.flatnonzero((aggregator.view_counts > 0) | aggregator.invalid)
    return {
        "videos": touched,
        "scores": aggregator.scores[touched],
        "counts": aggregator.view_counts[touched],
        "invalid": aggregator.invalid[touched],
        "keys": {int(v): keys for v, keys in aggregator.keys_by_video().items()},
    }


def _merge(partials: Sequence[dict], num_videos: int, num_classes: int, aggregation: str) -> M.VideoAggregator:
    merged = M.VideoAggregator(num_videos, num_classes, aggregation)
    seen: dict[int, set] = {}
    for part in partials:
        for row, video in enumerate(part["videos"].tolist()):
            keys = part["keys"].get(video, set())
            overlap = seen.setdefault(video, set()) & keys
            if overlap:  # only possible with a padding sampler; never count a view twice
                log.warning("video %d: %d view(s) scored on two ranks; keeping the first", video, len(overlap))
                continue
            seen[video] |= keys
            merged.add_partial(video, keys, part["scores"][row], int(part["counts"][row]))
            if part["invalid"][row]:
                merged.mark_invalid(video)
    return merged


def _write_protocol(out: Path, result_name: str, aggregator: M.VideoAggregator, labels: np.ndarray,
                    paths: Sequence[str], class_names: Sequence[str], seed_name: str) -> tuple[M.TestMetrics, dict]:
    from pmv.analysis.plots import plot_confusion_matrix

    valid = aggregator.valid
    metrics = M.compute_test_metrics(aggregator.scores, labels, valid, class_names)
    files = {
        "seed_predictions": str(M.write_seed_predictions(out / seed_name, aggregator.scores, labels)),
        "predictions": str(M.write_predictions_npz(out / f"predictions_{result_name}.npz", scores=aggregator.scores,
                                                   labels=labels, valid=valid, view_counts=aggregator.view_counts,
                                                   paths=paths)),
        "per_class": str(M.write_per_class_csv(out / f"per_class_{result_name}.csv", metrics.per_class)),
    }
    matrix = M.confusion_matrix(aggregator.scores, labels, valid, aggregator.scores.shape[1])
    files["confusion_matrix"] = str(plot_confusion_matrix(
        matrix, class_names, out / f"confusion_{result_name}.png",
        title=f"{result_name} views: top-1 {metrics.top1:.1f}%"))
    return metrics, files


def _failure_message(dataset: Any, index: int) -> str:
    failed = getattr(dataset, "failed", None)  # path -> reason, kept by the data package's datasets
    if isinstance(failed, dict) and 0 <= index < len(dataset.paths):
        reason = failed.get(str(dataset.paths[index]))
        if reason:
            return str(reason)
    return "could not be decoded"


@torch.no_grad()
def run_test(
    config: Config,
    model: nn.Module,
    output_dir: str | Path,
    *,
    device: torch.device | None = None,
    class_names: Sequence[str] | None = None,
    dataset: Any = None,
    extra_report: dict | None = None,
) -> TestReport:
    """The multi-view test (or the temporal-view sweep) of ``model`` on ``config.test.split``.

    Writes, under ``output_dir`` (rank 0): per protocol the seed-format pickle, ``predictions_<T>x<S>.npz``,
    ``per_class_<T>x<S>.csv`` and ``confusion_<T>x<S>.png``; and ``report.json`` with the metrics and the list of
    videos that failed to decode. ``dataset`` replaces the one the config describes.
    """
    tc = config.test
    info_rank = torch.distributed.get_rank() if distrib.is_dist() else 0
    world = torch.distributed.get_world_size() if distrib.is_dist() else 1
    device = device or next(model.parameters()).device
    sweep = sorted(set(int(k) for k in tc.view_sweep))
    if dataset is None:
        from pmv.data.dataset import build_test_dataset, build_video_views_dataset

        if sweep:
            dataset = build_video_views_dataset(config.data, tc, split=tc.split, temporal_view_counts=sweep)
        else:
            dataset = build_test_dataset(config.data, tc, split=tc.split)
    labels = np.asarray(dataset.labels, dtype=np.int64)
    paths = [str(p) for p in dataset.paths]
    num_videos = len(paths)
    num_classes = int(getattr(dataset, "num_classes", 0) or config.model.num_classes)
    class_names = list(class_names or getattr(dataset, "class_names", []) or [str(i) for i in range(num_classes)])
    view_counts = sweep or [tc.num_temporal_views]
    aggregators = {k: M.VideoAggregator(num_videos, num_classes, tc.aggregation) for k in view_counts}

    sampler = distrib.ShardedSampler(len(dataset), rank=info_rank, world_size=world, shuffle=False, drop_last=False)
    loader = make_loader(dataset, batch_size=1 if sweep else tc.batch_size, sampler=sampler,
                         num_workers=config.train.num_workers, seed=config.train.seed, drop_last=False,
                         persistent=False)
    precision = config.train.precision if config.train.precision != "fp16" or device.type == "cuda" else "bf16"
    model.eval()
    bar = tqdm(loader, desc=f"test {tc.split}", disable=info_rank != 0, dynamic_ncols=True, leave=False)
    for batch in bar:
        if sweep:
            _score_views_batch(model, batch, aggregators, device, precision, tc.batch_size, tc.aggregation)
        else:
            valid = _valid_mask(batch, batch["label"].shape[0])
            keep = valid.nonzero().flatten()
            scores = None
            if len(keep):
                with autocast_context(device, precision):
                    logits = model(batch["clip"][keep].to(device))
                scores = M.view_scores(logits, tc.aggregation).cpu().numpy()
            aggregator = aggregators[view_counts[0]]
            for row in range(len(valid)):
                video = int(batch["index"][row])
                if not valid[row]:
                    aggregator.mark_invalid(video)
            for j, row in enumerate(keep.tolist()):
                video = int(batch["index"][row])
                key = (int(batch["temporal_view"][row]), int(batch["spatial_view"][row]))
                aggregator.add(video, key, scores[j])
    bar.close()

    gathered = distrib.all_gather_objects({k: _partial_sums(a) for k, a in aggregators.items()})
    failures = distrib.all_gather_objects({i: _failure_message(dataset, i) for i in range(num_videos)
                                           if any(a.invalid[i] for a in aggregators.values())})
    report = TestReport(output_dir=Path(output_dir), split=tc.split, num_videos=num_videos, protocols=[],
                        invalid_videos=[])
    if info_rank != 0:
        distrib.barrier()
        return report
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    messages: dict[int, str] = {}
    for part in failures:
        messages.update(part)
    spatial = tc.num_spatial_views
    for k in view_counts:
        merged = _merge([g[k] for g in gathered], num_videos, num_classes, tc.aggregation)
        expected = k * spatial
        wrong_count = np.flatnonzero(merged.valid & (merged.view_counts != expected))
        if len(wrong_count):
            log.warning("%d video(s) got a number of views other than %d (e.g. video %d: %d)", len(wrong_count),
                        expected, wrong_count[0], merged.view_counts[wrong_count[0]])
        name = f"{k}x{spatial}"
        seed_name = M.seed_predictions_name(config.data.num_frames, tc.crop, k, spatial, tc.spatial_index)
        metrics, files = _write_protocol(out, name, merged, labels, paths, class_names, seed_name)
        report.protocols.append(ProtocolResult(name, k, spatial, metrics, files))
        if not report.invalid_videos:
            report.invalid_videos = [
                {"index": int(i), "path": paths[i], "label": int(labels[i]), "error": messages.get(int(i), "")}
                for i in np.flatnonzero(~merged.valid)
            ]
        log.info("test %s, %s views: top-1 %.2f%% top-5 %.2f%% mean class %.2f%% (%d/%d videos decodable)",
                 tc.split, name, metrics.top1, metrics.top5, metrics.mean_class_top1, metrics.num_valid, num_videos)
    if report.invalid_videos:
        log.warning("%d test video(s) could not be decoded and count as errors; see report.json",
                    len(report.invalid_videos))
    body = {
        "split": tc.split,
        "num_videos": num_videos,
        "aggregation": tc.aggregation,
        "crop": list(tc.crop),
        "short_side": tc.short_side,
        "protocols": {p.name: {**p.metrics.summary(), "files": p.files} for p in report.protocols},
        "invalid_videos": report.invalid_videos,
        **(extra_report or {}),
    }
    report.report_path = M.write_json(out / "report.json", body)
    distrib.barrier()
    return report


def _score_views_batch(model, batch, aggregators, device, precision, chunk, aggregation) -> None:
    """One video-views item per batch row: ``clips`` B x V x C x T x H x W, ``views`` B x V x 3 (K, k, s)."""
    clips, views = batch["clips"], batch["views"]
    valid = _valid_mask(batch, clips.shape[0])
    for row in range(clips.shape[0]):
        video = int(batch["index"][row])
        if not valid[row]:
            for aggregator in aggregators.values():
                aggregator.mark_invalid(video)
            continue
        video_clips = clips[row]
        parts = []
        for start in range(0, video_clips.shape[0], max(1, chunk)):
            with autocast_context(device, precision):
                parts.append(model(video_clips[start:start + chunk].to(device)).float())
        scores = M.view_scores(torch.cat(parts), aggregation).cpu().numpy()
        for (count, temporal, spatial), score in zip(views[row].tolist(), scores):
            if count in aggregators:
                aggregators[count].add(video, (temporal, spatial), score)


def apply_views_argument(config: Config, views: str | None) -> Config:
    """Apply a ``--views TxS`` argument (e.g. ``5x1``, ``10x3``)."""
    if not views:
        return config
    from pmv.errors import ConfigError

    try:
        temporal, spatial = (int(v) for v in views.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--views {views!r} must look like TxS, e.g. 5x1 or 10x3") from None
    if temporal < 1 or spatial not in (1, 3):
        raise ConfigError(f"--views {views!r}: need at least 1 temporal view and 1 or 3 spatial views")
    return replace(config, test=replace(config.test, num_temporal_views=temporal, num_spatial_views=spatial))


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    config_path: str | None = None,
    overrides: Sequence[str] = (),
    views: str | None = None,
    output_dir: str | Path | None = None,
    device: str = "auto",
    use_ema: bool = False,
) -> TestReport:
    """``pmv test``: build the model a checkpoint describes, load its weights and run :func:`run_test`.

    pmv checkpoints carry their config and class names; PySlowFast/UniFormer files need ``config_path``. The
    model is built for the test crop (``test.crop``), as the seed does; weights whose shape depends on the input
    size (MViT relative positions) are adapted by the zoo's loader.
    """
    from pmv.engine import checkpointing as ckpt
    from pmv.errors import CheckpointError

    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = ckpt.read_checkpoint(path)
    except CheckpointError:
        if not config_path:
            raise
        state = None  # a foreign (seed) checkpoint: the zoo's loader reads it
    config = apply_views_argument(config_for_checkpoint(state, config_path, overrides), views)
    info = distrib.setup(device)
    config = replace(config, model=replace(config.model, pretrained=""))
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, test_input_size(config))
    if state is not None:
        weights = state
        if use_ema:
            if not state.get("ema"):
                raise CheckpointError(f"{path} has no EMA weights (train.ema_decay was 0); drop --ema")
            weights = {**state, "model": state["ema"]}
        load_weights(model, weights, strict=True)
    else:
        load_weights(model, str(path), strict=True)
    model.to(info.device)
    if output_dir is None:
        output_dir = run_dir_of(path) / f"test_{config.test.split}"
    class_names = state.get("class_names") if state else None
    extra = {"checkpoint": str(path), "model": config.model.name,
             "epoch": state.get("epoch") if state else None}
    return run_test(config, model, output_dir, device=info.device, class_names=class_names, extra_report=extra)
