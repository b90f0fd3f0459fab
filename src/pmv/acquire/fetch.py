"""Fetch the PMV-400 annotation files from the authors' repository, verify them, then write them.

Nothing is written until all four files have been read and checked (row counts, class ids, labels in range, no
video shared by train and val/test): a truncated download or an HTML error page never lands on disk. The files
are first written to a temporary folder inside the output folder and then renamed into place.

The source may be an http(s) URL, a ``file://`` URL or a local folder laid out like the authors' repository.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pmv.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/bytedance/Portrait-Mode-Video/main/"

# Output file name -> path inside the authors' repository (the MViT and Uniformer copies are byte-identical).
DEFAULT_PATHS: dict[str, str] = {
    "train_pmv400.csv": "MViT/data_list/PMV/train_pmv400.csv",
    "val_pmv400.csv": "MViT/data_list/PMV/val_pmv400.csv",
    "test_pmv400.csv": "MViT/data_list/PMV/test_pmv400.csv",
    "class_name_mapping.csv": "data/class_name_mapping.csv",
}
SPLIT_FILES = {"train": "train_pmv400.csv", "val": "val_pmv400.csv", "test": "test_pmv400.csv"}
CLASS_FILE = "class_name_mapping.csv"


@dataclass
class Expectations:
    """What a correct download holds. The defaults are PMV-400's published sizes."""

    rows: dict[str, int] = field(default_factory=lambda: {"train": 56452, "val": 19995, "test": 19995})
    num_classes: int = 400


@dataclass
class AnnotationSummary:
    out_dir: str
    rows: dict[str, int]
    num_classes: int
    files: list[str]


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https", "file")


def _join(base: str, relative: str) -> str:
    if _is_url(base):
        return base.rstrip("/") + "/" + relative.lstrip("/")
    return os.path.join(base, relative)


def read_source(location: str, *, timeout: float = 60.0, attempts: int = 3) -> bytes:
    """The bytes at an http(s)/file URL or a local path. Transient HTTP failures are retried a few times."""
    if not _is_url(location):
        try:
            return Path(location).read_bytes()
        except OSError as err:
            raise DataError(f"cannot read {location}: {err.strerror or err}; check --base-url") from None
    request = urllib.request.Request(location, headers={"User-Agent": "pmv-fetch-annotations"})
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            if err.code < 500 or attempt == attempts:
                raise DataError(f"{location}: HTTP {err.code} {err.reason}; check --base-url and the path") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            if attempt == attempts:
                raise DataError(f"cannot fetch {location}: {reason}; check the network or use --base-url") from None
        log.warning("fetching %s failed (attempt %d/%d), retrying", location, attempt, attempts)
        time.sleep(min(2.0**attempt, 10.0))
    raise AssertionError("unreachable")


def _decode(name: str, data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{name} is not UTF-8 text; the download is damaged") from None
    if text.lstrip().lower().startswith(("<!doctype", "<html")):
        raise DataError(f"{name} is an HTML page, not an annotation list; check --base-url")
    return [line for line in text.splitlines() if line.strip()]


def parse_class_mapping(name: str, data: bytes) -> dict[int, str]:
    """``<class name>,<id>`` lines -> {id: name}. Names may hold any character but the last comma."""
    classes: dict[int, str] = {}
    for number, line in enumerate(_decode(name, data), start=1):
        class_name, sep, raw_id = line.rpartition(",")
        try:
            class_id = int(raw_id)
        except ValueError:
            class_id = -1
        if not sep or class_id < 0:
            raise DataError(f"{name} line {number}: {line!r} is not '<class name>,<id>'")
        if class_id in classes:
            raise DataError(f"{name} line {number}: class id {class_id} appears twice")
        classes[class_id] = class_name.strip()
    return classes


def parse_list(name: str, data: bytes, separator: str = ",") -> list[tuple[str, int]]:
    """``<video file>,<label>`` lines -> [(file, label)]."""
    rows = []
    for number, line in enumerate(_decode(name, data), start=1):
        video, sep, raw_label = line.rpartition(separator)
        try:
            label = int(raw_label)
        except ValueError:
            label = None
        if not sep or not video or label is None:
            raise DataError(f"{name} line {number}: {line!r} is not '<video file>{separator}<label>'")
        rows.append((video.strip(), label))
    return rows


def verify_annotations(contents: dict[str, bytes], expect: Expectations) -> dict[str, int]:
    """Check the four files against each other and the expectations; returns the row count per split."""
    classes = parse_class_mapping(CLASS_FILE, contents[CLASS_FILE])
    if sorted(classes) != list(range(expect.num_classes)):
        missing = sorted(set(range(expect.num_classes)) - set(classes))[:5]
        extra = sorted(set(classes) - set(range(expect.num_classes)))[:5]
        raise DataError(
            f"{CLASS_FILE} has {len(classes)} classes, expected ids 0..{expect.num_classes - 1}"
            f" (missing {missing}, unexpected {extra}); the download is incomplete or the wrong file"
        )
    counts: dict[str, int] = {}
    names: dict[str, set[str]] = {}
    for split, file_name in SPLIT_FILES.items():
        rows = parse_list(file_name, contents[file_name])
        wanted = expect.rows.get(split)
        if wanted is not None and len(rows) != wanted:
            raise DataError(f"{file_name} has {len(rows)} rows, expected {wanted}; the download is incomplete")
        bad = [(video, label) for video, label in rows if not 0 <= label < expect.num_classes]
        if bad:
            raise DataError(f"{file_name}: label {bad[0][1]} of {bad[0][0]} is outside 0..{expect.num_classes - 1}")
        unique: set[str] = set()
        for video, _ in rows:
            if video in unique:
                raise DataError(f"{file_name} lists {video} more than once")
            unique.add(video)
        counts[split] = len(rows)
        names[split] = unique
    for other in ("val", "test"):
        shared = names["train"] & names[other]
        if shared:
            raise DataError(
                f"{len(shared)} videos are in both train and {other} (e.g. {sorted(shared)[0]}); the lists are not PMV-400's"
            )
    return counts


def fetch_annotations(
    out_dir: str | os.PathLike,
    base_url: str = DEFAULT_BASE_URL,
    paths: dict[str, str] | None = None,
    expect: Expectations | None = None,
    *,
    timeout: float = 60.0,
) -> AnnotationSummary:
    """Download, verify and write ``train/val/test_pmv400.csv`` and ``class_name_mapping.csv`` into ``out_dir``.

    ``paths`` overrides where a file lives relative to ``base_url`` (keys are the output names); an absolute
    URL or path is used as given.
    """
    expect = expect or Expectations()
    locations = dict(DEFAULT_PATHS)
    for key, value in (paths or {}).items():
        if key not in locations:
            raise DataError(f"unknown annotation file {key!r}; choose from {', '.join(DEFAULT_PATHS)}")
        locations[key] = value
    contents: dict[str, bytes] = {}
    for out_name, relative in locations.items():
        absolute = _is_url(relative) or os.path.isabs(relative)
        location = relative if absolute else _join(base_url, relative)
        log.info("fetching %s", location)
        contents[out_name] = read_source(location, timeout=timeout)
    counts = verify_annotations(contents, expect)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=out))
    try:
        for out_name, data in contents.items():
            with open(staging / out_name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for out_name in contents:
            os.replace(staging / out_name, out / out_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %s to %s", ", ".join(contents), out)
    return AnnotationSummary(out_dir=str(out), rows=counts, num_classes=expect.num_classes, files=list(contents))
