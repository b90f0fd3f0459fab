"""A synthetic portrait-mode dataset: real H.264 + AAC mp4 files and PMV-400-style lists.

The classes make the paper's questions show up in miniature. Three kinds:

* ``motion``: an object moves up, down, left, right (or diagonally). Every single frame looks alike across classes;
  only the direction of motion over time tells them apart.
* ``position``: the same action (waving, blinking) happens only in the top band or only in the bottom band of the
  tall frame. The bands lie outside the centre square, so a centre square crop loses the class.
* ``sound``: identical visuals (an object wandering about); the classes differ only in the pitch of a tone.

``orientation`` picks the frame shape: ``portrait`` (``size`` H x W, H > W), ``landscape`` (the same size turned,
W x H) or ``mixed`` (even-numbered videos of each class and split portrait, odd ones landscape): landscape versions
of the same classes, for the format study. In a landscape frame the position bands are the top and bottom 30 %.

Everything else (background colour and texture, object colour, shape, size, speed, start position, phase) is drawn
per video, so a model has to learn the class, not memorise videos. Output for ``out_dir``::

    out_dir/train.csv, val.csv, test.csv      <file>,<label> rows, no header, no trailing newline
    out_dir/class_name_mapping.csv            <name>,<id> rows
    out_dir/synth.json                        options and the kind of each class
    out_dir/videos/<split>_<label>_<index>.mp4

so ``data.list_dir=out_dir data.root=out_dir/videos`` (see :meth:`SynthSummary.config_overrides`) reads it.
Each video is drawn from its own random stream (seeded by ``seed``, split, class name and index), so the output
is deterministic for a seed and does not depend on the number of workers.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Sequence

import av
import numpy as np
from tqdm import tqdm

from pmv.errors import DataError
from pmv.utils import atomic_output, atomic_write_text

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
AUDIO_FRAME_SAMPLES = 1024  # the AAC encoder's frame size

# Unit direction (dx, dy) per motion class; y grows downwards.
MOTION_CLASSES: dict[str, tuple[int, int]] = {
    "moving up": (0, -1),
    "moving down": (0, 1),
    "moving left": (-1, 0),
    "moving right": (1, 0),
    "moving up-left": (-1, -1),
    "moving up-right": (1, -1),
    "moving down-left": (-1, 1),
    "moving down-right": (1, 1),
}
# (action, band); the band is outside the centre square of the portrait frame.
POSITION_CLASSES: dict[str, tuple[str, str]] = {
    "waving at the top": ("waving", "top"),
    "waving at the bottom": ("waving", "bottom"),
    "blinking at the top": ("blinking", "top"),
    "blinking at the bottom": ("blinking", "bottom"),
}
# Tone pitch in Hz; octaves apart so AAC at 16 kHz keeps them apart (all below 8 kHz).
SOUND_CLASSES: dict[str, float] = {
    "tone 200 Hz": 200.0,
    "tone 400 Hz": 400.0,
    "tone 800 Hz": 800.0,
    "tone 1600 Hz": 1600.0,
    "tone 3200 Hz": 3200.0,
    "tone 6400 Hz": 6400.0,
}
KIND_CLASSES: dict[str, dict] = {"motion": MOTION_CLASSES, "position": POSITION_CLASSES, "sound": SOUND_CLASSES}
KINDS = tuple(KIND_CLASSES)
ORIENTATIONS = ("portrait", "landscape", "mixed")
BACKGROUNDS = ("textured", "plain")
LANDSCAPE_BAND = 0.3  # fraction of a landscape frame's height that makes the top (and the bottom) band


@dataclass
class SynthOptions:
    kinds: Sequence[str] = KINDS  # which kinds of classes to make
    classes_per_kind: int = 2  # classes of each kind (motion <= 8, position <= 4, sound <= 6)
    num_classes: Optional[int] = None  # if set: this many classes in total, taken from the kinds in turn
    class_names: Optional[Sequence[str]] = None  # if set: exactly these classes (names from the kind tables)
    train_per_class: int = 24
    val_per_class: int = 8
    test_per_class: int = 8
    size: tuple[int, int] = (160, 90)  # H x W, portrait (landscape videos are W x H)
    orientation: str = "portrait"  # portrait | landscape | mixed (alternating per video)
    background: str = "textured"  # textured (blurred random texture) | plain (one random colour; easier to learn)
    duration: float = 2.0  # seconds
    fps: int = 15
    audio_sample_rate: int = 16000
    seed: int = 0
    workers: int = 1
    crf: int = 23  # x264 quality
    gop: int = 0  # frames between keyframes; 0 = one per second (phone videos often use about 250)

    def per_split(self) -> dict[str, int]:
        return {"train": self.train_per_class, "val": self.val_per_class, "test": self.test_per_class}

    def frame_size(self, index: int) -> tuple[int, int]:
        """H x W of a class's ``index``-th video of a split."""
        height, width = self.size
        landscape = self.orientation == "landscape" or (self.orientation == "mixed" and index % 2 == 1)
        return (width, height) if landscape else (height, width)


