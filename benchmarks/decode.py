"""Decode benchmark: clips/s of VideoReader against a PySlowFast-style PyAV decode, measured in one process.

    .venv/bin/python benchmarks/decode.py            # default run (about 2 minutes on 2 idle cores)
    .venv/bin/python benchmarks/decode.py --quick    # a short run

A 720x1280 (W x H) portrait H.264 video with B-frames and a 250-frame GOP is generated (a textured scene
that pans, zooms and turns under moving gradients, so the encoder and decoder work as on camera footage).
Each clip is 16 frames at stride 4 from a random start, and the file is opened per clip, as a dataset's
``__getitem__`` does. Methods run in turn on the same clip positions, so they see the same machine state.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the test-media maker writes the benchmark video

from media import make_video  # noqa: E402

from pmv.video import VideoReader  # noqa: E402
from pmv.video.reader import INDEX_CACHE  # noqa: E402

CLIP_FRAMES, STRIDE = 16, 4


def clip_indices(start: int) -> list[int]:
    return [start + STRIDE * k for k in range(CLIP_FRAMES)]


def _frame_pts(path: str) -> list[int]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        return sorted(p.pts for p in container.demux(stream) if p.pts is not None)


def baseline_pyslowfast(path: str, indices: list[int], pts: list[int]) -> np.ndarray:
    """PySlowFast-style: seek to the keyframe before the clip, decode to the clip end, convert every frame of
    the clip window to RGB (PyAV's default conversion), then pick the 16 wanted frames."""
    start_pts, end_pts = pts[indices[0]], pts[indices[-1]]
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        container.seek(start_pts, stream=stream, backward=True, any_frame=False)
        window = {}
        for frame in container.decode(stream):
            if frame.pts is None or frame.pts < start_pts:
                continue
            window[frame.pts] = frame.to_rgb().to_ndarray()
            if frame.pts >= end_pts and len(window) >= indices[-1] - indices[0] + 1:
                break
    return np.stack([window[pts[i]] for i in indices])


def decode_only(path: str, indices: list[int], pts: list[int]) -> int:
    """The same packets decoded (keyframe to the clip's last frame), nothing converted: the decode bound."""
    start_pts, end_pts = pts[indices[0]], pts[indices[-1]]
    count, seen = 0, 0
    needed = indices[-1] - indices[0] + 1
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        container.seek(start_pts, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            count += 1
            if frame.pts is not None and start_pts <= frame.pts <= end_pts:
                seen += 1
                if seen >= needed:
                    break
    return count


def video_reader(path: str, indices: list[int], **options) -> np.ndarray:
    with VideoReader(path, threads=1, **options) as reader:
        return reader.get_frames(indices).numpy()


def video_reader_cold(path: str, indices: list[int]) -> np.ndarray:
    INDEX_CACHE.clear()  # as on the first read of a file: the packet index is built first
    return video_reader(path, indices)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_speed(path: str, clips: int, seed: int) -> list[tuple[str, float]]:
    pts = _frame_pts(path)
    num_frames = len(pts)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, num_frames - STRIDE * (CLIP_FRAMES - 1), size=clips).tolist()
    methods = {
        "(a) PySlowFast-style baseline: seek, decode to clip end, RGB for every window frame, pick 16":
            lambda idx: baseline_pyslowfast(path, idx, pts),
        "(b) decode only, same packets, no conversion (bound)": lambda idx: decode_only(path, idx, pts),
        "(c) VideoReader": lambda idx: video_reader(path, idx),
        "(c') VideoReader, packet index not cached (first read of a file)":
            lambda idx: video_reader_cold(path, idx),
        "(d) VideoReader, short side 256 at decode time": lambda idx: video_reader(path, idx, short_side=256),
    }
    # Warm up (page cache, index cache) and check the reader returns the baseline's exact frames.
    for start in starts[:2]:
        idx = clip_indices(start)
        expected = methods[next(iter(methods))](idx)
        if not np.array_equal(video_reader(path, idx), expected):
            raise SystemExit(f"VideoReader frames differ from the baseline for clip {idx}")
    wall, cpu = dict.fromkeys(methods, 0.0), dict.fromkeys(methods, 0.0)
    names = list(methods)
    for number, start in enumerate(starts):
        idx = clip_indices(start)
        # In turn, so every method sees the same conditions; the order rotates from clip to clip so that no
        # method always follows the same other one (caches, allocator state).
        for name in names[number % len(names):] + names[: number % len(names)]:
            method = methods[name]
            wall_began, cpu_began = time.perf_counter(), time.process_time()
            method(idx)
            wall[name] += time.perf_counter() - wall_began
            cpu[name] += time.process_time() - cpu_began
    return [(name, clips / wall[name], clips / cpu[name]) for name in methods]


def measure_memory(path: str, reads: int, seed: int) -> tuple[float, float, float, int]:
    """RSS before and after ``reads`` clip reads (after a warm-up), and the open file descriptors change."""
    with VideoReader(path) as reader:
        num_frames = reader.num_frames
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, num_frames - STRIDE * (CLIP_FRAMES - 1), size=reads + 100).tolist()
    for start in starts[:100]:
        video_reader(path, clip_indices(start))
    gc.collect()
    fds_before, before = len(os.listdir("/proc/self/fd")), rss_mb()
    began = time.perf_counter()
    for start in starts[100:]:
        video_reader(path, clip_indices(start), short_side=64)
    elapsed = time.perf_counter() - began
    gc.collect()
    return before, rss_mb(), reads / elapsed, len(os.listdir("/proc/self/fd")) - fds_before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run: fewer clips and reads")
    parser.add_argument("--clips", type=int, help="clips per method (default 20, quick 5)")
    parser.add_argument("--rss-reads", type=int, help="clip reads for the memory check (default 2000, quick 200)")
    parser.add_argument("--keep", metavar="DIR",
                        help="write the generated videos here and reuse them on later runs (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clips = args.clips or (5 if args.quick else 20)
    reads = args.rss_reads or (200 if args.quick else 2000)

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.keep or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        # --quick makes a shorter video (faster to generate; clips then start within the first GOP).
        big_frames = 120 if args.quick else 300
        big = workdir / f"portrait_720x1280_gop250_{big_frames}f.mp4"
        small = workdir / "portrait_72x128_gop30.mp4"
        for path, height, width, frames, gop in ((big, 1280, 720, big_frames, 250), (small, 128, 72, 150, 30)):
            if not path.exists():  # written under a temporary name, so an interrupted run leaves no half file
                partial = path.with_suffix(".partial.mp4")
                make_video(partial, num_frames=frames, height=height, width=width, gop=gop, bframes=3,
                           index_in_pixels=False, crf=23)
                os.replace(partial, path)
        made = time.perf_counter() - began
        big_mb = big.stat().st_size / 1e6
        load_before = os.getloadavg()[0]
        speeds = measure_speed(str(big), clips, args.seed)
        load = (load_before + os.getloadavg()[0]) / 2
        rss_before, rss_after, reads_per_s, fd_change = measure_memory(str(small), reads, args.seed)

    print(f"\n## Decode: 16-frame clips at stride 4, random start, file opened per clip ({clips} clips each)\n")
    print(f"Video: 720x1280 (W x H) H.264, {big_frames} frames at 30 fps, GOP 250, 3 B-frames ({big_mb:.1f} MB); "
          f"PyAV {av.__version__}, 1 decoder thread, {os.cpu_count()} CPUs, load average {load:.1f} during the "
          f"run. Videos made in {made:.0f} s.\n")
    print("clips/s is wall-clock; clips per CPU-second counts the CPU time of all of the process's threads "
          "(PyAV's default RGB conversion in (a) is multi-threaded), which is what a data loader with one "
          "worker per core gets, and is steadier on a busy machine.\n")
    print("| method | clips/s | vs (a) | vs (b) | clips per CPU-s | vs (a) | vs (b) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, speed, cpu_speed in speeds:
        print(f"| {name} | {speed:.2f} | {speed / speeds[0][1]:.2f}x | {speed / speeds[1][1]:.2f}x "
              f"| {cpu_speed:.2f} | {cpu_speed / speeds[0][2]:.2f}x | {cpu_speed / speeds[1][2]:.2f}x |")
    for column, label in ((1, "wall-clock"), (2, "CPU")):
        baseline, bound, reader_speed = speeds[0][column], speeds[1][column], speeds[2][column]
        print(f"\nGoals ({label}): (c) >= 1.5x (a): {'met' if reader_speed >= 1.5 * baseline else 'NOT met'} "
              f"({reader_speed / baseline:.2f}x); (c) >= 0.8x (b): "
              f"{'met' if reader_speed >= 0.8 * bound else 'NOT met'} ({reader_speed / bound:.2f}x).")
    growth = rss_after - rss_before
    print(f"\n## Memory: {reads} clip reads (72x128 W x H, GOP 30, 3 B-frames, short side 64, a reader per clip)\n")
    print("| RSS before (MB) | RSS after (MB) | growth (MB) | open files change | clips/s |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {rss_before:.1f} | {rss_after:.1f} | {growth:+.1f} | {fd_change:+d} | {reads_per_s:.1f} |")
    print(f"\nGoal: RSS growth < 30 MB: {'met' if growth < 30 else 'NOT met'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
