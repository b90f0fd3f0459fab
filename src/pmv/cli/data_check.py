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


def _collect(args):
    """(list name -> video keys, list name -> names as listed, unique (key, path, label) entries, separator,
    DataConfig)."""
    from pmv.config import load_config
    from pmv.config.schema import DataConfig
    from pmv.data.annotations import list_file, read_video_list, video_root

    if args.config or args.overrides:
        data = load_config(args.config, args.overrides).data
    else:
        data = DataConfig()
    separator = args.separator if args.separator is not None else data.separator
    sources: list[tuple[str, Path, Path]] = []  # (name, list file, video root)
    if args.list_file:
        list_path = Path(args.list_file)
        sources.append((list_path.stem, list_path, Path(args.root) if args.root else list_path.parent))
    elif args.config or args.overrides:
        for split in [s.strip() for s in args.split.split(",") if s.strip()]:
            path = list_file(data, split)
            if not path.is_file():
                if args.split == DEFAULT_SPLITS:
                    continue  # the default asks for every split; a config may not have all three
                raise DataError(f"no {split} list at {path}; check data.list_dir and data.subset")
            sources.append((path.stem, path, Path(args.root) if args.root else video_root(data, split)))
        if not sources:
            raise DataError(f"no list found for splits {args.split} under {data.list_dir or '.'}; check data.list_dir")
    elif args.root:
        from pmv.data.check import entries_from_folder

        entries = entries_from_folder(args.root)
        if not entries:
            raise DataError(f"no video files under {args.root}")
        names = [e[0] for e in entries]
        list_name = Path(args.root).resolve().name or "videos"
        return {list_name: names}, {list_name: names}, entries, separator, data
    else:
        raise DataError("say what to check: --config CFG, --list LIST [--root DIR], or --root DIR")

    lists: dict[str, list[str]] = {}
    listed: dict[str, list[str]] = {}
    unique: dict[str, tuple[str, str, int | None]] = {}
    for name, path, root in sources:
        videos = read_video_list(path, separator)
        keys = []
        for video, label in zip(videos.paths, videos.labels):
            full = os.path.join(root, video)
            # One list: report names as listed. Several: by path, so lists sharing videos (val = test) probe once.
            key = video if len(sources) == 1 else full
            unique.setdefault(key, (key, full, label))
            keys.append(key)
        lists[name] = keys
        listed[name] = list(videos.paths)
    return lists, listed, list(unique.values()), separator, data



def run(args: argparse.Namespace) -> int:
    from pmv.data.check import ClipNeed, check_videos, format_summary, write_clean_list, write_report

    if args.workers < 1:
        raise DataError("--workers must be at least 1")
    lists, listed, entries, separator, data = _collect(args)
    need = ClipNeed(
        num_frames=args.num_frames or data.num_frames,
        sampling_rate=args.sampling_rate or data.sampling_rate,
        target_fps=args.target_fps if args.target_fps is not None else data.target_fps,
    )
    report = check_videos(entries, need, deep=args.deep, workers=args.workers, progress=not args.no_progress, lists=lists)
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