@dataclass(frozen=True)
class SynthClass:
    name: str
    kind: str
    label: int


@dataclass
class SynthSummary:
    out_dir: str
    list_dir: str
    root: str
    classes: list[SynthClass]
    videos: dict[str, int]  # split -> number of videos
    num_frames: int
    size: tuple[int, int]
    fps: int
    bytes_written: int = 0
    seconds: float = 0.0
    orientation: str = "portrait"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def config_overrides(self) -> list[str]:
        """Overrides that point any recipe at this dataset: its folders, plain ``train.csv`` list names (a PMV-400
        recipe's ``data.subset: _pmv400`` would look for ``train_pmv400.csv``), its class mapping and count."""
        return [f"data.list_dir={self.list_dir}", f"data.root={self.root}", "data.subset=", "data.class_names=",
                f"model.num_classes={self.num_classes}"]


@dataclass(frozen=True)
class _VideoJob:
    path: str
    kind: str
    class_name: str
    stream_key: str  # names the video's random stream
    options: SynthOptions = field(compare=False)
    size: tuple[int, int] = (0, 0)  # H x W of this video; (0, 0) = options.size


def choose_classes(options: SynthOptions) -> list[SynthClass]:
    """The classes, in label order: each kind's classes in turn (or round-robin when ``num_classes`` is set)."""
    if options.class_names is not None:
        by_name = {name: kind for kind, names in KIND_CLASSES.items() for name in names}
        unknown = [name for name in options.class_names if name not in by_name]
        if unknown:
            raise DataError(f"unknown synthetic class(es) {unknown}; known: {', '.join(by_name)}")
        names = list(dict.fromkeys(options.class_names))
        if len(names) < 2:
            raise DataError("a dataset needs at least 2 classes")
        return [SynthClass(name=name, kind=by_name[name], label=i) for i, name in enumerate(names)]
    kinds = list(dict.fromkeys(options.kinds))
    for kind in kinds:
        if kind not in KIND_CLASSES:
            raise DataError(f"unknown synthetic class kind {kind!r}; choose from {', '.join(KINDS)}")
    if not kinds:
        raise DataError(f"no class kinds chosen; choose one or more of {', '.join(KINDS)}")
    available = {kind: list(KIND_CLASSES[kind]) for kind in kinds}
    capacity = sum(len(names) for names in available.values())
    chosen: list[tuple[str, str]] = []
    if options.num_classes is not None:
        if not 2 <= options.num_classes <= capacity:
            raise DataError(
                f"num_classes={options.num_classes} is out of range for kinds {kinds}: choose 2..{capacity}"
            )
        taken = {kind: 0 for kind in kinds}
        while len(chosen) < options.num_classes:
            for kind in kinds:
                if len(chosen) < options.num_classes and taken[kind] < len(available[kind]):
                    chosen.append((kind, available[kind][taken[kind]]))
                    taken[kind] += 1
    else:
        for kind in kinds:
            limit = len(available[kind])
            if not 1 <= options.classes_per_kind <= limit:
                raise DataError(f"classes_per_kind={options.classes_per_kind} is out of range for {kind!r}: 1..{limit}")
            chosen.extend((kind, name) for name in available[kind][: options.classes_per_kind])
        if len(chosen) < 2:
            raise DataError("a dataset needs at least 2 classes: raise classes_per_kind or add a kind")
    return [SynthClass(name=name, kind=kind, label=i) for i, (kind, name) in enumerate(chosen)]


