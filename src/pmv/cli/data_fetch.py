"""`pmv data fetch-annotations`: download and verify the PMV-400 lists and class names."""

from __future__ import annotations

import argparse

from pmv.errors import DataError


def _split_count(text: str) -> tuple[str, int]:
    split, sep, count = text.partition("=")
    if not sep or split not in ("train", "val", "test") or not count.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} must look like train=56452 (splits: train, val, test)")
    return split, int(count)


def configure(parser: argparse.ArgumentParser) -> None:
    from pmv.acquire.fetch import DEFAULT_BASE_URL

    parser.add_argument("--out", default="data/pmv400", help="folder to write the four CSV files into")
    parser.add_argument(
        "--base-url",
        default=DEFAULT_BASE_URL,
        help="root of the authors' repository: an http(s) or file:// URL, or a local folder (default: %(default)s)",
    )
    for name, help_name in (("train", "train list"), ("val", "val list"), ("test", "test list")):
        parser.add_argument(f"--{name}-path", help=f"path of the {help_name} relative to --base-url (or absolute)")
    parser.add_argument("--classes-path", help="path of class_name_mapping.csv relative to --base-url (or absolute)")
    parser.add_argument(
        "--expect-rows",
        type=_split_count,
        action="append",
        default=[],
        metavar="SPLIT=N",
        help="expected row count of a split (default: train=56452 val=19995 test=19995); repeat per split",
    )
    parser.add_argument("--expect-classes", type=int, default=400, help="expected number of classes")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server")


def run(args: argparse.Namespace) -> int:
    from pmv.acquire.fetch import Expectations, fetch_annotations

    if args.expect_classes < 1:
        raise DataError("--expect-classes must be at least 1")
    paths = {}
    for key, out_name in (
        ("train_path", "train_pmv400.csv"),
        ("val_path", "val_pmv400.csv"),
        ("test_path", "test_pmv400.csv"),
        ("classes_path", "class_name_mapping.csv"),
    ):
        if getattr(args, key):
            paths[out_name] = getattr(args, key)
    expect = Expectations(num_classes=args.expect_classes)
    expect.rows.update(dict(args.expect_rows))
    summary = fetch_annotations(args.out, args.base_url, paths, expect, timeout=args.timeout)
    rows = ", ".join(f"{split} {count:,}" for split, count in summary.rows.items())
    print(f"verified {summary.num_classes} classes and {rows} rows; wrote {len(summary.files)} files to {summary.out_dir}")
    return 0
