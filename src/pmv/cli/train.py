"""`pmv train --config RECIPE.yaml [section.key=value ...]`: train a model (one process, or many under torchrun)."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="recipe YAML, e.g. configs/pmv400/x3d_m/default.yaml")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides, e.g. train.epochs=5 data.root=/data/PMV")
    parser.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint (default: the newest valid "
                        "checkpoint in train.output_dir, when train.auto_resume)")
    parser.add_argument("--output-dir", metavar="DIR", help="same as train.output_dir=DIR")
    parser.add_argument("--device", default="auto", help="auto (this rank's GPU when CUDA is available), cpu or cuda")
    parser.add_argument("--smoke", action="store_true",
                        help="stack configs/smoke.yaml on the recipe (before the overrides): one short epoch on a CPU "
                        "with few frames and half-size crops, to check a setup; see `pmv config show RECIPE --smoke`")
    parser.add_argument("--test", action="store_true",
                        help="after training, run the recipe's multi-view test with the best (or last) checkpoint")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they are also off when stderr is not a terminal)")
    parser.epilog = ("SIGTERM or SIGUSR1 (sent by cluster schedulers before preemption) and Ctrl-C stop training "
                     "after the current step, write a checkpoint and exit (75 for a signal, 130 for Ctrl-C); "
                     "running the same command again resumes from it.")


def run(args: argparse.Namespace) -> int:
    from pmv.cli.common import print_report, show_progress
    from pmv.cli.config_show import SMOKE_OVERLAY
    from pmv.config import load_config, shipped_config
    from pmv.engine import distributed
    from pmv.engine.evaluator import evaluate_checkpoint
    from pmv.engine.preemption import TrainingStopped
    from pmv.engine.trainer import train

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    overlays = [shipped_config(SMOKE_OVERLAY)] if args.smoke else []
    config = load_config(args.config, overrides, overlays=overlays)
    progress = show_progress(args)
    try:
        try:
            result = train(config, resume=args.resume, device=args.device, progress=progress)
        except TrainingStopped as stop:
            if distributed.setup(args.device).is_main:
                print(f"pmv: {stop}", file=sys.stderr)
            return stop.exit_code
        rank0 = distributed.setup(args.device).is_main
        if rank0:
            best = f", best val top-1 {result.best_metric:.2f}%" if result.best_metric is not None else ""
            print(f"trained {result.epochs} epochs ({result.global_step} steps){best}")
            print(f"run folder: {result.output_dir}")
            if result.last_checkpoint:
                print(f"last checkpoint: {result.last_checkpoint}")
        if args.test:
            checkpoint = result.best_checkpoint or result.last_checkpoint
            checkpoint = distributed.broadcast_object(str(checkpoint) if checkpoint else None)
            if checkpoint:
                report = evaluate_checkpoint(checkpoint, device=args.device, progress=progress)
                if rank0:
                    print_report(report)
    finally:
        distributed.cleanup()
    return 0
