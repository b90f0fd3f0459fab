"""`pmv data probe FILE... [--json]`: print what each video is, read from its container (no decoding)."""

from __future__ import annotations

import argparse
import json
import re
import sys

from pmv.utils import text_file_kind
from pmv.video import NotAVideoError, VideoError, probe

_COLUMNS = [
    ("file", lambda m: m.path),
    ("HxW", lambda m: f"{m.height}x{m.width}"),
    ("orient", lambda m: m.orientation),
    ("rot", lambda m: f"{m.rotation} mirrored" if m.mirrored else str(m.rotation)),
    ("fps", lambda m: f"{m.fps:.3f}".rstrip("0").rstrip(".")),
    ("frames", lambda m: str(m.num_frames)),
    ("seconds", lambda m: f"{m.duration:.3f}"),
    ("codec", lambda m: m.codec),
    ("audio", lambda m: f"{m.audio_sample_rate} Hz x{m.audio_channels}" if m.has_audio else "-"),
    ("MB", lambda m: f"{m.size_bytes / 1e6:.2f}"),
    ("stream", lambda m: f"{m.stream} of {len(m.video_streams)}" if len(m.video_streams) > 1 else "-"),
    ("notes", lambda m: ", ".join(note for note, on in (("variable rate", m.variable_rate),
                                                        ("TRUNCATED", m.truncated)) if on) or "-"),
]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="video files to describe")
    parser.add_argument("--json", action="store_true", help="print one JSON list of objects instead of a table")
    parser.add_argument(
        "--count-frames", action="store_true",
        help="count frames by reading every packet (slower; exact where the container stores no count)",
    )
    parser.add_argument("--stream", type=int, help="which video stream (default: the one FFmpeg picks); "
                        "files with several list them below the table")


def _clean(text: str, path: str) -> str:
    """FFmpeg's text without the errno and the repeated path (``[Errno 1094995529] Invalid data ...: 'x.txt'``)."""
    text = re.sub(r"\[Errno -?\d+\]\s*", "", text)
    return text.replace(f": {path!r}", "")


def reason(err: VideoError) -> str:
    """Why a file could not be probed, in words: what a non-video file is instead."""
    if isinstance(err, NotAVideoError):
        try:
            kind = text_file_kind(err.path)
        except OSError:
            kind = None
        if kind:
            return f"not a video: it is {kind}"
    return _clean(err.reason, err.path)


def message(err: VideoError) -> str:
    text = _clean(str(err), err.path)  # path: reason (hint)
    return text if reason(err) in text else f"{err.path}: {reason(err)}"


def run(args: argparse.Namespace) -> int:
    results, failures = [], []
    for path in args.files:
        try:
            results.append(probe(path, count_frames=args.count_frames, stream=args.stream))
        except VideoError as err:
            failures.append(err)
    if args.json:
        records = [m.to_dict() for m in results]
        records += [{"path": err.path, "error": reason(err), "error_type": type(err).__name__} for err in failures]
        print(json.dumps(records, indent=2))
    elif results:  # no table (only its header) when nothing could be probed
        rows = [[name for name, _ in _COLUMNS]] + [[get(m) for _, get in _COLUMNS] for m in results]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        for m in results:
            if len(m.video_streams) > 1:
                print(f"{m.path}: {len(m.video_streams)} video streams (--stream N):")
                for s in m.video_streams:
                    flags = (("read by default", s.best), ("picture", s.attached_picture))
                    tags = ", ".join(tag for tag, on in flags if on)
                    print(f"  {s.index}: {s.height}x{s.width} {s.codec}, {s.num_frames} frames, {s.fps:.3f} fps"
                          + (f" ({tags})" if tags else ""))
        for m in results:
            if m.truncated:
                print(f"pmv: warning: {m.path} is truncated: {m.truncation}", file=sys.stderr)
    if not args.json:
        for err in failures:
            print(f"pmv: error: {message(err)}", file=sys.stderr)
    # Exit 1 when some file could not be probed, so scripts notice.
    return 1 if failures else 0
