"""`pmv data preview CONFIG`: draw sampled clips after augmentation to a PNG."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a recipe YAML (its data:, transform: and test: sections are used)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. data.root=/videos")
    parser.add_argument("--split", default="train", help="which list to sample (default: %(default)s)")
    parser.add_argument(
        "--pipeline",
        choices=("train", "test"),
        default=None,
        help="augmentation to show: train (random crops, RandAugment, ...) or test (crops along the long side); "
        "default: train for the train split, test otherwise",
    )
    parser.add_argument("--num", type=int, default=8, help="clips to draw (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=4, help="frames shown per clip (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="which clips and augmentations (default: %(default)s)")
    parser.add_argument("--out", default="preview.png", help="PNG to write (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from pmv.config import load_config
    from pmv.data.dataset import build_test_dataset, build_train_dataset
    from pmv.data.preview import render_preview, save_preview
    from pmv.errors import ConfigError

    if args.num < 1 or args.frames < 1:
        raise ConfigError("--num and --frames must be at least 1")
    config = load_config(args.config, args.overrides)
    pipeline = args.pipeline or ("train" if args.split == "train" else "test")
    if pipeline == "train":
        dataset = build_train_dataset(config.data, config.transform, args.split)
    else:
        dataset = build_test_dataset(config.data, config.test, args.split)
    image = render_preview(dataset, args.num, args.frames, args.seed)
    path = save_preview(image, args.out)
    print(f"wrote {path} ({image.width}x{image.height}): {min(args.num, len(dataset))} {pipeline} clips of {args.split}")
    if dataset.failures:
        print(f"{dataset.failures} videos could not be decoded: " + ", ".join(sorted(dataset.failed)))
    return 0
