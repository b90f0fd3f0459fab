"""`pmv test --checkpoint CKPT [--config RECIPE] [--views TxS] [section.key=value ...]`: the multi-view test."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a pmv checkpoint (its config and class names are used) or a PySlowFast/UniFormer file")
    parser.add_argument("--config", help="recipe YAML (needed for foreign checkpoints; otherwise overrides the "
                        "checkpoint's stored config)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="e.g. test.split=val test.view_sweep=[1,3,5,7,10] data.root=/data/PMV")
    parser.add_argument("--views", metavar="TxS", help="temporal x spatial views, e.g. 5x1 or 10x3 (3 spatial crops "
                        "sit along the long side: top/centre/bottom on portrait videos)")
    parser.add_argument("--sweep", metavar="K,K,...", help="temporal-view sweep in one decoding pass, e.g. 1,3,5,7,10")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: <run>/test_<split>)")
    parser.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def print_report(report) -> None:
    print(f"{'views':>7} {'top-1':>7} {'top-5':>7} {'mean-cls':>8} {'top-1 valid':>11} {'videos':>7}")
    for p in report.protocols:
        m = p.metrics
        print(f"{p.name:>7} {m.top1:7.2f} {m.top5:7.2f} {m.mean_class_top1:8.2f} {m.top1_valid:11.2f} "
              f"{m.num_valid:>3}/{m.num_videos}")
    if report.invalid_videos:
        print(f"{len(report.invalid_videos)} video(s) could not be decoded and count as errors:")
        for item in report.invalid_videos[:10]:
            print(f"  {item['path']}: {item['error']}")
        if len(report.invalid_videos) > 10:
            print(f"  ... and {len(report.invalid_videos) - 10} more (report.json)")
    print(f"report: {report.report_path}")


def run(args: argparse.Namespace) -> int:
    from pmv.engine import distributed
    from pmv.engine.evaluator import evaluate_checkpoint
    from pmv.errors import ConfigError

    overrides = list(args.overrides)
    if args.sweep:
        try:
            counts = [int(v) for v in args.sweep.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--sweep {args.sweep!r} must be a comma-separated list of view counts") from None
        overrides.append(f"test.view_sweep={counts}")
    try:
        report = evaluate_checkpoint(args.checkpoint, config_path=args.config, overrides=overrides, views=args.views,
                                 output_dir=args.out, device=args.device, use_ema=args.ema)
        if report.report_path is not None:
            print_report(report)
    finally:
        distributed.cleanup()
    return 0
