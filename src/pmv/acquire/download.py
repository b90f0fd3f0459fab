"""Download PMV-400 videos (or import a mirror) into one flat folder, verified, resumable and interruptible.

Layout of the output folder::

    <id>.mp4          finished, verified videos (only ever created by an atomic rename)
    <id>.mp4.part     a download in progress; a re-run resumes it with an HTTP Range request
    manifest.jsonl    one JSON line per finished attempt: id, url, status, bytes, sha256, error, attempts
    failed.csv        id,url,reason of this run's failures; feed it back to `pmv download` to retry them

Each video is streamed to disk in chunks (memory stays bounded whatever the file size), checked (content type,
minimum size, a real video stream via :func:`pmv.video.probe`) and only then renamed to its final name. The
manifest is appended with one ``write`` per line as results come in, so a killed run leaves at most one torn
last line, which is ignored on reading. A re-run skips videos that are on disk and recorded as ``ok``.
"""

from __future__ import annotations

import csv
import email.utils
import hashlib
import http.client
import io
import json
import logging
import os
import queue
import random
import re
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from tqdm import tqdm

from pmv.errors import DataError, PmvError
from pmv.utils import atomic_output

log = logging.getLogger(__name__)

VIDEO_SUFFIX = ".mp4"
PART_SUFFIX = ".part"
MANIFEST_NAME = "manifest.jsonl"
FAILED_NAME = "failed.csv"
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm")
# A desktop browser's User-Agent, as the authors' script sends: some CDNs refuse unknown clients.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
)
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")
_ACCEPTED_TYPES = ("application/octet-stream", "binary/octet-stream")


@dataclass(frozen=True)
class LinkItem:
    id: str
    url: str


@dataclass
class DownloadOptions:
    workers: int = 16
    timeout: float = 30.0  # seconds for the connection and for each read
    attempts: int = 5  # tries per video for transient failures (time-outs, 5xx, resets)
    backoff: float = 1.0  # first retry waits about this long, doubling each time, with jitter
    backoff_max: float = 60.0
    retry_after_max: float = 300.0  # a server's Retry-After is honoured up to this many seconds
    rate: float = 0.0  # requests per second per host; 0 = no limit
    min_bytes: int = 20 * 1024  # smaller files are error pages or stubs (the authors' script used 20 KiB)
    chunk_bytes: int = 256 * 1024
    verify: bool = True  # probe every file for a real video stream before it gets its final name
    user_agent: str = DEFAULT_USER_AGENT
    progress: bool = True


@dataclass
class DownloadSummary:
    total: int = 0
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    interrupted: bool = False
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (id, url, reason)
    out_dir: str = ""

    @property
    def pending(self) -> int:
        return self.total - self.ok - self.skipped - self.failed


# ---------------------------------------------------------------------------------------------------------------
# Reading the list of links


def video_id_from_url(url: str) -> str:
    """The video id of a link: the value of its last ``=`` parameter (the authors' rule), else the file stem."""
    if "=" in url:
        return url.rsplit("=", 1)[-1].strip()
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name
    return name[: -len(VIDEO_SUFFIX)] if name.endswith(VIDEO_SUFFIX) else name


