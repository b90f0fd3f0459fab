"""`pmv data synth OUT`: write a synthetic portrait-mode dataset (real mp4 files and PMV-400-style lists)."""

from __future__ import annotations

import argparse
import os
import shlex

from pmv.errors import DataError


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like HxW, e.g. 160x90") from None
    return height, width


def configure(parser: argparse.ArgumentParser) -> None:
    from pmv.acquire.synth import KINDS, SynthOptions

    defaults = SynthOptions()
    parser.add_argument("out", help="output folder (lists, class_name_mapping.csv, videos/)")
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="comma-separated class kinds: motion (direction of motion), position (top vs bottom of the frame), "
        "sound (tone pitch only); default: %(default)s",
    )
    parser.add_argument("--classes-per-kind", type=int, default=defaults.classes_per_kind, help="default: %(default)s")
    parser.add_argument(
        "--classes", type=int, default=None, help="total number of classes, taken from the kinds in turn"
    )
    parser.add_argument("--train", type=int, default=defaults.train_per_class, help="train videos per class")
    parser.add_argument("--val", type=int, default=defaults.val_per_class, help="val videos per class")
    parser.add_argument("--test", type=int, default=defaults.test_per_class, help="test videos per class")
    parser.add_argument("--size", type=_size, default=defaults.size, help="frame size HxW (portrait), default 160x90")
    parser.add_argument(
        "--orientation", choices=("portrait", "landscape", "mixed"), default=defaults.orientation,
        help="portrait (HxW of --size), landscape (turned: WxH) or mixed (alternating; for `pmv study format`)",
    )
    parser.add_argument("--background", choices=("textured", "plain"), default=defaults.background,
                        help="textured (default) or plain (one random colour per video: easier for small models)")
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds, default: %(default)s")
    parser.add_argument("--fps", type=int, default=defaults.fps, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="default: %(default)s")
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="processes (default: %(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    from pmv.acquire.synth import SynthOptions, synthesize

    kinds = tuple(kind.strip() for kind in args.kinds.split(",") if kind.strip())
    if args.workers < 1:
        raise DataError(f"--workers must be at least 1, got {args.workers}")
    options = SynthOptions(
        kinds=kinds,
        classes_per_kind=args.classes_per_kind,
        num_classes=args.classes,
        train_per_class=args.train,
        val_per_class=args.val,
        test_per_class=args.test,
        size=args.size,
        orientation=args.orientation,
        background=args.background,
        duration=args.duration,
        fps=args.fps,
        seed=args.seed,
        workers=args.workers,
    )
    summary = synthesize(args.out, options)
    counts = ", ".join(f"{split} {count}" for split, count in summary.videos.items())
    print(
        f"wrote {sum(summary.videos.values())} videos ({counts}) of {summary.num_classes} classes, "
        f"{summary.size[0]}x{summary.size[1]} {summary.orientation}, {summary.num_frames} frames at {summary.fps} fps, "
        f"{summary.bytes_written / 1e6:.1f} MB in {summary.seconds:.1f} s"
    )
    for cls in summary.classes:
        print(f"  {cls.label:3d}  {cls.kind:8s}  {cls.name}")
    overrides = " ".join(shlex.quote(o) for o in summary.config_overrides())
    print(f"use it with: {overrides}")
    print(f"e.g.: pmv train --config configs/pmv400/x3d_m/rect_256x192.yaml --smoke {overrides}")
    return 0
