"""Run records: ``metrics.jsonl`` (one flushed JSON line per log step, epoch and evaluation), optional TensorBoard
scalars, and a ``train.log`` copy of the log messages. Only the main process writes; other ranks get a no-op.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_MISSING = ("TensorBoard scalars are off: the tensorboard package is not installed; "
                       "pip install 'pmv[tensorboard]' (or set train.tensorboard=false)")


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunTracker:
    def __init__(self, output_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True,
                 log_file: str | None = "train.log") -> None:
        self.enabled = enabled
        self.output_dir = Path(output_dir)
        self._file = None
        self._writer = None
        self._handler: logging.Handler | None = None
        if not enabled:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.output_dir / METRICS_FILE, "a", encoding="utf-8")
        if log_file:
            self._handler = logging.FileHandler(self.output_dir / log_file, encoding="utf-8")
            self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger("pmv").addHandler(self._handler)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.warning(TENSORBOARD_MISSING)
            else:
                self._writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    def log(self, kind: str, step: int, **values: Any) -> None:
        """Append one record; ``kind`` is e.g. ``train``, ``epoch``, ``val``, ``test``."""
        if not self.enabled:
            return
        record = {"kind": kind, "step": int(step), "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in values.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key not in ("kind", "step", "time") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{kind}/{key}", value, int(step))

    def __enter__(self) -> "RunTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def log_train(self, step: int, record: dict) -> None:
        self.log("train", step, **record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._handler is not None:
            logging.getLogger("pmv").removeHandler(self._handler)
            self._handler.close()
            self._handler = None


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (a half-written last line, from a killed run, is ignored)."""
    records = []
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
