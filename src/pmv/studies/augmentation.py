"""Study 3, augmentation: a family of recipes (crop strategies) trained with the same budget and seed.

Each recipe (e.g. ``configs/pmv400/x3d_m/{shorter,default,rect_256x192,rect_288x192}.yaml``) is trained and tested
with its own test settings; the recipes must agree on epochs and seed (override ``train.epochs=...`` for all on
the command line). One table of top-1 and cost (GFLOPs of one training clip and of one test video, training time),
and the training curves of all recipes in one plot.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from pmv.errors import ConfigError
from pmv.studies.common import (
    StudyOutcome, StudyRequest, is_main, load_for_test, markdown_table, model_run, pct, top1_of, write_study,
)

log = logging.getLogger(__name__)


def view_gflops(config, input_size) -> Optional[float]:
    """GMACs of one view of the config's model at ``input_size`` (T, H, W); None if it cannot be counted."""
    from pmv.engine.build import model_options
    from pmv.models.flops import model_flops

    try:
        return model_flops(config.model.name, tuple(input_size), config.model.num_classes,
                           **model_options(config.model)).gflops
    except (RuntimeError, NotImplementedError, ValueError) as err:  # FLOP counting is a report, not a reason to fail
        log.warning("cannot count FLOPs of %s at %s: %s", config.model.name, input_size, err)
        return None


def check_budgets(configs) -> None:
    budgets = {name: (c.train.epochs, c.train.seed) for name, c in configs}
    if len(set(budgets.values())) > 1:
        listing = ", ".join(f"{name}: {e} epochs, seed {s}" for name, (e, s) in budgets.items())
        raise ConfigError(f"the augmentation study compares recipes at the same budget and seed, got {listing}; "
                          "override train.epochs=N train.seed=S for all")


def run(request: StudyRequest) -> StudyOutcome:
    from pmv.engine.build import test_input_size, train_input_size
    from pmv.engine.evaluator import run_test
    from pmv.engine.tracking import read_metrics
    from pmv.studies.common import setup_device
    from pmv.studies.plots import plot_training_curves

    started = time.perf_counter()
    out = request.out_dir
    device = setup_device(request.device)
    names = [name for name, _ in request.configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"recipe names must differ (they name the rows): {names}")
    check_budgets(request.configs)
    top1, cost, curves, trained = {}, {}, {}, {}
    for name, config in request.configs:
        run_ = model_run(config, request.runs_dir, device=request.device)
        trained[f"augmentation-{name}"] = run_
        model, config, class_names = load_for_test(run_.checkpoint, device, run_.config)
        report = run_test(config, model, out / "test" / name, device=device, class_names=class_names)
        top1[name] = top1_of(report)
        records = read_metrics(run_.run_dir) if (run_.run_dir / "metrics.jsonl").is_file() else []
        curves[name] = records
        views = config.test.num_temporal_views * config.test.num_spatial_views
        test_view = view_gflops(config, test_input_size(config))
        cost[name] = {
            "train_crop": list(config.transform.train_crop),
            "train_gflops_per_clip": view_gflops(config, train_input_size(config)),
            "test_views": f"{config.test.num_temporal_views}x{config.test.num_spatial_views}",
            "test_gflops_per_video": None if test_view is None else test_view * views,
            "train_seconds": sum(r.get("seconds", 0.0) for r in records if r.get("kind") == "epoch"),
            "epochs": config.train.epochs,
        }
    results = {"top1": top1, "cost": cost,
               "checkpoints": {name: str(t.checkpoint) for name, t in trained.items()}}
    figures = []
    if is_main():
        figures.append(plot_training_curves(curves, out / "training_curves.png",
                                            title="augmentation recipes: same budget and seed"))

        def fmt(value, spec=".3g"):
            return "-" if value is None else format(value, spec)

        rows = [["recipe", "train crop (HxW)", "top-1 (%)", "GFLOPs/train clip", "test views", "GFLOPs/test video",
                 "train time (s)"]]
        for name in top1:
            c = cost[name]
            rows.append([name, "x".join(map(str, c["train_crop"])), pct(top1[name]), fmt(c["train_gflops_per_clip"]),
                         c["test_views"], fmt(c["test_gflops_per_video"]), f"{c['train_seconds']:.0f}"])
        report_md = f"""# Study: augmentation (crop strategies at the same budget)

Each recipe trained for {request.configs[0][1].train.epochs} epochs with seed {request.configs[0][1].train.seed} and
tested with its own test settings. GFLOPs are multiply-accumulates (fvcore's convention).

{markdown_table(rows)}

![training curves](training_curves.png)
"""
        write_study(out, results, report_md)
    return StudyOutcome("augmentation", results, out, figures, trained, time.perf_counter() - started)
