"""Scoring clips: validation during training, the multi-view test of ``pmv test`` and the view sweep.

One path for all three. Each batch of views goes through :func:`score_views` (autocast forward, per-view scores by
``test.aggregation``); :class:`pmv.engine.metrics.VideoAggregator` sums the scores per video (the seed's protocol).
``evaluate`` (validation) scores one centre view per video and also reports the loss; ``run_test`` scores the
``T x S`` views of ``test``; ``run_view_sweep`` decodes each video once and scores several temporal-view counts.

Under ``torchrun`` each rank scores its share of the items (no padding, so nothing is counted twice) and rank 0
merges the per-video partial sums and writes the files. Reasons for undecodable videos travel in the items
(``error``), so they reach ``report.json`` from data-loader workers too.
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

from pmv.config import Config, TestConfig
from pmv.engine import distributed as distrib
from pmv.engine import metrics as M
from pmv.engine.build import (
    build_model, config_for_checkpoint, load_trained_weights, make_loader, run_dir_of, test_input_size,
)
from pmv.engine.loop import model_inputs
from pmv.engine.precision import autocast_context, resolve_precision
from pmv.utils import show_progress

log = logging.getLogger(__name__)


def _valid_mask(batch: dict, size: int) -> torch.Tensor:
    valid = batch.get("valid")
    if valid is None:
        return torch.ones(size, dtype=torch.bool)
    return torch.as_tensor(valid, dtype=torch.bool).reshape(-1)


def is_audio_visual(model: nn.Module) -> bool:
    spec = getattr(model, "input_spec", None)
    return spec is not None and spec.kind == "audio_visual"


def forward_logits(model: nn.Module, batch: dict, rows: torch.Tensor, device: torch.device, precision: str):
    """Float logits of the ``rows`` of a batch of views (with the audio of AV models)."""
    picked = {key: batch[key][rows] for key in ("clip", "audio", "label") if key in batch}
    inputs, labels = model_inputs(picked, device, is_audio_visual(model))
    with autocast_context(device, precision):
        logits = model(*inputs)
    return logits.float(), labels


def _errors(batch: dict, size: int) -> list[str]:
    errors = batch.get("error")
    return list(errors) if errors is not None else [""] * size


class ViewScorer:
    """Adds batches of views to per-video aggregators, one per protocol ``(temporal views, spatial crops)``; keeps the
    loss and the failure reasons it sees. A one-crop protocol of a sweep takes the views at ``single_crop``."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str, aggregators: dict,
                 aggregation: str, single_crop: int = 1) -> None:
        self.model, self.device, self.precision = model, device, precision
        self.aggregators, self.aggregation = aggregators, aggregation
        self.single_crop = single_crop
        self.loss_sum, self.loss_count = 0.0, 0
        self.errors: dict[int, str] = {}

    def add_views(self, batch: dict, protocol: tuple[int, int]) -> None:
        """Items of per-view datasets: ``clip`` B x C x T x H x W, ``index``, ``temporal_view``, ``spatial_view``."""
        valid = _valid_mask(batch, batch["label"].shape[0])
        for row, error in enumerate(_errors(batch, len(valid))):
            if not valid[row]:
                self._invalid(int(batch["index"][row]), error)
        keep = valid.nonzero().flatten()
        if not len(keep):
            return
        logits, labels = forward_logits(self.model, batch, keep, self.device, self.precision)
        self.loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        self.loss_count += len(keep)
        scores = M.view_scores(logits, self.aggregation).cpu().numpy()
        for j, row in enumerate(keep.tolist()):
            key = (int(batch["temporal_view"][row]), int(batch["spatial_view"][row]))
            self.aggregators[protocol].add(int(batch["index"][row]), key, scores[j])

    def add_video_views(self, batch: dict, chunk: int) -> None:
        """Items of the sweep dataset: ``clips`` B x V x C x T x H x W, ``views`` B x V x 3 (count, k, s)."""
        valid = _valid_mask(batch, batch["clips"].shape[0])
        errors = _errors(batch, len(valid))
        for row in range(batch["clips"].shape[0]):
            video = int(batch["index"][row])
            if not valid[row]:
                self._invalid(video, errors[row])
                continue
            views = batch["clips"][row]
            per_view = {"clip": views, "label": batch["label"][row].expand(views.shape[0])}
            if "audio" in batch:
                per_view["audio"] = batch["audio"][row].expand(views.shape[0], *batch["audio"].shape[1:])
            parts = []
            for start in range(0, views.shape[0], max(1, chunk)):
                rows = torch.arange(start, min(start + chunk, views.shape[0]))
                parts.append(forward_logits(self.model, per_view, rows, self.device, self.precision)[0])
            scores = M.view_scores(torch.cat(parts), self.aggregation).cpu().numpy()
            for (count, temporal, spatial), score in zip(batch["views"][row].tolist(), scores):
                for (views, crops), aggregator in self.aggregators.items():
                    if views == count and (crops > 1 or spatial == self.single_crop):
                        aggregator.add(video, (temporal, spatial), score)

    def _invalid(self, video: int, error: str) -> None:
        for aggregator in self.aggregators.values():
            aggregator.mark_invalid(video)
        self.errors.setdefault(video, error or "could not be decoded")


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



