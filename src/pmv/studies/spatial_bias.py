"""Study 2, spatial bias: the seed's dense spatial-crop probe (``TEST.DENSE_SPATIAL_CROP``).

Each checkpoint is tested once per crop position: one ``test.crop`` crop, after the test resize
(``test.short_side``), centred at relative position ``(rh, rw)`` with ``rh in linspace(0, 1, 16)`` along the height
and ``rw in linspace(0, 1, 9)`` along the width (0 = top/left edge, 1 = bottom/right edge), every temporal view of
``test.num_temporal_views``. Top-1 per position is a 16 x 9 grid (row 0 = the top of the frame), drawn over the mean
test frame, for one or two checkpoints side by side (Probing-P on portrait test videos, Probing-L on landscape).

The positions are scored by the engine's test (``run_test``) through :class:`~pmv.studies.datasets.ProbeDataset`,
several positions per pass (as many as keep the per-video score table under ~0.5 GB), each video decoded once per
pass, where the seed rebuilds the test loader and decodes the whole test set 144 times.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np

from pmv.config import Config
from pmv.studies.common import (
    StudyOutcome, StudyRequest, TrainedModel, is_main, load_for_test, markdown_table, model_run, write_study,
)
from pmv.studies.datasets import PROBE_STEPS, ProbeDataset, mean_frame, probe_positions

log = logging.getLogger(__name__)

MAX_CLASS_PANELS = 12  # per-class heatmaps are drawn for datasets with at most this many classes
SCORE_TABLE_BYTES = 512 * 2**20  # per pass: videos x positions x classes float64 scores of the engine's aggregation


def positions_per_pass(num_videos: int, num_classes: int, total: int) -> int:
    return max(1, min(total, SCORE_TABLE_BYTES // max(1, num_videos * num_classes * 8)))


def probe_checkpoint(model, config: Config, class_names: list[str], out: Path, device,
                     steps=PROBE_STEPS) -> tuple[Optional[np.ndarray], dict[str, np.ndarray]]:
    """Top-1 (%) per position, ``steps[0] x steps[1]``, overall and per class (rank 0; None and {} elsewhere)."""
    from pmv.data.annotations import load_split
    from pmv.engine import metrics as M
    from pmv.engine.evaluator import run_test

    annotations = load_split(config.data, config.test.split, check_files=False)
    names = class_names or annotations.class_names
    positions = probe_positions(steps)
    test = replace(config.test, num_spatial_views=1)
    config = replace(config, test=test)
    per_pass = positions_per_pass(len(annotations.paths), len(names), len(positions))
    top1 = np.zeros(len(positions))
    per_class = np.zeros((len(names), len(positions)))
    passes = math.ceil(len(positions) / per_pass)
    for index in range(passes):
        chunk = positions[index * per_pass:(index + 1) * per_pass]
        dataset = ProbeDataset(annotations.paths, annotations.labels, names, config.data, test, chunk)
        log.info("probe pass %d/%d: %d positions x %d videos", index + 1, passes, len(chunk), len(annotations.paths))
        report = run_test(config, model, out / f"pass_{index:03d}", device=device, class_names=names, dataset=dataset)
        if not report.protocols:
            continue
        saved = np.load(report.main.files["predictions"])
        videos = len(annotations.paths)
        for p in range(len(chunk)):
            rows = slice(p * videos, (p + 1) * videos)
            metrics = M.compute_test_metrics(saved["scores"][rows], saved["labels"][rows], saved["valid"][rows])
            top1[index * per_pass + p] = metrics.top1
            for row in metrics.per_class:
                per_class[row["class_index"], index * per_pass + p] = row["top1"]
    if not is_main():
        return None, {}
    present = set(annotations.labels)
    return top1.reshape(steps), {names[c]: per_class[c].reshape(steps) for c in sorted(present)}


def run(request: StudyRequest) -> StudyOutcome:
    from pmv.studies.common import setup_device
    from pmv.studies.plots import plot_probe_heatmaps

    started = time.perf_counter()
    out = request.out_dir
    device = setup_device(request.device)
    labels = request.options.get("labels") or ["Probing-P", "Probing-L"]
    targets: list[tuple[str, Path, Optional[Config]]] = []
    trained: dict[str, TrainedModel] = {}
    if request.checkpoints:
        if len(request.checkpoints) > 2:
            from pmv.errors import ConfigError

            raise ConfigError("the spatial-bias study compares one or two checkpoints")
        for i, checkpoint in enumerate(request.checkpoints):
            # Checkpoint i is probed on the data and test settings of config i (the last one if fewer).
            targets.append((labels[i], checkpoint, request.configs[min(i, len(request.configs) - 1)][1]))
    else:
        run_ = model_run(request.config, request.runs_dir, device=request.device)
        trained["probe"] = run_
        targets.append((labels[0], run_.checkpoint, run_.config))
    panels, grids, by_class = [], {}, {}
    for label, checkpoint, config in targets:
        model, config, class_names = load_for_test(checkpoint, device, config)
        grid, class_grids = probe_checkpoint(model, config, class_names, out / label, device)
        if grid is None:
            continue
        from pmv.data.annotations import load_split

        paths = load_split(config.data, config.test.split, check_files=False).paths
        panels.append({"title": f"{label}: {Path(checkpoint).parent.parent.name}\n(mean {grid.mean():.1f}%)",
                       "top1": grid, "background": mean_frame(paths, config.test)})
        grids[label] = (grid, checkpoint, config)
        by_class[label] = class_grids
    first = next(iter(grids.values()), None)
    results = {
        "top1": first[0].round(2).tolist() if first else None,
        "checkpoint": str(first[1]) if first else str(targets[0][1]),
        "steps": list(PROBE_STEPS),
        "positions": "rh = linspace(0,1,16) along H (row 0 = top), rw = linspace(0,1,9) along W",
        "probes": {label: {"top1": g.round(2).tolist(), "checkpoint": str(c), "crop": list(cfg.test.crop),
                           "short_side": cfg.test.short_side, "test_list": cfg.data.list_dir,
                           "top1_per_class": {name: v.round(2).tolist() for name, v in by_class[label].items()}}
                   for label, (g, c, cfg) in grids.items()},
    }
    figures = []
    if is_main() and panels:
        figures.append(plot_probe_heatmaps(panels, out / "probe_heatmap.png",
                                           title="top-1 (%) per crop position (16 x 9 grid)"))
        first_label = next(iter(grids))
        class_grids = by_class[first_label]
        if 1 < len(class_grids) <= MAX_CLASS_PANELS:  # where in the frame each class is recognised
            background = panels[0]["background"]
            figures.append(plot_probe_heatmaps(
                [{"title": name, "top1": grid, "background": background} for name, grid in class_grids.items()],
                out / "probe_per_class.png", title=f"{first_label}: top-1 (%) per crop position, per class"))
        lines = ["# Study: spatial bias (16 x 9 crop probe)", "",
                 "Each checkpoint tested with one crop per position on a 16 x 9 grid of relative centres (the seed's "
                 "`TEST.DENSE_SPATIAL_CROP`); top-1 (%) per position, row 0 = top of the frame.", "",
                 "![probe](probe_heatmap.png)", ""]
        if (out / "probe_per_class.png").is_file():
            lines += ["Per class (first checkpoint):", "", "![per class](probe_per_class.png)", ""]
        for label, (grid, checkpoint, config) in grids.items():
            row_means = grid.mean(axis=1)
            lines += [f"## {label}", "",
                      f"Checkpoint `{checkpoint}`; test list `{config.data.list_dir}`; crop "
                      f"{config.test.crop[0]}x{config.test.crop[1]} after short side {config.test.short_side}; "
                      f"mean {grid.mean():.1f}%, best {grid.max():.1f}%, worst {grid.min():.1f}%.", "",
                      markdown_table([["rh", *(f"rw={w:.3g}" for w in np.linspace(0, 1, grid.shape[1])), "row mean"]]
                                     + [[f"{h:.3f}", *(f"{v:.0f}" for v in grid[r]), f"{row_means[r]:.1f}"]
                                        for r, h in enumerate(np.linspace(0, 1, grid.shape[0]))]), ""]
        write_study(out, results, "\n".join(lines))
    return StudyOutcome("spatial-bias", results, out, figures, trained, time.perf_counter() - started)