def _validate(options: SynthOptions) -> None:
    height, width = options.size
    if height <= width:
        raise DataError(f"size {height}x{width} (H x W) is not portrait: the height must exceed the width")
    if height % 2 or width % 2 or width < 32:
        raise DataError(f"size {height}x{width} must have even sides (H.264 yuv420p) and a width of at least 32")
    if options.orientation not in ORIENTATIONS:
        raise DataError(f"orientation {options.orientation!r} is not one of {', '.join(ORIENTATIONS)}")
    if options.background not in BACKGROUNDS:
        raise DataError(f"background {options.background!r} is not one of {', '.join(BACKGROUNDS)}")
    if options.gop < 0:
        raise DataError(f"gop must be >= 0 (0 = one keyframe per second), got {options.gop}")
    if options.fps <= 0 or options.duration <= 0:
        raise DataError(f"fps ({options.fps}) and duration ({options.duration}) must be positive")
    if round(options.duration * options.fps) < 2:
        raise DataError("duration x fps gives fewer than 2 frames; make the video longer")
    for split, count in options.per_split().items():
        if count < 0:
            raise DataError(f"{split}_per_class must be >= 0, got {count}")
    if options.per_split()["train"] < 1:
        raise DataError("train_per_class must be at least 1")


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def _background(rng: np.random.Generator, height: int, width: int, kind: str = "textured") -> np.ndarray:
    """A random base colour with a blurred random texture (float32 H x W x 3); ``plain``: one mid-tone colour
    alone (mid tones leave every object colour room to stand out)."""
    if kind == "plain":
        base = rng.uniform(90, 160, size=3)
        return np.broadcast_to(base.astype(np.float32), (height, width, 3)).copy()
    base = rng.uniform(40, 215, size=3)
    coarse = rng.normal(0, 1, size=(height // 8 + 2, width // 8 + 2, 3))
    rows = np.linspace(0, coarse.shape[0] - 1.001, height)
    cols = np.linspace(0, coarse.shape[1] - 1.001, width)
    r0, c0 = rows.astype(int), cols.astype(int)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    smooth = (
        coarse[r0][:, c0] * (1 - fr) * (1 - fc)
        + coarse[r0 + 1][:, c0] * fr * (1 - fc)
        + coarse[r0][:, c0 + 1] * (1 - fr) * fc
        + coarse[r0 + 1][:, c0 + 1] * fr * fc
    )
    return (base + smooth * rng.uniform(8, 25)).astype(np.float32)


def _object_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A colour that stands out from the background's mean colour."""
    mean = background.reshape(-1, 3).mean(0)
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - mean).sum() > 180:
            return colour.astype(np.float32)
    return (255.0 - mean).astype(np.float32)


def _job_size(job: _VideoJob) -> tuple[int, int]:
    return tuple(job.size) if job.size[0] > 0 else tuple(job.options.size)


def _band_height(height: int, width: int) -> float:
    """Rows of the top (and bottom) band of the position classes: outside the centre square when portrait."""
    return (height - width) / 2 if height > width else LANDSCAPE_BAND * height


def _centres(job: _VideoJob, rng: np.random.Generator, times: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Object centre (x, y) per frame, and its visibility per frame."""
    height, width = _job_size(job)
    half = size / 2
    visible = np.ones(len(times), dtype=bool)
    progress = times / max(job.options.duration, 1e-6)  # 0..1 over the video
    if job.kind == "motion":
        dx, dy = MOTION_CLASSES[job.class_name]
        travel_x = rng.uniform(0.45, 0.9) * (width - size) * dx
        travel_y = rng.uniform(0.35, 0.8) * (height - size) * dy
        # start anywhere the whole path stays inside the frame
        x0 = rng.uniform(half + max(0.0, -travel_x), width - half - max(0.0, travel_x))
        y0 = rng.uniform(half + max(0.0, -travel_y), height - half - max(0.0, travel_y))
        if dx == 0:
            x = x0 + rng.uniform(-0.05, 0.05) * width * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * times)
        else:
            x = x0 + travel_x * progress
        if dy == 0:
            y = y0 + rng.uniform(-0.03, 0.03) * height * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * times)
        else:
            y = y0 + travel_y * progress
        return np.clip(x, half, width - half), np.clip(y, half, height - half), visible
    if job.kind == "position":
        action, band = POSITION_CLASSES[job.class_name]
        band_height = _band_height(height, width)
        top = rng.uniform(0, max(band_height - size, 0))
        y_centre = top + half if band == "top" else height - top - half
        y = np.full(len(times), y_centre)
        freq, phase = rng.uniform(0.8, 1.6), rng.uniform(0, 2 * np.pi)
        if action == "waving":
            amplitude = rng.uniform(0.2, 0.45) * (width - size)
            x_centre = width / 2 + rng.uniform(-0.5, 0.5) * (width - size - 2 * amplitude)
            x = x_centre + amplitude * np.sin(2 * np.pi * freq * times + phase)
        else:  # blinking: fixed place, on and off
            x = np.full(len(times), rng.uniform(half, width - half))
            visible = np.sin(2 * np.pi * freq * times + phase) > -0.2
        return x, y, visible
    # sound: the same wandering object for every class (a smooth random path)
    x = width / 2 + sum(
        rng.uniform(0.05, 0.2) * width * np.sin(2 * np.pi * rng.uniform(0.1, 0.8) * times + rng.uniform(0, 6.3))
        for _ in range(2)
    )
    y = height / 2 + sum(
        rng.uniform(0.05, 0.25) * height * np.sin(2 * np.pi * rng.uniform(0.1, 0.8) * times + rng.uniform(0, 6.3))
        for _ in range(2)
    )
    return np.clip(x, half, width - half), np.clip(y, half, height - half), visible


def render_frames(job: _VideoJob, rng: np.random.Generator) -> np.ndarray:
    """The video's frames, uint8 T x H x W x 3."""
    options = job.options
    height, width = _job_size(job)
    num_frames = round(options.duration * options.fps)
    times = np.arange(num_frames) / options.fps
    background = _background(rng, height, width, options.background)
    colour = _object_colour(rng, background)
    size = int(round(rng.uniform(0.16, 0.28) * min(width, height)))
    if job.kind == "position":
        size = min(size, int(_band_height(height, width) * 0.9))
    size = max(size, 4)
    round_shape = rng.random() < 0.5
    xs, ys, visible = _centres(job, rng, times, size)
    grid_y, grid_x = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    if round_shape:
        mask = (grid_x**2 + grid_y**2 <= (size / 2) ** 2).astype(np.float32)
    else:
        mask = np.ones((size, size), dtype=np.float32)
    mask = mask[..., None]
    noise_level = rng.uniform(2, 6)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frame = background + rng.normal(0, noise_level, size=background.shape).astype(np.float32)
        if visible[t]:
            top = int(round(ys[t] - size / 2))
            left = int(round(xs[t] - size / 2))
            top, left = min(max(top, 0), height - size), min(max(left, 0), width - size)
            patch = frame[top : top + size, left : left + size]
            frame[top : top + size, left : left + size] = patch * (1 - mask) + colour * mask
        np.clip(frame, 0, 255, out=frame)
        frames[t] = frame.astype(np.uint8)
    return frames


def render_audio(job: _VideoJob, rng: np.random.Generator) -> np.ndarray:
    """Mono float32 samples in [-1, 1]: a class tone for ``sound`` classes, else class-independent sound."""
    options = job.options
    rate = options.audio_sample_rate
    count = int(round(options.duration * rate))
    t = np.arange(count) / rate
    noise = rng.normal(0, rng.uniform(0.01, 0.04), size=count)
    if job.kind == "sound":
        pitch = SOUND_CLASSES[job.class_name] * rng.uniform(0.97, 1.03)
    else:
        pitch = float(np.exp(rng.uniform(np.log(200.0), np.log(6400.0))))  # random, carries no class
    tone = rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * pitch * t + rng.uniform(0, 2 * np.pi))
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # no clicks at the ends
    return np.clip((tone + noise) * ramp, -1, 1).astype(np.float32)


def _encode(path: Path, frames: np.ndarray, audio: np.ndarray, options: SynthOptions) -> None:
    """H.264 video of ``frames`` (T x H x W x 3, any orientation) and AAC audio, atomically."""
    with atomic_output(path, ".mp4") as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        video = container.add_stream(
            "libx264",
            rate=options.fps,
            # mbtree off: with it this x264 build gives different bytes (and pixels) run to run
            options={
                "preset": "veryfast",
                "crf": str(options.crf),
                "g": str(options.gop or options.fps),
                "threads": "1",
                "x264-params": "mbtree=0",
            },
        )
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.codec_context.thread_count = 1
        sound = container.add_stream("aac", rate=options.audio_sample_rate, layout="mono")
        sound.codec_context.thread_count = 1
        for index, array in enumerate(frames):
            # one conversion thread: FFmpeg's threaded RGB -> YUV conversion is not bit-exact run to run
            frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p", threads=1)
            frame.pts = index
            frame.time_base = Fraction(1, options.fps)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        for start in range(0, len(audio), AUDIO_FRAME_SAMPLES):
            chunk = audio[start : start + AUDIO_FRAME_SAMPLES]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            frame.sample_rate = options.audio_sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, options.audio_sample_rate)
            container.mux(sound.encode(frame))
        container.mux(sound.encode())


