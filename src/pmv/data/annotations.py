"""PMV-400 annotation lists, the class-name mapping, and where a split's files are.

A list has one video per line, ``<file>,<label>`` (no header; the last line may lack a newline). As the seed does,
a line may also be ``<file> <label>`` (separator ``" "``: any run of whitespace) or three columns
``<file>,<ignored>,<label>``. ``class_name_mapping.csv`` has ``<name>,<id>`` lines; it is split on the LAST comma
and names are stripped (13 PMV-400 names end in a space); ids must run 0..N-1. Every error names the file and the
line.

A split's list is ``<list_dir>/<list_template>`` formatted with the split and subset (the seed's
``{split}{subset}.csv`` -> ``train_pmv400.csv``); video paths in it are relative to ``root`` (``""``: the list's
folder), as the seed's ``DATA.PATH_PREFIX``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pmv.config.schema import DataConfig
from pmv.errors import DataError

logger = logging.getLogger(__name__)

CLASS_NAMES_FILE = "class_name_mapping.csv"


class AnnotationNotFoundError(DataError, FileNotFoundError):
    """A list or class-name file does not exist (also a FileNotFoundError, so callers can skip an absent split)."""


@dataclass
class VideoList:
    """The rows of one list file, in file order."""

    source: str  # the list file
    paths: list[str]  # as written in the list
    labels: list[int]
    lines: list[int]  # 1-based line number of each row, for messages

    def __len__(self) -> int:
        return len(self.paths)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AnnotationNotFoundError(
            f"{what} not found: {path} (set data.list_dir / data.subset, or get the PMV-400 lists with "
            "`pmv data fetch-annotations`)"
        ) from None
    except IsADirectoryError:
        raise DataError(f"{what} {path} is a folder, not a file") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{what} {path} is not UTF-8 text (byte {err.start}); is it the right file?") from None
    except OSError as err:
        raise DataError(f"cannot read {what} {path}: {err.strerror}") from None


def _split_row(line: str, separator: str) -> list[str]:
    if separator.strip() == "":
        return line.split()
    return [part.strip() for part in line.split(separator)]


def parse_video_list(text: str, source: str = "<list>", separator: str = ",") -> VideoList:
    """Parse a list's text; ``source`` names it in errors."""
    paths: list[str] = []
    labels: list[int] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    shown_sep = "whitespace" if separator.strip() == "" else repr(separator)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = _split_row(line, separator)
        if len(parts) == 2:
            path, label_text = parts
        elif len(parts) == 3:
            path, _, label_text = parts
        else:
            raise DataError(
                f"{source}, line {number}: expected '<file>{separator.strip() or ' '}<label>' "
                f"(separator {shown_sep}), got {line!r}; set data.separator if the list uses another one"
            )
        if not path:
            raise DataError(f"{source}, line {number}: the video file name is empty in {line!r}")
        try:
            label = int(label_text)
        except ValueError:
            raise DataError(f"{source}, line {number}: label {label_text!r} is not an integer class id") from None
        if label < 0:
            raise DataError(f"{source}, line {number}: label {label} is negative; class ids start at 0")
        if path in seen:
            raise DataError(f"{source}, line {number}: {path} is listed twice (also on line {seen[path]})")
        seen[path] = number
        paths.append(path)
        labels.append(label)
        lines.append(number)
    return VideoList(source=source, paths=paths, labels=labels, lines=lines)


def read_video_list(path: str | os.PathLike, separator: str = ",", num_classes: Optional[int] = None) -> VideoList:
    """Read a list file. With ``num_classes``, labels must be below it."""
    path = Path(path)
    videos = parse_video_list(_read_text(path, "annotation list"), str(path), separator)
    if not videos.paths:
        raise DataError(f"annotation list {path} has no rows")
    if num_classes is not None:
        for label, line in zip(videos.labels, videos.lines):
            if label >= num_classes:
                raise DataError(
                    f"{path}, line {line}: label {label} is outside the {num_classes} classes (ids 0..{num_classes - 1})"
                )
    return videos


