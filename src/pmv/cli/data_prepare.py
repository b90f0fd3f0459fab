"""`pmv data prepare`: re-encode videos upright, smaller and with a short GOP, for fast training."""

from __future__ import annotations

import argparse
import os


def configure(parser: argparse.ArgumentParser) -> None:
    from pmv.acquire.prepare import AUDIO_MODES, PrepareOptions

    defaults = PrepareOptions()
    parser.add_argument("--src", required=True, help="folder of source videos (searched recursively)")
    parser.add_argument("--dst", required=True, help="folder for the re-encoded .mp4 files (same relative paths)")
    parser.add_argument("--short-side", type=int, default=defaults.short_side, help="output short side in pixels (default %(default)s; never upscaled)")
    parser.add_argument("--gop", type=int, default=defaults.gop, help="frames between keyframes (default %(default)s)")
    parser.add_argument("--crf", type=int, default=defaults.crf, help="x264 quality, lower is better (default %(default)s)")
    parser.add_argument("--preset", default=defaults.preset, help="x264 speed preset (default %(default)s)")
    parser.add_argument("--audio", choices=AUDIO_MODES, default=defaults.audio,
                        help="auto: copy AAC, re-encode others to AAC; aac; copy; drop (default %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="videos encoded at once (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pmv.acquire.prepare import PrepareOptions, prepare_videos
    from pmv.errors import DataError

    if args.workers < 1:
        raise DataError("--workers must be at least 1")
    options = PrepareOptions(short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset, audio=args.audio)
    summary = prepare_videos(args.src, args.dst, options, workers=args.workers, progress=not args.no_progress)
    rate = summary.total / summary.seconds if summary.seconds else 0.0
    print(f"{summary.total} videos in {summary.seconds:.1f}s ({rate:.1f}/s): "
          f"{summary.ok} re-encoded, {summary.skipped} already done, {summary.failed} failed")
    if summary.ignored:
        more = f", ... ({len(summary.ignored) - 20} more)" if len(summary.ignored) > 20 else ""
        print(f"skipped {len(summary.ignored)} file(s) that are not media by extension: "
              f"{', '.join(summary.ignored[:20])}{more}")
    for name, reason in summary.failures[:20]:
        print(f"  failed  {name}: {reason}")
    if len(summary.failures) > 20:
        print(f"  ... and {len(summary.failures) - 20} more (see prepare_manifest.jsonl in {args.dst})")
    return 1 if summary.failed else 0
