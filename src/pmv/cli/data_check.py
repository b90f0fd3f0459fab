"""`pmv data check`: probe every listed video and report what is missing, broken, too short or odd."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pmv.errors import DataError

DEFAULT_SPLITS = "train,val,test"


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("what to check (a config, a list, or a folder)")
    source.add_argument("--config", help="recipe YAML; its data.list_dir/subset/root name the lists and videos")
    source.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    source.add_argument("--split", default=DEFAULT_SPLITS, help="splits to check with --config (default %(default)s)")
    source.add_argument("--list", dest="list_file", help="one list file (<file>,<label> lines)")
    source.add_argument("--root", help="folder the listed names are relative to (default: the list's folder); "
                        "alone, every video file under it is checked")
    source.add_argument("--separator", help="list separator (default: the config's, else ',')")
    clip = parser.add_argument_group("clip length (default: the config's data section)")
    clip.add_argument("--num-frames", type=int, help="frames per clip")
    clip.add_argument("--sampling-rate", type=int, help="stride between sampled frames")
    clip.add_argument("--target-fps", type=float, help="rate the clip is sampled at (default: each video's own)")
    parser.add_argument("--deep", action="store_true", help="decode every frame (slow; finds damage probing misses)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default %(default)s)")
    parser.add_argument("--out", default="data_check", help="folder for report.json, PNGs and cleaned lists")
    parser.add_argument("--drop-short", action="store_true", help="leave too-short videos out of the cleaned lists")
    parser.add_argument("--no-plots", action="store_true", help="skip the histogram PNGs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pmv.acquire.check import (
        ClipNeed, check_videos, collect_check_sources, format_summary, skipped_in_folder, write_clean_list,
        write_report,
    )
    from pmv.config import load_config
    from pmv.config.schema import DataConfig

    if args.workers < 1:
        raise DataError("--workers must be at least 1")
    data = load_config(args.config, args.overrides).data if args.config or args.overrides else DataConfig()
    separator = args.separator if args.separator is not None else data.separator
    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    lists, listed, entries = collect_check_sources(
        data, separator, list_file=args.list_file, root=args.root,
        splits=splits if (args.config or args.overrides) else None, all_splits_optional=args.split == DEFAULT_SPLITS,
    )
    need = ClipNeed(
        num_frames=args.num_frames or data.num_frames,
        sampling_rate=args.sampling_rate or data.sampling_rate,
        target_fps=args.target_fps if args.target_fps is not None else data.target_fps,
    )
    folder_only = args.root and not (args.list_file or args.config or args.overrides)
    skipped = skipped_in_folder(args.root) if folder_only else []
    report = check_videos(entries, need, deep=args.deep, workers=args.workers, progress=not args.no_progress,
                          lists=lists, skipped=skipped)
    written = write_report(report, args.out, plots=not args.no_plots)
    print(format_summary(report))
    print()
    for name, keys in lists.items():
        clean = Path(args.out) / f"{name}_clean.csv"
        kept = write_clean_list(report, keys, clean, separator, drop_short=args.drop_short, written_names=listed[name])
        print(f"{name}: {kept:,} of {len(keys):,} usable -> {clean}")
    print(f"report: {written['report']}" + (f" (+ {len(written) - 1} plots)" if len(written) > 1 else ""))
    problems = sum(not video.usable for video in report.videos)
    return 1 if problems else 0
