"""Small helpers every layer uses."""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp", *, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to: renamed over ``path`` when the block ends normally, removed
    when it raises, so nobody ever reads a half-written file under the final name.

    The temporary name is hidden (``.<name>.<random><suffix>``); ``suffix`` lets writers that go by extension
    (matplotlib, FFmpeg) see the right one. ``fsync``: flush the data and the rename to disk (checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text exactly as given (no newline translation), atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    return Path(path)


def text_file_kind(path: str | os.PathLike, sample_bytes: int = 4096) -> str | None:
    """What a file is when it is text: ``"an empty file"``, ``"a YAML config"`` (a mapping with pmv's sections),
    ``"a text file"``; ``None`` for binary data. Lets readers of binary formats say what they were given instead.
    """
    with open(path, "rb") as handle:
        head = handle.read(sample_bytes)
    if not head:
        return "an empty file"
    if any((byte < 32 and byte not in b"\t\n\r\f") or byte == 127 for byte in head):
        return None  # control bytes: binary data (a zip or pickle header, say), not text
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a multi-byte character cut by the sample
            return None
        text = head[: err.start].decode("utf-8")
    sections = ("_base_", "data", "transform", "mixup", "model", "optim", "train", "test")
    starts = {line.split(":", 1)[0].strip() for line in text.splitlines() if ":" in line and not line[:1].isspace()}
    return "a YAML config" if starts & set(sections) else "a text file"


def show_progress(progress: bool | None = None) -> bool:
    """Whether to draw progress bars: as asked, or (None) only when stderr is a terminal, so logs redirected to a
    file do not get one endless line of redrawn bars."""
    return sys.stderr.isatty() if progress is None else bool(progress)
