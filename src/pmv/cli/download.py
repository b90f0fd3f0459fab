"""`pmv download`: fetch videos from a list of links (or import a mirror), verified and resumable."""

from __future__ import annotations

import argparse
import os

from pmv.errors import DataError


def configure(parser: argparse.ArgumentParser) -> None:
    from pmv.acquire.download import DownloadOptions

    defaults = DownloadOptions()
    parser.add_argument(
        "links",
        nargs="?",
        metavar="LINKS",
        help="CSV with a URL in the first column (the authors' video_links.csv, or a failed.csv), or a list of ids "
        "with --url-template (a PMV-400 list works); optional with --from-dir",
    )
    parser.add_argument("--out", required=True, help="folder for <id>.mp4, manifest.jsonl and failed.csv")
    parser.add_argument("--url-template", help="URL of an id, e.g. 'https://mirror/x/{id}.mp4'")
    parser.add_argument("--from-dir", metavar="DIR", help="import an already downloaded mirror instead of downloading")
    parser.add_argument("--link", action="store_true", help="with --from-dir: hard-link instead of copying")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="parallel downloads (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="seconds per connect/read (default %(default)s)")
    parser.add_argument("--attempts", type=int, default=defaults.attempts, help="tries per video (default %(default)s)")
    parser.add_argument("--backoff", type=float, default=defaults.backoff, help="first retry delay in seconds, doubling")
    parser.add_argument("--max-retry-after", type=float, default=defaults.retry_after_max, help="cap on a server's Retry-After")
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second per host (default: no limit)")
    parser.add_argument("--min-size", type=int, default=defaults.min_bytes, help="smallest valid file in bytes (default %(default)s)")
    parser.add_argument("--no-verify", action="store_true", help="do not probe files for a video stream")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pmv.acquire.download import DownloadOptions, download_videos, import_mirror, read_links

    if args.workers < 1 or args.attempts < 1:
        raise DataError("--workers and --attempts must be at least 1")
    if args.links is None and args.from_dir is None:
        raise DataError("give a LINKS file, or --from-dir DIR to import a mirror")
    items = read_links(args.links, args.url_template) if args.links else None
    if args.from_dir:
        summary = import_mirror(
            args.from_dir,
            args.out,
            items,
            link=args.link,
            workers=args.workers,
            min_bytes=args.min_size,
            verify=not args.no_verify,
            progress=not args.no_progress,
        )
    else:
        options = DownloadOptions(
            workers=args.workers,
            timeout=args.timeout,
            attempts=args.attempts,
            backoff=args.backoff,
            retry_after_max=args.max_retry_after,
            rate=args.rate,
            min_bytes=args.min_size,
            verify=not args.no_verify,
            progress=not args.no_progress,
        )
        summary = download_videos(items, args.out, options)
    print(
        f"{summary.total} videos: {summary.ok} fetched ({summary.bytes / 1e6:.1f} MB), "
        f"{summary.skipped} already done, {summary.failed} failed, {summary.pending} not started"
    )
    reasons: dict[str, int] = {}
    for _, _, reason in summary.failures:
        key = reason.split(":")[0].split(" (")[0]
        reasons[key] = reasons.get(key, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {count:6d}  {reason}")
    if summary.failures:
        print(f"failures listed in {os.path.join(summary.out_dir, 'failed.csv')}; pass it as LINKS to retry them")
    if summary.interrupted:
        print("interrupted: run the same command again to resume")
        return 130
    return 1 if summary.failed else 0