@dataclass
class _Scored:
    """What every rank scored, merged on rank 0."""

    aggregators: dict[tuple[int, int], M.VideoAggregator]
    errors: dict[int, str]
    loss_sum: float
    loss_count: int


def _score_loader(model, loader, scorer: ViewScorer, *, sweep_chunk: int | None, progress: bool, desc: str,
                  num_videos: int, num_classes: int, aggregation: str) -> Optional[_Scored]:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
            if sweep_chunk is None:
                scorer.add_views(batch, next(iter(scorer.aggregators)))
            else:
                scorer.add_video_views(batch, sweep_chunk)
    model.train(was_training)
    gathered = distrib.all_gather_objects({
        "partials": {k: _partial_sums(a) for k, a in scorer.aggregators.items()},
        "errors": scorer.errors, "loss": (scorer.loss_sum, scorer.loss_count),
    })
    if not distrib.is_main_process():
        return None
    merged = {k: _merge([g["partials"][k] for g in gathered], num_videos, num_classes, aggregation)
              for k in scorer.aggregators}
    errors: dict[int, str] = {}
    for part in gathered:
        errors.update(part["errors"])
    return _Scored(merged, errors, sum(g["loss"][0] for g in gathered), sum(g["loss"][1] for g in gathered))


def evaluate(model: nn.Module, loader, device: torch.device, *, precision: str = "fp32",
             aggregation: str = "softmax_sum", progress: bool = False) -> dict:
    """Validation: loss, top-1 and top-5 (%) over the loader's videos (one view each), the same on every rank.
    Undecodable videos count as wrong."""
    dataset = loader.dataset
    num_videos = len(dataset.paths)
    num_classes = int(dataset.num_classes)
    scorer = ViewScorer(model, device, precision, {(1, 1): M.VideoAggregator(num_videos, num_classes, aggregation)},
                        aggregation)
    scored = _score_loader(model, loader, scorer, sweep_chunk=None, progress=progress, desc="val",
                           num_videos=num_videos, num_classes=num_classes, aggregation=aggregation)
    metrics = None
    if scored is not None:
        aggregator = scored.aggregators[(1, 1)]
        summary = M.compute_test_metrics(aggregator.scores, np.asarray(dataset.labels), aggregator.valid)
        metrics = {"loss": float(scored.loss_sum / max(scored.loss_count, 1)), "top1": float(summary.top1),
                   "top5": float(summary.top5), "videos": num_videos, "invalid": int((~aggregator.valid).sum())}
    return distrib.broadcast_object(metrics)


def _test_loader(config: Config, dataset, batch_size: int, progress_rank: int):
    sampler = distrib.ShardedSampler(len(dataset), rank=progress_rank, world_size=distrib.world_size(),
                                     shuffle=False, drop_last=False)
    return make_loader(dataset, batch_size=batch_size, sampler=sampler, num_workers=config.train.num_workers,
                       seed=config.train.seed, drop_last=False, persistent=False)


