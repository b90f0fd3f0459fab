"""`pmv demo [--out DIR]`: synthesise a portrait dataset, train the tiny model on the CPU, test it, write a report."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from pmv.engine.demo import DemoOptions

    defaults = DemoOptions()
    parser.add_argument("--out", default=defaults.out_dir, help="output folder (default: %(default)s)")
    parser.add_argument("--config", help="demo recipe (default: configs/demo/tiny.yaml)")
    parser.add_argument("--epochs", type=int, help="override the recipe's number of epochs")
    parser.add_argument("--train-per-class", type=int, default=defaults.train_per_class,
                        help="training videos per class (default: %(default)s)")
    parser.add_argument("--test-per-class", type=int, default=defaults.test_per_class,
                        help="test videos per class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="default: %(default)s")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (also off when stderr is not a terminal)")


def run(args: argparse.Namespace) -> int:
    from pmv.cli.common import show_progress
    from pmv.engine.demo import DemoOptions, run_demo

    result = run_demo(DemoOptions(out_dir=args.out, recipe=args.config, epochs=args.epochs,
                                  train_per_class=args.train_per_class, test_per_class=args.test_per_class,
                                  seed=args.seed, progress=show_progress(args)))
    print(f"test top-1 {result.top1:.2f}% (top-5 {result.top5:.2f}%) on {result.num_test_videos} held-out videos, "
          f"{result.seconds:.0f} s")
    print(f"report: {result.report_md}")
    return 0
