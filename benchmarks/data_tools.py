"""Throughput of the data tools on synthetic phone-like videos: `pmv data check` (probe and --deep) and
`pmv data prepare`, each with one worker (the baseline) and with a pool, plus what prepare buys a data loader
(random 16x4 clips per second read from the sources vs from the prepared copies).

    .venv/bin/python benchmarks/data_tools.py [--videos 20] [--seconds 4] [--height 1280 --width 720]

Prints a markdown table. The sources imitate phone uploads: 720x1280 H.264 with a keyframe every 250 frames,
B-frames, AAC audio, half of them stored sideways with a rotation flag.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pmv.acquire.check import ClipNeed, check_videos
from pmv.acquire.prepare import PrepareOptions, prepare_videos
from pmv.video import VideoReader


def make_phone_video(path: Path, *, seconds: float, height: int, width: int, rotation: int, seed: int) -> None:
    """Moving noise over gradients (encodes like camera footage), long GOP, AAC tone; stored turned by ``rotation``."""
    rng = np.random.default_rng(seed)
    fps = 30
    frames = int(seconds * fps)
    coded_h, coded_w = (width, height) if rotation % 180 else (height, width)
    texture = rng.integers(0, 256, size=(coded_h // 4 + 64, coded_w // 4 + 64, 3), dtype=np.uint8)
    ys = np.linspace(0, 1, coded_h, dtype=np.float32)[:, None, None]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = coded_w, coded_h, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "23", "x264-params": "keyint=250:bframes=3"}
        if rotation:
            video.set_display_rotation(rotation)  # the rotation flag phones write
        audio = container.add_stream("aac", rate=44100, layout="stereo")
        for index in range(frames):
            dy, dx = (2 * index) % 64, (3 * index) % 64
            small = texture[dy : dy + coded_h // 4, dx : dx + coded_w // 4]
            picture = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)[:coded_h, :coded_w]
            picture = (picture * 0.6 + 100 * ys * (1 + np.sin(index / 10))).clip(0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * 44100)) / 44100)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            chunk = np.stack([samples[start : start + 1024]] * 2)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
            frame.sample_rate = 44100
            frame.pts = start
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))


def clips_per_second(paths: list[Path], clips: int, seed: int = 0) -> float:
    """Random 16-frame clips at stride 4, a file opened per clip (as a dataset's __getitem__ does)."""
    import torch

    torch.set_num_threads(1)  # as in a data-loader worker; more threads only contend on a busy machine
    rng = random.Random(seed)
    started = time.perf_counter()
    for _ in range(clips):
        path = rng.choice(paths)
        with VideoReader(path, short_side=256) as reader:
            start = rng.randrange(0, max(1, len(reader) - 64))
            reader.get_frames([min(start + 4 * k, len(reader) - 1) for k in range(16)])
    return clips / (time.perf_counter() - started)


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each synthetic video")
    parser.add_argument("--height", type=int, default=1280)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--clips", type=int, default=20, help="random clips read for the loader comparison")
    parser.add_argument("--keep", help="folder to keep the videos in (default: a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.keep or scratch)
        src = root / "src"
        src.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        for k in range(args.videos):
            path = src / f"v{k:03d}.mp4"
            if not path.exists():
                make_phone_video(path, seconds=args.seconds, height=args.height, width=args.width,
                                 rotation=90 if k % 2 else 0, seed=k)
        print(f"made {args.videos} videos of {args.height}x{args.width}, {args.seconds:g}s "
              f"in {time.perf_counter() - started:.1f}s; {os.cpu_count()} CPUs\n")
        paths = sorted(src.glob("*.mp4"))
        entries = [(p.name, str(p), 0) for p in paths]
        need = ClipNeed(16, 4)
        n = len(paths)
        rows = []
        for label, run in (
            ("check (probe)", lambda w: check_videos(entries, need, workers=w, progress=False)),
            ("check --deep", lambda w: check_videos(entries, need, deep=True, workers=w, progress=False)),
            ("prepare --short-side 320 --gop 16",
             lambda w: prepare_videos(src, root / f"prepared_w{w}", PrepareOptions(short_side=320, gop=16), workers=w, progress=False)),
        ):
            one = timed(lambda: run(1))
            many = timed(lambda: run(args.workers))
            rows.append((label, n / one, n / many, one / many))
        prepared = sorted((root / f"prepared_w{args.workers}").glob("*.mp4"))
        source_rate = clips_per_second(paths, args.clips)
        prepared_rate = clips_per_second(prepared, args.clips)

        print(f"| tool | videos/s, 1 worker (baseline) | videos/s, {args.workers} workers | speed-up |")
        print("|---|---|---|---|")
        for label, one, many, ratio in rows:
            print(f"| {label} | {one:.2f} | {many:.2f} | {ratio:.2f}x |")
        print()
        print("| random 16x4 clips read at short side 256 | clips/s | ratio |")
        print("|---|---|---|")
        print(f"| from the sources (GOP 250, {args.height}x{args.width}) | {source_rate:.2f} | 1.00x |")
        print(f"| from the prepared copies (GOP 16, short side 320) | {prepared_rate:.2f} | {prepared_rate / source_rate:.2f}x |")


if __name__ == "__main__":
    main()