def _strip_suffix(name: str) -> str:
    for suffix in VIDEO_EXTENSIONS:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_links(path: str | os.PathLike, url_template: str | None = None) -> list[LinkItem]:
    """Read a CSV of links (URL in the first column) or of ids (with ``url_template``, e.g. a PMV-400 list).

    A header row naming ``url`` and/or ``id`` columns (as ``failed.csv`` has) is understood. Ids may carry a
    video suffix (``abc.mp4``), which is dropped. Duplicate ids keep their first link.
    """
    if url_template is not None and "{id}" not in url_template:
        raise DataError(f"--url-template {url_template!r} must contain {{id}}, e.g. https://mirror/x/{{id}}.mp4")
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as err:
        raise DataError(f"cannot read the links file {path}: {err.strerror or err}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0].strip() and not row[0].startswith("#")]
    url_column, id_column = 0, None
    if rows and "://" not in rows[0][0]:
        header = [cell.strip().lower() for cell in rows[0]]
        if "url" in header or "id" in header:
            url_column = header.index("url") if "url" in header else None
            id_column = header.index("id") if "id" in header else None
            rows = rows[1:]
        elif len(rows) > 1 and "://" in rows[1][0]:
            log.info("%s: first row %r taken as a header", path, rows[0])
            rows = rows[1:]
    items: dict[str, LinkItem] = {}
    for number, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        url = cells[url_column] if url_column is not None and url_column < len(cells) else ""
        video_id = cells[id_column] if id_column is not None and id_column < len(cells) else ""
        if "://" not in url:
            # Not a link: an id (a bare id list, or the first column of a PMV-400 list).
            video_id = video_id or url
            if url_template is None:
                raise DataError(
                    f"{path} row {number}: {cells[0]!r} is not a URL; pass --url-template to download ids"
                )
            video_id = _strip_suffix(video_id)
            url = url_template.format(id=video_id)
        video_id = _strip_suffix(video_id) if video_id else video_id_from_url(url)
        items.setdefault(video_id, LinkItem(video_id, url))
    if len(items) < len(rows):
        log.info("%s: %d duplicate ids ignored", path, len(rows) - len(items))
    return list(items.values())


# ---------------------------------------------------------------------------------------------------------------
# Manifest and failure list


class Manifest:
    """Append-only JSONL. Each record is one ``os.write`` on an O_APPEND descriptor, so lines never interleave
    between threads and a killed process leaves complete lines (plus, at worst, one torn last line)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fd: int | None = None

    @staticmethod
    def load(path: str | os.PathLike) -> dict[str, dict]:
        """The last record of every id."""
        records: dict[str, dict] = {}
        try:
            lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return records
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill
            if isinstance(record, dict) and "id" in record:
                records[str(record["id"])] = record
        return records

    def append(self, record: dict) -> None:
        data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                # A torn last line from a killed run must not swallow this record: start on a fresh line.
                if self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
                    os.write(self._fd, b"\n")
            os.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None


def write_failed(path: str | os.PathLike, failures: Iterable[tuple[str, str, str]]) -> None:
    """Write ``id,url,reason`` rows atomically (a header row first)."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "url", "reason"])
        writer.writerows(sorted(failures))


# ---------------------------------------------------------------------------------------------------------------
# Pieces of one download


class _Retry(Exception):
    """A transient failure: try again after a back-off (or after ``retry_after`` seconds)."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Fail(Exception):
    """A permanent failure of this video."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Stopped(Exception):
    """The run is being interrupted; leave the video as it is."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential back-off with jitter: between half and all of ``base * 2**(attempt-1)``, at most ``cap``."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


class HostRateLimiter:
    """At most ``rate`` request starts per second per host, shared by all threads."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, host: str) -> float:
        """Book the next free start for ``host``; returns how many seconds to wait for it."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            start = max(now, self._next.get(host, now))
            self._next[host] = start + self.interval
        return start - now

    def wait(self, host: str, stop: threading.Event) -> None:
        delay = self.reserve(host)
        if delay > 0 and stop.wait(delay):
            raise _Stopped()


def sha256_of(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def verify_video(path: str | os.PathLike, min_bytes: int, probe: bool = True) -> int:
    """Raise ``_Fail`` unless ``path`` is at least ``min_bytes`` long and holds a readable video stream."""
    size = os.path.getsize(path)
    if size < min_bytes:
        raise _Fail(f"too small: {size} bytes (minimum {min_bytes}); probably an error page or a stub")
    if probe:
        from pmv.video import probe as probe_video

        try:
            probe_video(path)
        except PmvError as err:
            raise _Fail(f"not a playable video: {getattr(err, 'reason', err)}") from None
    return size


def _content_type_problem(content_type: str | None) -> str | None:
    if not content_type:
        return None  # unknown: the probe decides
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("video/") or media in _ACCEPTED_TYPES:
        return None
    return f"content type {media}, not a video"


def _parse_content_range(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    return int(match.group(1)) if match else None


def _discard(path: Path) -> None:
    path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------
# The downloader


class _Runner:
    """A fixed pool of daemon threads over a queue of videos; results go to the manifest as they finish.

    Daemon threads (not a ThreadPoolExecutor) so an interrupted run can exit while a thread is blocked in a
    read: its ``.part`` stays behind to be resumed, and nothing is renamed or recorded for it.
    """

    def __init__(self, out_dir: Path, workers: int, progress: bool, description: str):
        self.out_dir = out_dir
        self.workers = max(1, workers)
        self.progress = progress
        self.description = description
        self.stop = threading.Event()
        self.manifest = Manifest(out_dir / MANIFEST_NAME)

    def run(self, items: list[LinkItem], work: Callable[[LinkItem], dict], summary: DownloadSummary) -> None:
        todo: queue.Queue = queue.Queue()
        for item in items:
            todo.put(item)
        done: queue.Queue = queue.Queue()

        def worker() -> None:
            while not self.stop.is_set():
                try:
                    item = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    record = work(item)
                except _Stopped:
                    return
                except Exception as err:  # a bug or an OS error on our side: record it, keep the run going
                    log.exception("%s: unexpected error", item.id)
                    record = _record(item, "failed", error=f"unexpected error: {err!r}")
                if self.stop.is_set() and record.get("status") != "ok":
                    return  # failures caused by the shutdown itself are not real failures
                self.manifest.append(record)
                done.put(record)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(self.workers, len(items)))]
        bar = tqdm(total=len(items), desc=self.description, unit="video", disable=not self.progress, leave=False)
        try:
            for thread in threads:
                thread.start()
            finished = 0
            while finished < len(items):
                try:
                    record = done.get(timeout=0.2)
                except queue.Empty:
                    if not any(thread.is_alive() for thread in threads) and done.empty():
                        break
                    continue
                finished += 1
                _count(summary, record)
                bar.update(1)
                bar.set_postfix(ok=summary.ok, failed=summary.failed, refresh=False)
        except KeyboardInterrupt:
            summary.interrupted = True
            self.stop.set()
            log.warning("interrupted: letting running downloads stop (their .part files are kept for a re-run)")
            deadline = time.monotonic() + 5.0
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            while not done.empty():
                _count(summary, done.get_nowait())
        finally:
            bar.close()
            self.manifest.close()


def _record(item: LinkItem, status: str, *, size: int = 0, sha256: str = "", error: str = "", attempts: int = 0) -> dict:
    return {
        "id": item.id,
        "url": item.url,
        "status": status,
        "bytes": size,
        "sha256": sha256,
        "error": error,
        "attempts": attempts,
    }


def _count(summary: DownloadSummary, record: dict) -> None:
    if record["status"] == "ok":
        summary.ok += 1
        summary.bytes += int(record.get("bytes") or 0)
    else:
        summary.failed += 1
        summary.failures.append((record["id"], record["url"], record["error"]))


def _plan(items: list[LinkItem], out_dir: Path, summary: DownloadSummary) -> list[LinkItem]:
    """Videos still to do: those not on disk with an ``ok`` record of the same size."""
    previous = Manifest.load(out_dir / MANIFEST_NAME)
    todo = []
    for item in items:
        record = previous.get(item.id)
        final = out_dir / f"{item.id}{VIDEO_SUFFIX}"
        if record and record.get("status") == "ok" and final.is_file() and final.stat().st_size == record.get("bytes"):
            summary.skipped += 1
        else:
            todo.append(item)
    return todo


def _adopt_existing(item: LinkItem, final: Path, min_bytes: int, verify: bool) -> dict | None:
    """A final file without an ``ok`` record (a run killed between rename and record, or files put there by
    hand): keep it if it verifies, else move it aside so it is fetched again."""
    if not final.is_file():
        return None
    try:
        size = verify_video(final, min_bytes, verify)
    except _Fail as failure:
        aside = final.with_name(final.name + ".invalid")
        log.warning("%s does not verify (%s); moved to %s and fetching again", final, failure.reason, aside.name)
        os.replace(final, aside)
        return None
    return _record(item, "ok", size=size, sha256=sha256_of(final), attempts=0)


class Downloader:
    def __init__(self, out_dir: str | os.PathLike, options: DownloadOptions | None = None):
        self.out_dir = Path(out_dir)
        self.options = options or DownloadOptions()
        self.limiter = HostRateLimiter(self.options.rate)
        self._opener = urllib.request.build_opener()
        self._rng = random.Random()
        self._runner: _Runner | None = None

    @property
    def stop(self) -> threading.Event:
        assert self._runner is not None
        return self._runner.stop

    def run(self, items: list[LinkItem]) -> DownloadSummary:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        summary = DownloadSummary(total=len(items), out_dir=str(self.out_dir))
        todo = _plan(items, self.out_dir, summary)
        log.info("%d videos: %d already done, %d to download", len(items), summary.skipped, len(todo))
        self._runner = _Runner(self.out_dir, self.options.workers, self.options.progress, "download")
        self._runner.run(todo, self._download_one, summary)
        write_failed(self.out_dir / FAILED_NAME, summary.failures)
        return summary

    # One video, with retries.
    def _download_one(self, item: LinkItem) -> dict:
        options = self.options
        if not _SAFE_ID.fullmatch(item.id):
            return _record(item, "failed", error=f"id {item.id!r} cannot be used as a file name")
        final = self.out_dir / f"{item.id}{VIDEO_SUFFIX}"
        part = self.out_dir / f"{item.id}{VIDEO_SUFFIX}{PART_SUFFIX}"
        adopted = _adopt_existing(item, final, options.min_bytes, options.verify)
        if adopted:
            return adopted
        attempts = 0
        while True:
            attempts += 1
            resumed = part.is_file() and part.stat().st_size > 0
            try:
                self._fetch(item, part)
                size = verify_video(part, options.min_bytes, options.verify)
                digest = sha256_of(part)
                os.replace(part, final)
                return _record(item, "ok", size=size, sha256=digest, attempts=attempts)
            except _Fail as failure:
                _discard(part)
                if not resumed or attempts >= options.attempts:
                    return _record(item, "failed", error=failure.reason, attempts=attempts)
                # The file was stitched from a resumed part: start over once from zero before giving up.
                log.info("%s: resumed file did not verify (%s); downloading it again", item.id, failure.reason)
                continue
            except _Retry as retry:
                if attempts >= options.attempts:
                    return _record(item, "failed", error=f"{retry.reason} (gave up after {attempts} attempts)", attempts=attempts)
                if retry.retry_after is not None:
                    delay = min(retry.retry_after, options.retry_after_max)
                else:
                    delay = backoff_delay(attempts, options.backoff, options.backoff_max, self._rng)
                log.debug("%s: %s; retry %d in %.1fs", item.id, retry.reason, attempts + 1, delay)
                if self.stop.wait(delay):
                    raise _Stopped() from None

    def _open(self, item: LinkItem, offset: int):
        headers = {"User-Agent": self.options.user_agent, "Accept": "*/*", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        self.limiter.wait(urllib.parse.urlsplit(item.url).netloc, self.stop)
        request = urllib.request.Request(item.url, headers=headers)
        try:
            return self._opener.open(request, timeout=self.options.timeout)
        except urllib.error.HTTPError as err:
            retry_after = parse_retry_after(err.headers.get("Retry-After") if err.headers else None)
            err.close()
            if err.code == 416 and offset:
                raise _Retry("server refused to resume (416); restarting", retry_after=0.0) from None
            if err.code in (408, 425, 429) or err.code >= 500:
                raise _Retry(f"HTTP {err.code} {err.reason}", retry_after) from None
            raise _Fail(f"HTTP {err.code} {err.reason}") from None
        except urllib.error.URLError as err:
            raise _Retry(f"cannot connect: {err.reason}") from None
        except (OSError, http.client.HTTPException) as err:
            raise _Retry(f"connection failed: {err!r}") from None

    def _fetch(self, item: LinkItem, part: Path) -> None:
        """One HTTP attempt: stream the body into ``part``, appending when the server resumes a partial file."""
        offset = part.stat().st_size if part.is_file() else 0
        try:
            response = self._open(item, offset)
        except _Retry as retry:
            if retry.reason.startswith("server refused to resume"):
                _discard(part)
            raise
        with response:
            problem = _content_type_problem(response.headers.get("Content-Type"))
            if problem:
                raise _Fail(problem)
            if offset:
                start = _parse_content_range(response.headers.get("Content-Range"))
                if response.status != 206 or start != offset:
                    # The server sent the whole file or the wrong piece: start over from this response if it is
                    # the whole file, else drop the part and ask again.
                    if response.status == 200:
                        offset = 0
                    else:
                        _discard(part)
                        raise _Retry(f"server resumed at byte {start}, not {offset}; restarting", retry_after=0.0)
            length_header = response.headers.get("Content-Length")
            length = int(length_header) if length_header and length_header.isdigit() else None
            if length is not None and offset + length < self.options.min_bytes:
                raise _Fail(f"too small: {offset + length} bytes (minimum {self.options.min_bytes}); probably an error page or a stub")
            received = 0
            with open(part, "ab" if offset else "wb") as handle:
                while True:
                    if self.stop.is_set():
                        raise _Stopped()
                    try:
                        chunk = response.read(self.options.chunk_bytes)
                    except (OSError, http.client.HTTPException) as err:
                        reason = "timed out" if isinstance(err, TimeoutError) else f"connection broken ({type(err).__name__})"
                        raise _Retry(f"{reason} after {offset + received} bytes") from None
                    if not chunk:
                        break
                    handle.write(chunk)  # a disk error here is ours, not the network's: it is not retried
                    received += len(chunk)
            if length is not None and received < length:
                raise _Retry(f"connection closed after {offset + received} of {offset + length} bytes")


def download_videos(
    items: list[LinkItem], out_dir: str | os.PathLike, options: DownloadOptions | None = None
) -> DownloadSummary:
    """Download ``items`` into ``out_dir`` (see the module doc for the layout). Resumes an earlier run."""
    return Downloader(out_dir, options).run(items)


# ---------------------------------------------------------------------------------------------------------------
# Importing a mirror


def find_mirror_files(mirror_dir: str | os.PathLike) -> dict[str, Path]:
    """Video files under ``mirror_dir`` (any depth) by id (file stem); the first of duplicate ids wins."""
    found: dict[str, Path] = {}
    for path in sorted(Path(mirror_dir).rglob("*")):
        if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
            found.setdefault(path.stem, path)
    return found


def import_mirror(
    mirror_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    items: list[LinkItem] | None = None,
    *,
    link: bool = False,
    workers: int = 4,
    min_bytes: int = 20 * 1024,
    verify: bool = True,
    progress: bool = True,
) -> DownloadSummary:
    """Bring already downloaded videos into the download layout and manifest, verifying each.

    ``items`` limits the import to those ids (the others are reported missing); None takes every video found.
    ``link`` hard-links instead of copying where the two folders share a file system.
    """
    mirror = Path(mirror_dir)
    if not mirror.is_dir():
        raise DataError(f"mirror folder {mirror} does not exist; check --from-dir")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    found = find_mirror_files(mirror)
    if items is None:
        items = [LinkItem(video_id, found[video_id].resolve().as_uri()) for video_id in sorted(found)]
    summary = DownloadSummary(total=len(items), out_dir=str(out))
    todo = _plan(items, out, summary)
    log.info("%d videos: %d already imported, %d to import from %s", len(items), summary.skipped, len(todo), mirror)

    def import_one(item: LinkItem) -> dict:
        source = found.get(item.id)
        if source is None:
            return _record(item, "failed", error=f"not found in the mirror {mirror}")
        item = LinkItem(item.id, source.resolve().as_uri())
        if not _SAFE_ID.fullmatch(item.id):
            return _record(item, "failed", error=f"id {item.id!r} cannot be used as a file name")
        final = out / f"{item.id}{VIDEO_SUFFIX}"
        if final.resolve() == source.resolve():
            size = verify_video(final, min_bytes, verify)
            return _record(item, "ok", size=size, sha256=sha256_of(final), attempts=1)
        part = out / f"{item.id}{VIDEO_SUFFIX}{PART_SUFFIX}"
        _discard(part)
        try:
            if link:
                try:
                    os.link(source, part)
                except OSError:
                    shutil.copyfile(source, part)  # another file system: copy instead
            else:
                shutil.copyfile(source, part)
            size = verify_video(part, min_bytes, verify)
            digest = sha256_of(part)
            os.replace(part, final)
        except _Fail as failure:
            _discard(part)
            return _record(item, "failed", error=failure.reason, attempts=1)
        return _record(item, "ok", size=size, sha256=digest, attempts=1)

    runner = _Runner(out, workers, progress, "import")
    runner.run(todo, import_one, summary)
    write_failed(out / FAILED_NAME, summary.failures)
    return summary
