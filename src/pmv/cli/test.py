"""`pmv test --checkpoint CKPT [--config RECIPE] [--views TxS] [section.key=value ...]`: the multi-view test."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a pmv checkpoint (its config and class names are used) or a PySlowFast/UniFormer file")
    parser.add_argument("--config", help="recipe YAML (needed for foreign checkpoints; otherwise overrides the "
                        "checkpoint's stored config)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="e.g. test.split=val data.root=/data/PMV")
    parser.add_argument("--views", metavar="TxS", help="temporal x spatial views, e.g. 5x1 or 10x3 (3 spatial crops "
                        "sit along the long side: top/centre/bottom on portrait videos)")
    parser.add_argument("--sweep", metavar="K,K,...", help="temporal-view sweep in one decoding pass, e.g. 1,3,5,7,10 "
                        "(with --views, only its spatial crops are used and its T must be one of K)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: <run>/test_<split>)")
    parser.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (also off when stderr is not a terminal)")


def run(args: argparse.Namespace) -> int:
    from pmv.engine import distributed
    from pmv.engine.evaluator import evaluate_checkpoint
    from pmv.errors import ConfigError

    from pmv.cli.common import print_report, show_progress

    counts = None
    if args.sweep:
        try:
            counts = [int(v) for v in args.sweep.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--sweep {args.sweep!r} must be a comma-separated list of view counts") from None
    try:
        report = evaluate_checkpoint(args.checkpoint, config_path=args.config, overrides=list(args.overrides),
                                     views=args.views, sweep=counts, output_dir=args.out, device=args.device,
                                     use_ema=args.ema, progress=show_progress(args))
        if report.report_path is not None:
            print_report(report)
    finally:
        distributed.cleanup()
    return 0