def _report(config: Config, scored: Optional[_Scored], dataset, output_dir: Path, protocols: Sequence[tuple[int, int]],
            class_names: Sequence[str] | None, extra_report: dict | None) -> "TestReport":
    test = config.test
    report = TestReport(output_dir=Path(output_dir), split=test.split, num_videos=len(dataset.paths), protocols=[],
                        invalid_videos=[])
    if scored is None:  # not rank 0
        distrib.barrier()
        return report
    labels = np.asarray(dataset.labels, dtype=np.int64)
    paths = [str(p) for p in dataset.paths]
    num_classes = next(iter(scored.aggregators.values())).scores.shape[1]
    class_names = list(class_names or getattr(dataset, "class_names", []) or [str(i) for i in range(num_classes)])
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for count, spatial in protocols:
        merged = scored.aggregators[(count, spatial)]
        expected = count * spatial
        wrong_count = np.flatnonzero(merged.valid & (merged.view_counts != expected))
        if len(wrong_count):
            log.warning("%d video(s) got a number of views other than %d (e.g. video %d: %d)", len(wrong_count),
                        expected, wrong_count[0], merged.view_counts[wrong_count[0]])
        name = f"{count}x{spatial}"
        seed_name = M.seed_predictions_name(config.data.num_frames, test.crop, count, spatial, test.spatial_index)
        metrics, files = _write_protocol(out, name, merged, labels, paths, class_names, seed_name)
        report.protocols.append(ProtocolResult(name, count, spatial, metrics, files))
        log.info("test %s, %s views: top-1 %.2f%% top-5 %.2f%% mean class %.2f%% (%d/%d videos decodable)",
                 test.split, name, metrics.top1, metrics.top5, metrics.mean_class_top1, metrics.num_valid,
                 len(paths))
    invalid = ~next(iter(scored.aggregators.values())).valid
    report.invalid_videos = [
        {"index": int(i), "path": paths[i], "label": int(labels[i]), "error": scored.errors.get(int(i), "")}
        for i in np.flatnonzero(invalid)
    ]
    if report.invalid_videos:
        log.warning("%d test video(s) could not be decoded and count as errors; see report.json",
                    len(report.invalid_videos))
    report.report_path = _update_report_json(out / "report.json", test, report, extra_report)
    distrib.barrier()
    return report


