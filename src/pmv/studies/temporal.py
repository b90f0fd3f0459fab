"""Study 5, temporal information.

One checkpoint is tested with the frames of every test clip in order, reversed, shuffled (a fixed random
permutation per clip, never the identity or the reversal) and as one frame (the middle one) repeated: dataset
wrappers (:class:`~pmv.studies.datasets.FrameOrderDataset`) around the standard test dataset, scored by the
engine. Next to it, the frame-level model trained alike (``uniformer_s`` -> ``uniformer_s_frame``, ``tiny`` ->
``tiny_frame``: per-frame features averaged over time) is tested normally. The seed has the frame-level UniFormer
but no frame-order test.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from pmv.studies.common import (
    StudyOutcome, StudyRequest, is_main, load_for_test, markdown_table, model_for_test, model_run, pct, synth_kinds,
    top1_by_kind,
    top1_of, twin_model, write_study,
)
from pmv.studies.datasets import ORDERS, FrameOrderDataset

log = logging.getLogger(__name__)

FRAME_MODELS = {"tiny": "tiny_frame", "uniformer_s": "uniformer_s_frame"}


def frame_model_name(model: str, chosen: str | None = None) -> str:
    return twin_model(model, chosen, FRAME_MODELS, "frame-level", "--frame-model")


def run(request: StudyRequest) -> StudyOutcome:
    from pmv.data.dataset import build_test_dataset
    from pmv.engine.evaluator import run_test
    from pmv.studies.common import setup_device
    from pmv.studies.plots import plot_bars

    started = time.perf_counter()
    out = request.out_dir
    device = setup_device(request.device)
    trained: dict = {}
    model, config, class_names, checkpoint = model_for_test(request, device, "temporal-clip", trained)
    kinds = synth_kinds(config)
    top1, by_kind = {}, {}
    base = build_test_dataset(config.data, config.test, split=config.test.split)
    for order in ORDERS:
        report = run_test(config, model, out / f"test_{order}", device=device, class_names=class_names,
                          dataset=FrameOrderDataset(base, order, seed=config.train.seed))
        top1[order], by_kind[order] = top1_of(report), top1_by_kind(report, kinds)
    frame_name = frame_model_name(request.config.model.name, request.options.get("frame_model"))
    frame_config = replace(request.config, model=replace(request.config.model, name=frame_name))
    frame_run = model_run(frame_config, request.runs_dir, device=request.device)
    trained["temporal-frame"] = frame_run
    frame_model, frame_config, frame_classes = load_for_test(frame_run.checkpoint, device, frame_run.config)
    report = run_test(frame_config, frame_model, out / "test_frame_model", device=device, class_names=frame_classes)
    top1["frame_model"], by_kind["frame_model"] = top1_of(report), top1_by_kind(report, kinds)
    results = {"top1": top1, "checkpoint": str(checkpoint), "frame_model": frame_name,
               "frame_checkpoint": str(frame_run.checkpoint), "num_frames": config.data.num_frames}
    if kinds:
        results["top1_by_kind"] = by_kind
    figures = []
    if is_main():
        labels = {"ordered": "in order", "reversed": "reversed", "shuffled": "shuffled",
                  "single_frame": "one frame", "frame_model": f"frame model\n({frame_name})"}
        groups = {labels[k]: {"all classes": v, **{f"{kind} classes": x for kind, x in by_kind.get(k, {}).items()}}
                  for k, v in top1.items()}
        figures.append(plot_bars(groups, out / "temporal_top1.png", chance=100.0 / max(1, len(class_names)),
                                 title=f"{config.model.name}: frame order at test time, and a frame-level model"))
        kind_names = sorted({kind for row in by_kind.values() for kind in row})
        table = [["test", "top-1 (%)", *(f"{k} classes" for k in kind_names)]] + [
            [labels[k].replace("\n", " "), pct(v), *(pct(by_kind[k].get(kind)) for kind in kind_names)]
            for k, v in top1.items()
        ]
        report_md = f"""# Study: temporal information

`{config.model.name}` (checkpoint `{checkpoint}`) tested with the {config.data.num_frames} frames of each clip in
order, reversed, shuffled, and one frame repeated; and `{frame_name}` trained with the same recipe.

{markdown_table(table)}

![temporal](temporal_top1.png)
"""
        write_study(out, results, report_md)
    return StudyOutcome("temporal", results, out, figures, trained, time.perf_counter() - started)
