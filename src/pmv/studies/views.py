"""Study 4, evaluation views: temporal views {1, 3, 5, 7, 10} x spatial crops {1, 3}.

The seed's ``NUM_ENSEMBLE_VIEWS -1`` re-runs the whole test for each number of temporal views. Here the engine's
view sweep (``run_view_sweep``) decodes every video once and scores all five view sets, with 1 and 3 crops, from
that decode; 3 spatial crops sit along the long side (top / centre / bottom of a portrait frame), 1 crop is
``test.spatial_index`` (the centre), so both crop settings come from the same single decode. Cost: GFLOPs of one
view x views per video.
"""

from __future__ import annotations

import logging
import time

from pmv.studies.common import (
    StudyOutcome, StudyRequest, is_main, markdown_table, model_for_test, write_study,
)

log = logging.getLogger(__name__)

TEMPORAL_VIEWS = (1, 3, 5, 7, 10)
SPATIAL_VIEWS = (1, 3)


def run(request: StudyRequest) -> StudyOutcome:
    from pmv.engine.build import test_input_size
    from pmv.engine.evaluator import run_view_sweep
    from pmv.studies.augmentation import view_gflops
    from pmv.studies.common import setup_device
    from pmv.studies.plots import plot_views

    started = time.perf_counter()
    out = request.out_dir
    device = setup_device(request.device)
    temporal = [int(v) for v in request.options.get("temporal_views") or TEMPORAL_VIEWS]
    spatial = [int(v) for v in request.options.get("spatial_views") or SPATIAL_VIEWS]
    trained: dict = {}
    model, config, class_names, checkpoint = model_for_test(request, device, "views", trained)
    per_view = view_gflops(config, test_input_size(config))
    report = run_view_sweep(config, model, out / "test", temporal, spatial_view_counts=spatial, device=device,
                            class_names=class_names)
    rows = [{"temporal": p.temporal_views, "spatial": p.spatial_views, "top1": p.metrics.top1,
             "gflops": None if per_view is None else per_view * p.temporal_views * p.spatial_views}
            for p in report.protocols]
    results = {"rows": rows, "checkpoint": str(checkpoint), "gflops_per_view": per_view,
               "crop": list(config.test.crop), "short_side": config.test.short_side}
    figures = []
    if is_main():
        if per_view is not None:
            figures.append(plot_views(rows, out / "views_top1_vs_gflops.png",
                                      title=f"{config.model.name}: top-1 vs cost per video"))
        table = [["temporal views", "spatial crops", "top-1 (%)", "GFLOPs/video"]] + [
            [r["temporal"], r["spatial"], f"{r['top1']:.1f}", "-" if r["gflops"] is None else f"{r['gflops']:.3g}"]
            for r in rows
        ]
        report_md = f"""# Study: evaluation views (temporal x spatial)

Checkpoint `{checkpoint}`, crop {config.test.crop[0]}x{config.test.crop[1]} after short side
{config.test.short_side}; one decode per video covers every temporal view count and both crop settings.

{markdown_table(table)}

![views](views_top1_vs_gflops.png)
"""
        write_study(out, results, report_md)
    return StudyOutcome("views", results, out, figures, trained, time.perf_counter() - started)