def _make_video(job: _VideoJob) -> int:
    rng = _rng(job.options.seed, job.stream_key)
    frames = render_frames(job, rng)
    audio = render_audio(job, rng)
    _encode(Path(job.path), frames, audio, job.options)
    return Path(job.path).stat().st_size


def synthesize(
    out_dir: str | os.PathLike,
    options: SynthOptions | None = None,
    progress: bool = True,
    on_video: Optional[Callable[[str], None]] = None,
) -> SynthSummary:
    """Write the dataset under ``out_dir`` and return what was written."""
    import time

    options = options or SynthOptions()
    _validate(options)
    classes = choose_classes(options)
    out = Path(out_dir)
    videos_dir = out / "videos"
    try:
        videos_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the output folder {videos_dir}: {err.strerror}") from None
    started = time.perf_counter()
    jobs: list[_VideoJob] = []
    rows: dict[str, list[str]] = {split: [] for split in SPLITS}
    for split, count in options.per_split().items():
        for cls in classes:
            for index in range(count):
                name = f"{split}_{cls.label:03d}_{index:04d}.mp4"
                rows[split].append(f"{name},{cls.label}")
                key = f"{split}/{cls.name}/{index}"
                jobs.append(_VideoJob(str(videos_dir / name), cls.kind, cls.name, key, options,
                                      options.frame_size(index)))
    total_bytes = 0
    bar = tqdm(total=len(jobs), desc="synth videos", unit="video", disable=not progress)
    try:
        if options.workers > 1:
            with ProcessPoolExecutor(max_workers=options.workers) as pool:
                for job, size in zip(jobs, pool.map(_make_video, jobs, chunksize=4)):
                    total_bytes += size
                    bar.update()
                    if on_video:
                        on_video(job.path)
        else:
            for job in jobs:
                total_bytes += _make_video(job)
                bar.update()
                if on_video:
                    on_video(job.path)
    finally:
        bar.close()
    for split in SPLITS:
        atomic_write_text(out / f"{split}.csv", "\n".join(rows[split]))
    atomic_write_text(out / "class_name_mapping.csv", "\n".join(f"{c.name},{c.label}" for c in classes))
    info = {
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items() if k != "workers"},
        "classes": [asdict(c) for c in classes],
    }
    atomic_write_text(out / "synth.json", json.dumps(info, indent=2))
    seconds = time.perf_counter() - started
    logger.info("wrote %d videos (%.1f MB) to %s in %.1f s", len(jobs), total_bytes / 1e6, videos_dir, seconds)
    return SynthSummary(
        out_dir=str(out),
        list_dir=str(out),
        root=str(videos_dir),
        classes=classes,
        videos={split: len(rows[split]) for split in SPLITS},
        num_frames=round(options.duration * options.fps),
        size=tuple(options.size),
        fps=options.fps,
        bytes_written=total_bytes,
        seconds=seconds,
        orientation=options.orientation,
    )