def parse_class_names(text: str, source: str = "<class names>") -> list[str]:
    """``name,id`` lines -> names indexed by id."""
    by_id: dict[int, tuple[str, int]] = {}
    by_name: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        name, sep, id_text = raw.rpartition(",")
        name = name.strip()
        if not sep or not name:
            raise DataError(f"{source}, line {number}: expected '<class name>,<id>', got {raw!r}")
        try:
            class_id = int(id_text.strip())
        except ValueError:
            raise DataError(f"{source}, line {number}: class id {id_text.strip()!r} is not an integer") from None
        if class_id in by_id:
            raise DataError(f"{source}, line {number}: class id {class_id} is used twice (also on line {by_id[class_id][1]})")
        if name in by_name:
            raise DataError(f"{source}, line {number}: class name {name!r} is used twice (also on line {by_name[name]})")
        by_id[class_id] = (name, number)
        by_name[name] = number
    if not by_id:
        raise DataError(f"{source} has no classes")
    count = len(by_id)
    if set(by_id) != set(range(count)):
        bad = min(i for i in by_id if not 0 <= i < count)
        missing = sorted(set(range(count)) - set(by_id))[:5]
        raise DataError(
            f"{source}, line {by_id[bad][1]}: class id {bad} is out of range; ids must run 0..{count - 1} without "
            f"gaps (missing: {', '.join(map(str, missing))})"
        )
    return [by_id[i][0] for i in range(len(by_id))]


def read_class_names(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    return parse_class_names(_read_text(path, "class-name mapping"), str(path))


def list_file(data: DataConfig, split: str) -> Path:
    """The list file of a split: ``list_dir / list_template`` with split and subset filled in."""
    template = data.list_template
    try:
        if "{}" in template:  # the seed's positional form "{}{}.csv"
            name = template.format(split, data.subset)
        else:
            name = template.format(split=split, subset=data.subset)
    except (KeyError, IndexError, ValueError) as err:
        raise DataError(
            f"data.list_template {template!r} cannot be filled ({err}); use {{split}} and {{subset}}, "
            "e.g. '{split}{subset}.csv'"
        ) from None
    return Path(data.list_dir or ".") / name


def class_names_file(data: DataConfig) -> Path:
    return Path(data.class_names) if data.class_names else Path(data.list_dir or ".") / CLASS_NAMES_FILE


def video_root(data: DataConfig, split: str) -> Path:
    return Path(data.root) if data.root else list_file(data, split).parent


def find_missing(paths: list[str]) -> list[str]:
    """The paths that are not files; one folder listing per folder rather than one stat per file."""
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    missing = []
    for folder, members in by_folder.items():
        try:
            present = set(os.listdir(folder or "."))
        except OSError:
            present = set()
        missing.extend(p for p in members if os.path.basename(p) not in present)
    return missing


@dataclass
class SplitAnnotations:
    """One split, resolved: full video paths, labels, class names, and which listed videos are missing."""

    split: str
    list_file: str
    paths: list[str]  # root joined with the listed names
    labels: list[int]
    class_names: list[str]
    missing: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.paths)


def load_split(data: DataConfig, split: str, check_files: bool = True) -> SplitAnnotations:
    """Read a split's list and the class names; with ``check_files``, also count the listed videos not on disk."""
    names_path = class_names_file(data)
    if names_path.exists() or data.class_names:
        class_names = read_class_names(names_path)
    else:
        class_names = []
    path = list_file(data, split)
    videos = read_video_list(path, data.separator, len(class_names) or None)
    if not class_names:
        count = max(videos.labels) + 1
        logger.warning("no class-name mapping at %s: naming the %d classes by their ids", names_path, count)
        class_names = [str(i) for i in range(count)]
    root = video_root(data, split)
    full_paths = [os.path.join(root, p) for p in videos.paths]
    missing = find_missing(full_paths) if check_files else []
    if missing:
        logger.warning(
            "%d of %d videos listed in %s are missing under %s (first: %s)",
            len(missing), len(full_paths), path, root, missing[0],
        )
    return SplitAnnotations(split, str(path), full_paths, list(videos.labels), class_names, missing)
