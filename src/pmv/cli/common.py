"""What several commands print or decide the same way."""

from __future__ import annotations

import argparse


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars unless ``--no-progress`` or stderr is not a terminal (a log file would get one long line)."""
    from pmv.utils import show_progress as auto

    return not getattr(args, "no_progress", False) and auto()


def print_report(report) -> None:
    print(f"{'views':>7} {'top-1':>7} {'top-5':>7} {'mean-cls':>8} {'top-1 valid':>11} {'videos':>7}")
    for p in report.protocols:
        m = p.metrics
        print(f"{p.name:>7} {m.top1:7.2f} {m.top5:7.2f} {m.mean_class_top1:8.2f} {m.top1_valid:11.2f} "
              f"{m.num_valid:>3}/{m.num_videos}")
    if report.invalid_videos:
        print(f"{len(report.invalid_videos)} video(s) could not be decoded and count as errors:")
        for item in report.invalid_videos[:10]:
            print(f"  {item['path']}: {item['error']}")
        if len(report.invalid_videos) > 10:
            print(f"  ... and {len(report.invalid_videos) - 10} more (report.json)")
    print(f"report: {report.report_path}")
