"""Check a video dataset before training: which listed videos are missing, broken, too short, or odd.

Every video is probed (container metadata, no decoding) in a process pool; ``deep=True`` also decodes every
frame, which finds damaged data that the container index hides. The result is a :class:`CheckReport` that can
be written as ``report.json``, histogram PNGs and cleaned lists holding only the usable videos.

Verdicts (``VideoCheck.status``):

* ``ok``: readable, with a video stream long enough for one clip;
* ``short``: readable but shorter than one clip (``num_frames * sampling_rate`` frames at the target rate); still
  usable (the loader repeats frames, as the seed does), dropped from the cleaned list only with ``drop_short``;
* ``truncated``: the file stops before its end (a cut-off download); the frames before the cut are readable,
  but the video is not what was listed, so it is left out of the cleaned lists;
* ``missing``, ``empty``, ``unreadable`` (not media, or an index that cannot be read), ``no_video`` (audio only),
  ``corrupt`` (frames that fail to decode): not usable.

The verdict agrees with what ``VideoReader`` can do: the same stream (the one FFmpeg picks), the same frame
count (frames the decoder outputs), the same view of truncation.

A folder scan considers every file whose extension is one of ``MEDIA_EXTENSIONS`` (the containers FFmpeg
reads that phones, cameras, broadcast and the web produce) and names every other file it skips.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

from pmv.errors import DataError
from pmv.utils import atomic_output, atomic_write_bytes

log = logging.getLogger(__name__)

USABLE = ("ok", "short")
PROBLEMS = ("truncated", "missing", "empty", "unreadable", "no_video", "corrupt")
STATUSES = USABLE + PROBLEMS
# Containers FFmpeg demuxes, by the extensions they are saved with: ISO media (phones, cameras), Matroska/WebM,
# MPEG transport and program streams (broadcast, camcorders), FLV, 3GPP, ASF/WMV, Ogg, AVI.
MEDIA_EXTENSIONS = (
    ".mp4", ".mov", ".m4v", ".3gp", ".3g2", ".mkv", ".webm", ".avi", ".ts", ".m2ts", ".mts", ".m2t", ".flv",
    ".f4v", ".mpg", ".mpeg", ".vob", ".wmv", ".asf", ".ogv", ".ogg", ".mxf", ".dv", ".y4m", ".ivf", ".obu",
)
VIDEO_EXTENSIONS = MEDIA_EXTENSIONS  # the name earlier versions used


@dataclass
class FolderScan:
    """What a folder holds: media files to look at, and every other file, which is skipped by name."""

    videos: list[Path]
    skipped: list[Path]


def scan_folder(root: str | os.PathLike, exclude: Path | None = None) -> FolderScan:
    """Every file under ``root`` (sorted), split by extension into media files and skipped files. Hidden files
    (macOS ``._name.mp4`` companions, temporary files) are skipped too. Files under ``exclude`` (an output folder
    inside the source) are neither."""
    videos, skipped = [], []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file() or (exclude is not None and exclude in path.parents):
            continue
        media = path.suffix.lower() in MEDIA_EXTENSIONS and not path.name.startswith(".")
        (videos if media else skipped).append(path)
    return FolderScan(videos, skipped)


@dataclass(frozen=True)
class ClipNeed:
    """What one training clip needs: ``num_frames`` frames ``sampling_rate`` apart, at ``target_fps``
    (None: the video's own rate)."""

    num_frames: int = 16
    sampling_rate: int = 4
    target_fps: float | None = None

    def too_short(self, num_frames: int, fps: float, duration: float) -> bool:
        span = self.num_frames * self.sampling_rate
        if self.target_fps:
            seconds = duration if duration > 0 else (num_frames / fps if fps > 0 else 0.0)
            return seconds * self.target_fps < span
        return num_frames < span


@dataclass
class VideoCheck:
    name: str  # as written in the list (or relative to the folder)
    path: str
    status: str
    error: str = ""
    label: int | None = None
    width: int = 0  # upright (display) size
    height: int = 0
    orientation: str = ""
    rotation: int = 0
    fps: float = 0.0
    duration: float = 0.0
    num_frames: int = 0
    has_audio: bool = False
    codec: str = ""
    size_bytes: int = 0
    decoded_frames: int | None = None  # deep checks only

    @property
    def usable(self) -> bool:
        return self.status in USABLE


_ERROR_STATUS = {
    "VideoNotFoundError": "missing",
    "EmptyVideoError": "empty",
    "NotAVideoError": "unreadable",
    "NoVideoStreamError": "no_video",
    "CorruptVideoError": "corrupt",
}


def _deep_decode(path: str, stream_index: int) -> tuple[int, str]:
    """Decode every frame of the stream; returns (frames decoded, error or "")."""
    import av

    decoded = 0
    try:
        with av.open(path) as container:
            stream = container.streams[stream_index]
            stream.codec_context.thread_count = 1  # the pool already uses every core
            for _ in container.decode(stream):
                decoded += 1
    except (av.error.FFmpegError, OSError, ValueError) as err:
        return decoded, f"decoding failed after {decoded} frames: {err}"
    return decoded, ""


def check_video(name: str, path: str, label: int | None, need: ClipNeed, deep: bool = False) -> VideoCheck:
    """The verdict on one video."""
    from pmv.video import VideoError, probe

    try:
        meta = probe(path)
    except VideoError as err:
        status = _ERROR_STATUS.get(type(err).__name__, "unreadable")
        return VideoCheck(name, path, status, error=err.reason, label=label)
    result = VideoCheck(
        name,
        path,
        "ok",
        label=label,
        width=meta.width,
        height=meta.height,
        orientation=meta.orientation,
        rotation=meta.rotation,
        fps=round(meta.fps, 3),
        duration=round(meta.duration, 3),
        num_frames=meta.num_frames,
        has_audio=meta.has_audio,
        codec=meta.codec,
        size_bytes=meta.size_bytes,
    )
    if meta.width <= 0 or meta.height <= 0:
        result.status, result.error = "unreadable", "the video stream has no picture size"
        return result
    stream_index = next((s.stream_index for s in meta.video_streams if s.index == meta.stream), 0)
    if meta.truncated:
        result.status = "truncated"
        result.error = (f"the file is truncated: {meta.truncation}; the {meta.num_frames} frames before the cut "
                        "are readable (download or copy the file again)")
        if deep:
            result.decoded_frames, _ = _deep_decode(path, stream_index)
        return result
    if deep:
        decoded, error = _deep_decode(path, stream_index)
        result.decoded_frames = decoded
        if error:
            result.status, result.error = "corrupt", error
            return result
        if meta.num_frames and decoded < meta.num_frames:
            result.status = "corrupt"
            result.error = f"only {decoded} of the {meta.num_frames} frames in the index decode"
            return result
        result.num_frames = decoded
    if need.too_short(result.num_frames, meta.fps, meta.duration):
        result.status = "short"
        span = need.num_frames * need.sampling_rate
        rate = f"{need.target_fps:g} fps" if need.target_fps else "its own rate"
        result.error = f"{result.num_frames} frames ({meta.duration:.2f}s) < one clip of {span} frames at {rate}"
    return result


def _check_task(task: tuple) -> VideoCheck:
    return check_video(*task)


@dataclass
class CheckReport:
    videos: list[VideoCheck]
    need: ClipNeed
    deep: bool
    lists: dict[str, list[str]] = field(default_factory=dict)  # list name -> names, in list order
    skipped: list[str] = field(default_factory=list)  # files a folder scan left out (not media), by name

    def by_name(self) -> dict[str, VideoCheck]:
        return {video.name: video for video in self.videos}

    def counts(self, names: Iterable[str] | None = None) -> dict[str, int]:
        lookup = self.by_name()
        videos = self.videos if names is None else [lookup[name] for name in names]
        counts = Counter(video.status for video in videos)
        return {status: counts.get(status, 0) for status in STATUSES}

    def summary(self) -> dict:
        readable = [video for video in self.videos if video.width > 0]
        fps = [video.fps for video in readable if video.fps > 0]
        durations = [video.duration for video in readable if video.duration > 0]
        resolutions = Counter(f"{video.height}x{video.width}" for video in readable)

        def stats(values: list[float]) -> dict:
            if not values:
                return {}
            return {"min": min(values), "median": statistics.median(values), "mean": statistics.fmean(values), "max": max(values)}

        return {
            "videos": len(self.videos),
            "skipped_files": list(self.skipped),
            "usable": sum(video.usable for video in self.videos),
            "status": self.counts(),
            "per_list": {name: self.counts(names) for name, names in self.lists.items()},
            "orientation": dict(Counter(video.orientation for video in readable)),
            "rotation": {str(k): v for k, v in sorted(Counter(video.rotation for video in readable).items())},
            "with_audio": sum(video.has_audio for video in readable),
            "fps": stats(fps),
            "duration_s": stats(durations),
            "resolutions_hxw": dict(resolutions.most_common(10)),
            "clip": {**asdict(self.need), "deep": self.deep},
        }

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "videos": [{**asdict(video), "usable": video.usable} for video in self.videos]}


