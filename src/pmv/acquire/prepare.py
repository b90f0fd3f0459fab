"""Re-encode a video folder for fast training: smaller, upright, short GOP, H.264 yuv420p, audio kept.

Phone videos are large, often stored sideways with a rotation flag, and have a keyframe only every few
seconds, so a random clip decodes hundreds of frames it never uses. ``prepare`` writes each video again:

* scaled so its short side is ``short_side`` (never upscaled), with even dimensions;
* turned upright and un-mirrored as FFmpeg's autorotate shows it (any multiple of 90 degrees, and a display
  matrix's reflection), with no display matrix left (every reader then sees the same picture);
* H.264 yuv420p with a keyframe every ``gop`` frames (x264 scene cuts off), index at the front (faststart);
* audio copied when it is AAC, else re-encoded to AAC (``audio="drop"`` removes it);
* frame timestamps kept, so variable-frame-rate videos keep their timing.

It is idempotent and resumable: an output that exists and probes as a finished output is skipped; a new one
is written to a temporary file, probed, and only then renamed over the old name, so a failure never replaces a
good output. Results are appended to ``prepare_manifest.jsonl`` in the destination.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pmv.acquire.check import MEDIA_EXTENSIONS, scan_folder
from pmv.errors import DataError

VIDEO_EXTENSIONS = MEDIA_EXTENSIONS  # the name earlier versions used

log = logging.getLogger(__name__)

MANIFEST_NAME = "prepare_manifest.jsonl"
AUDIO_MODES = ("auto", "aac", "copy", "drop")


@dataclass(frozen=True)
class PrepareOptions:
    short_side: int = 320
    gop: int = 16  # frames between keyframes
    crf: int = 23  # x264 quality: lower is better and larger
    preset: str = "veryfast"
    audio: str = "auto"  # auto: copy AAC, re-encode others to AAC | aac | copy | drop
    threads: int = 1  # encoder/decoder threads per video (the pool already runs one video per core)


@dataclass
class PrepareSummary:
    total: int = 0
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    seconds: float = 0.0
    ignored: list[str] = field(default_factory=list)  # files under the source that are not media, by name


def output_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """Upright (H, W) with the short side ``short_side`` (never larger than the source), both even."""
    scale = min(1.0, short_side / min(height, width))

    def even(value: float) -> int:
        return max(2, int(round(value / 2.0)) * 2)

    return even(height * scale), even(width * scale)


def _rotate_yuv420p(frame, quarter_turns: int, mirrored: bool = False):
    """The frame turned ``quarter_turns`` x 90 degrees counter-clockwise (then mirrored left to right), as a new
    yuv420p frame."""
    import av

    from pmv.video.orientation import apply_orientation

    width, height = frame.width, frame.height
    planes = []
    for index, (plane_height, plane_width) in enumerate(((height, width), (height // 2, width // 2), (height // 2, width // 2))):
        plane = frame.planes[index]
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane_height, plane.line_size)[:, :plane_width]
        planes.append(apply_orientation(rows, 90 * quarter_turns, mirrored))
    new_height, new_width = planes[0].shape
    packed = np.concatenate([np.ascontiguousarray(p).ravel() for p in planes]).reshape(new_height * 3 // 2, new_width)
    turned = av.VideoFrame.from_ndarray(packed, format="yuv420p")
    turned.pts, turned.time_base = frame.pts, frame.time_base
    return turned


def _is_finished_output(path: Path, size: tuple[int, int]) -> bool:
    from pmv.video import VideoError, probe

    try:
        meta = probe(path)
    except VideoError:
        return False
    return (meta.rotation == 0 and not meta.mirrored and not meta.truncated and (meta.height, meta.width) == size
            and meta.num_frames > 0)


def prepare_video(src: str | os.PathLike, dst: str | os.PathLike, options: PrepareOptions = PrepareOptions()) -> dict:
    """Re-encode one video to ``dst`` (atomically). Returns a manifest record; raises ``VideoError`` for a bad source."""
    import av

    from pmv.video import CorruptVideoError, open_container, probe, video_stream

    started = time.perf_counter()
    src, dst = Path(src), Path(dst)
    meta = probe(src)
    if meta.truncated:
        # Re-encoding would turn a cut-off download into a shorter video that looks whole.
        raise CorruptVideoError(str(src), f"the file is truncated: {meta.truncation}",
                                "download or copy the file again")
    height, width = output_size(meta.height, meta.width, options.short_side)
    if dst.exists() and _is_finished_output(dst, (height, width)):
        return {"status": "skipped", "height": height, "width": width, "bytes": dst.stat().st_size}
    quarter_turns = (meta.rotation // 90) % 4
    # Scale in the coded (stored) orientation, then turn: the turned picture has the upright size.
    coded_height, coded_width = (width, height) if quarter_turns % 2 else (height, width)
    dst.parent.mkdir(parents=True, exist_ok=True)
    temp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    source = open_container(str(src))
    try:
        in_video = video_stream(source, str(src), meta.stream)
        in_video.codec_context.thread_count = options.threads
        in_audio = source.streams.audio[0] if source.streams.audio and options.audio != "drop" else None
        output = av.open(str(temp), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            # The container's rate where it agrees with the timestamps (probe checks), else the timestamps'.
            rate = in_video.average_rate or in_video.guessed_rate
            if not rate or abs(float(rate) - meta.fps) > 0.1 * meta.fps:
                rate = Fraction(meta.fps).limit_denominator(1001) if meta.fps > 0 else Fraction(30)
            out_video = output.add_stream("libx264", rate=rate)
            out_video.width, out_video.height, out_video.pix_fmt = width, height, "yuv420p"
            # The source's time base, not 1/fps: variable-rate timestamps must survive without collisions.
            out_video.time_base = in_video.time_base
            out_video.codec_context.time_base = in_video.time_base
            out_video.codec_context.thread_count = options.threads
            out_video.options = {
                "crf": str(options.crf),
                "preset": options.preset,
                "x264-params": f"keyint={options.gop}:min-keyint={options.gop}:scenecut=0",
            }
            copy_audio = in_audio is not None and (
                options.audio == "copy" or (options.audio == "auto" and in_audio.codec_context.name == "aac")
            )
            out_audio = None
            if in_audio is not None:
                if copy_audio:
                    out_audio = output.add_stream_from_template(in_audio)
                else:
                    layout = in_audio.codec_context.layout.name if in_audio.codec_context.layout else "stereo"
                    out_audio = output.add_stream("aac", rate=in_audio.codec_context.sample_rate or 44100, layout=layout)
            streams = [in_video] + ([in_audio] if in_audio is not None else [])
            frames = 0
            for packet in source.demux(*streams):
                if packet.stream is in_video:
                    for frame in packet.decode():
                        picture = frame.reformat(width=coded_width, height=coded_height, format="yuv420p")
                        if quarter_turns or meta.mirrored:
                            picture = _rotate_yuv420p(picture, quarter_turns, meta.mirrored)
                        else:
                            picture.pts, picture.time_base = frame.pts, frame.time_base
                        output.mux(out_video.encode(picture))
                        frames += 1
                elif copy_audio:
                    if packet.dts is not None:
                        packet.stream = out_audio
                        output.mux(packet)
                else:
                    for samples in packet.decode():
                        samples.pts = None  # the encoder re-times its own frames
                        output.mux(out_audio.encode(samples))
            output.mux(out_video.encode(None))
            if out_audio is not None and not copy_audio:
                output.mux(out_audio.encode(None))
        finally:
            output.close()
        if frames == 0:
            raise CorruptVideoError(str(src), "no frame could be decoded")
        if not _is_finished_output(temp, (height, width)):
            raise CorruptVideoError(str(src), "the re-encoded file does not probe as expected")
        os.replace(temp, dst)
    except av.error.FFmpegError as err:
        raise CorruptVideoError(str(src), f"re-encoding failed: {err}") from None
    finally:
        source.close()
        temp.unlink(missing_ok=True)
    return {
        "status": "ok",
        "height": height,
        "width": width,
        "frames": frames,
        "rotation_applied": meta.rotation,
        "mirrored": meta.mirrored,
        "audio": "copied" if in_audio is not None and copy_audio else ("aac" if in_audio is not None else "none"),
        "bytes": dst.stat().st_size,
        "source_bytes": meta.size_bytes,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _prepare_task(task: tuple) -> dict:
    name, src, dst, options = task
    from pmv.errors import PmvError

    try:
        record = prepare_video(src, dst, options)
    except PmvError as err:
        record = {"status": "failed", "error": getattr(err, "reason", str(err))}
    except Exception as err:  # one odd file must not stop the whole folder
        record = {"status": "failed", "error": f"unexpected error: {err!r}"}
    record["name"] = name
    return record


def find_videos(src_dir: Path, exclude: Path | None = None) -> list[Path]:
    """The media files under ``src_dir`` (``pmv.acquire.check.MEDIA_EXTENSIONS``), outside ``exclude``."""
    return scan_folder(src_dir, exclude).videos


def prepare_videos(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    options: PrepareOptions = PrepareOptions(),
    *,
    workers: int | None = None,
    progress: bool = True,
) -> PrepareSummary:
    """Re-encode every video under ``src_dir`` to the same relative path (``.mp4``) under ``dst_dir``."""
    import pmv.video  # noqa: F401  imported before the pool forks, so workers do not each import it again

    src, dst = Path(src_dir), Path(dst_dir)
    if not src.is_dir():
        raise DataError(f"source folder {src} does not exist; check --src")
    if options.audio not in AUDIO_MODES:
        raise DataError(f"audio mode {options.audio!r} is not one of {', '.join(AUDIO_MODES)}")
    if options.short_side < 2 or options.gop < 1:
        raise DataError("--short-side must be at least 2 and --gop at least 1")
    if src.resolve() == dst.resolve():
        raise DataError("--dst must differ from --src: outputs would replace their own sources")
    dst.mkdir(parents=True, exist_ok=True)
    scan = scan_folder(src, exclude=dst.resolve() if dst.resolve().is_relative_to(src.resolve()) else None)
    videos = scan.videos
    tasks = []
    for path in videos:
        name = path.relative_to(src).as_posix()
        tasks.append((name, str(path), str(dst / Path(name).with_suffix(".mp4")), options))
    summary = PrepareSummary(total=len(tasks), ignored=[p.relative_to(src).as_posix() for p in scan.skipped])
    if summary.ignored:
        log.info("skipping %d file(s) that are not media by extension: %s", len(summary.ignored),
                 ", ".join(summary.ignored[:20]))
    started = time.perf_counter()
    workers = max(1, min(workers or os.cpu_count() or 1, max(1, len(tasks))))
    manifest = open(dst / MANIFEST_NAME, "a", encoding="utf-8")
    bar = tqdm(total=len(tasks), desc="prepare", unit="video", disable=not progress)
    try:
        if workers == 1:
            results = map(_prepare_task, tasks)
        else:
            pool = ProcessPoolExecutor(max_workers=workers)
            results = pool.map(_prepare_task, tasks, chunksize=1)
        try:
            for record in results:
                manifest.write(json.dumps(record, sort_keys=True) + "\n")
                manifest.flush()
                status = record["status"]
                if status == "ok":
                    summary.ok += 1
                elif status == "skipped":
                    summary.skipped += 1
                else:
                    summary.failed += 1
                    summary.failures.append((record["name"], record["error"]))
                bar.update(1)
                bar.set_postfix(ok=summary.ok, skipped=summary.skipped, failed=summary.failed, refresh=False)
        finally:
            if workers > 1:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
        manifest.close()
    summary.seconds = time.perf_counter() - started
    return summary