def _update_report_json(path: Path, test: TestConfig, report: "TestReport", extra_report: dict | None) -> Path:
    """Write ``report.json``, keeping the protocols of earlier tests of the same split in this folder."""
    import json

    protocols: dict = {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
            if previous.get("split") == test.split:
                protocols = dict(previous.get("protocols") or {})
        except (OSError, ValueError):
            pass  # an unreadable old report is replaced
    protocols.update({p.name: {**p.metrics.summary(), "files": p.files} for p in report.protocols})
    body = {
        "split": test.split,
        "num_videos": report.num_videos,
        "aggregation": test.aggregation,
        "crop": list(test.crop),
        "short_side": test.short_side,
        "protocols": protocols,
        "invalid_videos": report.invalid_videos,
        **(extra_report or {}),
    }
    return M.write_json(path, body)


def _score_and_report(config: Config, model: nn.Module, output_dir, dataset, protocols: list[tuple[int, int]], *,
                      sweep: bool,
                      device, class_names, extra_report, progress: bool) -> TestReport:
    test = config.test
    device = device or next(model.parameters()).device
    num_videos = len(dataset.paths)
    num_classes = int(getattr(dataset, "num_classes", 0) or config.model.num_classes)
    aggregators = {key: M.VideoAggregator(num_videos, num_classes, test.aggregation) for key in protocols}
    scorer = ViewScorer(model, device, resolve_precision(config.train.precision, device), aggregators,
                        test.aggregation, single_crop=test.spatial_index)
    # A sweep item is a whole video; its views go through the model test.batch_size at a time.
    loader = _test_loader(config, dataset, 1 if sweep else test.batch_size, distrib.rank())
    scored = _score_loader(model, loader, scorer, sweep_chunk=test.batch_size if sweep else None,
                           progress=show_progress(progress) and distrib.is_main_process(),
                           desc=f"{'sweep' if sweep else 'test'} {test.split}", num_videos=num_videos,
                           num_classes=num_classes, aggregation=test.aggregation)
    return _report(config, scored, dataset, Path(output_dir), protocols, class_names, extra_report)


def run_test(
    config: Config,
    model: nn.Module,
    output_dir: str | Path,
    *,
    device: torch.device | None = None,
    class_names: Sequence[str] | None = None,
    dataset: Any = None,
    extra_report: dict | None = None,
    progress: bool | None = None,
) -> TestReport:
    """The multi-view test of ``model`` on ``config.test.split``: ``T x S`` views per video (crops along the long
    side), scores summed per video.

    Writes, under ``output_dir`` (rank 0): the seed-format pickle, ``predictions_<T>x<S>.npz``,
    ``per_class_<T>x<S>.csv``, ``confusion_<T>x<S>.png``, and ``report.json`` (metrics of every protocol tested in
    this folder, and the videos that failed to decode with their reasons). ``dataset`` replaces the one the config
    describes (per-view items like :func:`pmv.data.dataset.build_test_dataset`'s).
    """
    if dataset is None:
        from pmv.data.dataset import build_test_dataset

        dataset = build_test_dataset(config.data, config.test, split=config.test.split)
    protocol = (config.test.num_temporal_views, config.test.num_spatial_views)
    return _score_and_report(config, model, output_dir, dataset, [protocol], sweep=False,
                             device=device, class_names=class_names, extra_report=extra_report, progress=progress)


def run_view_sweep(
    config: Config,
    model: nn.Module,
    output_dir: str | Path,
    temporal_view_counts: Sequence[int],
    *,
    spatial_view_counts: Sequence[int] | None = None,
    device: torch.device | None = None,
    class_names: Sequence[str] | None = None,
    dataset: Any = None,
    extra_report: dict | None = None,
    progress: bool | None = None,
) -> TestReport:
    """The view sweep: every video decoded once and scored with each count of temporal views, times each count of
    spatial crops (``spatial_view_counts``, default ``[test.num_spatial_views]``; 1 crop is ``test.spatial_index``,
    3 sit along the long side, so ``[1, 3]`` comes from the same decode). One protocol per pair in the report;
    ``test.batch_size`` views per forward."""
    from pmv.data.sampling import check_view_counts
    from pmv.errors import ConfigError

    counts = check_view_counts(temporal_view_counts)
    crops = sorted({int(s) for s in (spatial_view_counts or [config.test.num_spatial_views])})
    if not set(crops) <= {1, 3}:
        raise ConfigError(f"spatial view counts must be 1 or 3 (crops along the long side), got {list(crops)}")
    config = replace(config, test=replace(config.test, num_spatial_views=max(crops)))
    if dataset is None:
        from pmv.data.dataset import build_video_views_dataset

        dataset = build_video_views_dataset(config.data, config.test, split=config.test.split,
                                            temporal_view_counts=counts)
    protocols = [(count, crop) for crop in crops for count in counts]
    return _score_and_report(config, model, output_dir, dataset, protocols, sweep=True, device=device,
                             class_names=class_names, extra_report=extra_report, progress=progress)


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


def load_checkpoint_for_test(
    checkpoint: str | Path,
    *,
    config_path: str | None = None,
    overrides: Sequence[str] = (),
    views: str | None = None,
    device: torch.device | str = "cpu",
    use_ema: bool = False,
) -> tuple[Config, nn.Module, dict | None]:
    """The config, the model (weights loaded, on ``device``) and the raw pmv checkpoint (None for foreign files).

    pmv checkpoints carry their config and class names; PySlowFast/UniFormer files need ``config_path``. The model
    is built for the test crop (``test.crop``), as the seed does; weights whose shape depends on the input size (MViT
    relative positions) are adapted by the zoo's loader.
    """
    from pmv.engine import checkpointing as ckpt
    from pmv.errors import CheckpointError

    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}; check the path (runs keep theirs in "
                              f"<train.output_dir>/{ckpt.CHECKPOINT_DIR}/)")
    try:
        state = ckpt.read_checkpoint(path)
    except CheckpointError:
        if not config_path:
            raise
        state = None  # a foreign (seed) checkpoint: the zoo's loader reads it
    config = apply_views_argument(config_for_checkpoint(state, config_path, overrides), views)
    config = replace(config, model=replace(config.model, pretrained=""))
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, test_input_size(config))
    load_trained_weights(model, state, path, use_ema=use_ema)
    return config, model.to(device), state


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    config_path: str | None = None,
    overrides: Sequence[str] = (),
    views: str | None = None,
    sweep: Sequence[int] | None = None,
    output_dir: str | Path | None = None,
    device: str = "auto",
    use_ema: bool = False,
    progress: bool | None = None,
) -> TestReport:
    """``pmv test``: the multi-view test (or, with ``sweep``, the temporal-view sweep) of a checkpoint."""
    from pmv.errors import ConfigError

    info = distrib.setup(device)
    config, model, state = load_checkpoint_for_test(checkpoint, config_path=config_path, overrides=overrides,
                                                    views=views, device=info.device, use_ema=use_ema)
    if sweep and views and config.test.num_temporal_views not in sweep:
        raise ConfigError(f"--views {views} asks for {config.test.num_temporal_views} temporal views but --sweep "
                          f"{','.join(map(str, sweep))} does not include {config.test.num_temporal_views}; add it to "
                          "--sweep (with --sweep, --views only sets the spatial crops, e.g. --views 1x3)")
    if output_dir is None:
        output_dir = run_dir_of(checkpoint) / f"test_{config.test.split}"
    class_names = state.get("class_names") if state else None
    extra = {"checkpoint": str(checkpoint), "model": config.model.name,
             "epoch": state.get("epoch") if state else None}
    if sweep:
        return run_view_sweep(config, model, output_dir, sweep, device=info.device, class_names=class_names,
                              extra_report=extra, progress=progress)
    return run_test(config, model, output_dir, device=info.device, class_names=class_names, extra_report=extra,
                    progress=progress)