def check_videos(
    entries: Sequence[tuple[str, str, int | None]],
    need: ClipNeed = ClipNeed(),
    *,
    deep: bool = False,
    workers: int | None = None,
    progress: bool = True,
    lists: dict[str, list[str]] | None = None,
    skipped: Sequence[str] = (),
) -> CheckReport:
    """Check ``entries`` (name, path, label), each once, ``workers`` processes at a time (1: in this process)."""
    import pmv.video  # noqa: F401  imported before the pool forks, so workers do not each import it again

    workers = max(1, workers or os.cpu_count() or 1)
    tasks = [(name, path, label, need, deep) for name, path, label in entries]
    bar = tqdm(total=len(tasks), desc="check --deep" if deep else "check", unit="video", disable=not progress)
    results: list[VideoCheck] = []
    try:
        # Probing takes about a millisecond a file: below a few dozen files a pool costs more than it saves.
        if workers == 1 or len(tasks) < (4 if deep else 64):
            for task in tasks:
                results.append(_check_task(task))
                bar.update(1)
        else:
            chunk = max(1, min(32, len(tasks) // (workers * 8)))
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
                for result in pool.map(_check_task, tasks, chunksize=chunk):
                    results.append(result)
                    bar.update(1)
    finally:
        bar.close()
    return CheckReport(results, need, deep, dict(lists or {}), list(skipped))


def entries_from_folder(root: str | os.PathLike) -> list[tuple[str, str, None]]:
    """Every media file under ``root`` (see ``scan_folder``) as (name relative to root, path, no label)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"video folder {root} does not exist; check --root")
    return [(p.relative_to(root).as_posix(), str(p), None) for p in scan_folder(root).videos]


def skipped_in_folder(root: str | os.PathLike) -> list[str]:
    """The files under ``root`` a folder scan skips, relative to root."""
    root = Path(root)
    return [p.relative_to(root).as_posix() for p in scan_folder(root).skipped] if root.is_dir() else []


# -- writing the report -----------------------------------------------------------------------------------------



def collect_check_sources(
    data, separator: str, *, list_file: str | None = None, root: str | None = None,
    splits: Sequence[str] | None = None, all_splits_optional: bool = False,
) -> tuple[dict[str, list[str]], dict[str, list[str]], list[tuple[str, str, int | None]]]:
    """What `pmv data check` looks at: one list file, the split lists a config names, or every video under a folder.

    Returns (list name -> video keys, list name -> names as listed, unique (key, path, label) entries). With
    ``all_splits_optional`` a split whose list file is absent is skipped (a config may not have all three).
    """
    from pmv.data.annotations import list_file as split_list_file, read_video_list, video_root

    sources: list[tuple[str, Path, Path]] = []  # (name, list file, video root)
    if list_file:
        list_path = Path(list_file)
        if not list_path.is_file():
            raise DataError(f"no list file at {list_path}; check the path")
        sources.append((list_path.stem, list_path, Path(root) if root else list_path.parent))
    elif splits:
        for split in splits:
            path = split_list_file(data, split)
            if not path.is_file():
                if all_splits_optional:
                    continue
                raise DataError(f"no {split} list at {path}; check data.list_dir ({data.list_dir or '.'}) "
                                f"and data.subset ({data.subset!r})")
            sources.append((path.stem, path, Path(root) if root else video_root(data, split)))
        if not sources:
            looked = ", ".join(str(split_list_file(data, s)) for s in splits)
            raise DataError(f"no list file found: looked for {looked}; check data.list_dir and data.subset")
    elif root:
        entries = entries_from_folder(root)
        if not entries:
            raise DataError(f"no video files under {root}")
        names = [e[0] for e in entries]
        list_name = Path(root).resolve().name or "videos"
        return {list_name: names}, {list_name: names}, entries
    else:
        raise DataError("say what to check: --config CFG, --list LIST [--root DIR], or --root DIR")

    lists: dict[str, list[str]] = {}
    listed: dict[str, list[str]] = {}
    unique: dict[str, tuple[str, str, int | None]] = {}
    for name, path, video_dir in sources:
        videos = read_video_list(path, separator)
        keys = []
        for video, label in zip(videos.paths, videos.labels):
            full = os.path.join(video_dir, video)
            # One list: report names as listed. Several: by path, so lists sharing videos (val = test) probe once.
            key = video if len(sources) == 1 else full
            unique.setdefault(key, (key, full, label))
            keys.append(key)
        lists[name] = keys
        listed[name] = list(videos.paths)
    return lists, listed, list(unique.values())

def write_clean_list(
    report: CheckReport,
    names: list[str],
    path: str | os.PathLike,
    separator: str = ",",
    drop_short: bool = False,
    written_names: list[str] | None = None,
) -> int:
    """Write the usable videos of ``names`` as ``<name><sep><label>`` lines (the input's format); returns the count.

    ``written_names`` (parallel to ``names``) is what to write for each, e.g. the name as the original list has it.
    """
    lookup = report.by_name()
    keep = ("ok",) if drop_short else USABLE
    lines = []
    for name, shown in zip(names, written_names or names):
        video = lookup[name]
        if video.status in keep:
            lines.append(shown if video.label is None else f"{shown}{separator}{video.label}")
    atomic_write_bytes(Path(path), ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8"))
    return len(lines)


def write_histograms(report: CheckReport, out_dir: str | os.PathLike) -> list[str]:
    """duration.png, fps.png and resolution.png (orientation counts and the commonest sizes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    readable = [video for video in report.videos if video.width > 0]
    written = []

    def save(figure, name: str) -> None:
        path = out / name
        try:
            with atomic_output(path, ".png") as tmp:
                figure.savefig(tmp, dpi=100)
        finally:
            plt.close(figure)
        written.append(str(path))

    for name, values, xlabel in (
        ("duration.png", [v.duration for v in readable], "duration (s)"),
        ("fps.png", [v.fps for v in readable], "frames per second"),
    ):
        figure, axis = plt.subplots(figsize=(6, 4))
        axis.hist(values or [0], bins=min(50, max(5, len(set(values)))), color="#4477aa")
        axis.set_xlabel(xlabel)
        axis.set_ylabel("videos")
        axis.set_title(f"{xlabel} of {len(values)} readable videos")
        figure.tight_layout()
        save(figure, name)

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    orientations = Counter(v.orientation for v in readable)
    kinds = ["portrait", "landscape", "square"]
    left.bar(kinds, [orientations.get(k, 0) for k in kinds], color=["#228833", "#ee6677", "#bbbbbb"])
    left.set_title("orientation")
    left.set_ylabel("videos")
    common = Counter(f"{v.height}x{v.width}" for v in readable).most_common(10)
    right.barh([size for size, _ in common][::-1], [count for _, count in common][::-1], color="#4477aa")
    right.set_title("commonest sizes (H x W)")
    right.set_xlabel("videos")
    figure.tight_layout()
    save(figure, "resolution.png")
    return written


def write_report(report: CheckReport, out_dir: str | os.PathLike, *, plots: bool = True) -> dict[str, str]:
    """report.json and (with ``plots``) the histograms; returns what was written, by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"report": str(out / "report.json")}
    atomic_write_bytes(out / "report.json", json.dumps(report.to_dict(), indent=1).encode("utf-8"))
    if plots:
        for path in write_histograms(report, out):
            written[Path(path).stem] = path
    return written


def format_summary(report: CheckReport) -> str:
    """A plain-text table of the verdicts (per list when there are several) and the video properties."""
    summary = report.summary()
    columns = list(report.lists) if len(report.lists) > 1 else []
    header = f"{'verdict':<12}" + "".join(f"{name:>14}" for name in columns) + f"{'all':>10}"
    lines = [header, "-" * len(header)]
    for status in STATUSES:
        cells = "".join(f"{summary['per_list'][name][status]:>14,}" for name in columns)
        lines.append(f"{status:<12}{cells}{summary['status'][status]:>10,}")
    lines.append("-" * len(header))
    lines.append(f"{'usable':<12}" + "".join(
        f"{sum(summary['per_list'][n][s] for s in USABLE):>14,}" for n in columns) + f"{summary['usable']:>10,}")
    orientation = ", ".join(f"{k} {v:,}" for k, v in sorted(summary["orientation"].items()))
    rotation = ", ".join(f"{k} deg: {v:,}" for k, v in summary["rotation"].items())
    lines.append("")
    lines.append(f"orientation: {orientation or '-'}")
    lines.append(f"rotation:    {rotation or '-'}")
    lines.append(f"with audio:  {summary['with_audio']:,}")
    for key, unit in (("fps", "fps"), ("duration_s", "s")):
        stats = summary[key]
        if stats:
            lines.append(f"{key.split('_')[0] + ':':<12} min {stats['min']:.2f}, median {stats['median']:.2f}, max {stats['max']:.2f} {unit}")
    sizes = ", ".join(f"{size} ({count:,})" for size, count in list(summary["resolutions_hxw"].items())[:5])
    lines.append(f"sizes (HxW): {sizes or '-'}")
    if report.skipped:
        shown = ", ".join(report.skipped[:20]) + (f", ... ({len(report.skipped) - 20} more)"
                                                  if len(report.skipped) > 20 else "")
        lines.append(f"skipped {len(report.skipped):,} file(s) that are not media by extension: {shown}")
    return "\n".join(lines)
