"""The data behind the taxonomy page: classes, their train/val/test counts, and what a ``pmv test`` report says.

Everything is read once at start-up from files the user names (``--lists DIR``, ``--report DIR``); a file that is
missing or unreadable raises a typed error there, not on a page request.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from pmv.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class ReportVideo:
    index: int
    path: str  # where the server reads it (re-rooted under --videos when given)
    label: int
    predicted: int
    score: float
    correct: bool


@dataclass
class Taxonomy:
    class_names: list[str]
    counts: dict[str, list[int]] = field(default_factory=dict)  # split -> videos per class
    report_name: str = ""  # e.g. "test 5x3"
    accuracy: Optional[list[Optional[float]]] = None  # per class top-1 %, None where the class had no videos
    videos: list[ReportVideo] = field(default_factory=list)

    def classes(self) -> list[dict]:
        rows = []
        for label, name in enumerate(self.class_names):
            row = {"label": label, "name": name, "counts": {s: c[label] for s, c in self.counts.items()}}
            if self.accuracy is not None:
                row["top1"] = self.accuracy[label]
            rows.append(row)
        return rows

    def class_detail(self, label: int) -> dict:
        if not 0 <= label < len(self.class_names):
            raise DataError(f"no class {label}; classes are 0..{len(self.class_names) - 1}")
        mine = [v for v in self.videos if v.label == label]

        def item(v: ReportVideo) -> dict:
            return {"index": v.index, "name": Path(v.path).name, "url": f"/v1/report/videos/{v.index}",
                    "predicted": self.class_names[v.predicted] if 0 <= v.predicted < len(self.class_names) else "?",
                    "score": v.score}

        return {**self.classes()[label], "report": self.report_name,
                "right": [item(v) for v in mine if v.correct], "wrong": [item(v) for v in mine if not v.correct]}

    def video_path(self, index: int) -> Optional[Path]:
        """The file of report video ``index`` (only files a report lists are ever served)."""
        if 0 <= index < len(self.videos):
            return Path(self.videos[index].path)
        return None


def _split_counts(lists_dir: Path, num_classes: int) -> dict[str, list[int]]:
    from pmv.data.annotations import read_video_list

    counts: dict[str, list[int]] = {}
    for split in SPLITS:
        path = lists_dir / f"{split}.csv"
        if not path.is_file():
            continue
        per_class = [0] * num_classes
        for label in read_video_list(path, num_classes=num_classes).labels:
            per_class[label] += 1
        counts[split] = per_class
    if not counts:
        raise DataError(f"--lists {lists_dir}: no train.csv, val.csv or test.csv there")
    return counts


def _read_report(report_dir: Path, num_classes: int, videos_dir: Optional[Path]):
    try:
        report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
        name, protocol = list(report["protocols"].items())[-1]  # the main protocol is the last one
        files = protocol["files"]
    except (OSError, json.JSONDecodeError, KeyError, IndexError, AttributeError) as err:
        raise DataError(f"--report {report_dir} is not a `pmv test` output folder (report.json: {err})") from None

    def local(path_text: str) -> Path:  # report files may have been written elsewhere: look beside report.json
        path = Path(path_text)
        return path if path.is_file() else report_dir / path.name

    accuracy: list[Optional[float]] = [None] * num_classes
    try:
        with open(local(files["per_class"]), newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                label = int(row["class_index"])
                if 0 <= label < num_classes and int(row["videos"]) > 0:
                    accuracy[label] = float(row["top1"])
        with np.load(local(files["predictions"])) as npz:
            scores, labels, valid, paths = npz["scores"], npz["labels"], npz["valid"], npz["paths"]
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"--report {report_dir}: cannot read the per-class CSV or predictions ({err})") from None
    if scores.shape[1] != num_classes:
        raise DataError(f"--report {report_dir} scores {scores.shape[1]} classes; the model has {num_classes}")
    predicted = scores.argmax(1)
    videos = []
    for i, path in enumerate(paths.tolist()):
        where = Path(videos_dir) / Path(path).name if videos_dir else Path(path)
        videos.append(ReportVideo(index=i, path=str(where), label=int(labels[i]), predicted=int(predicted[i]),
                                  score=float(scores[i, predicted[i]] / max(scores[i].sum(), 1e-12)),
                                  correct=bool(valid[i]) and int(predicted[i]) == int(labels[i])))
    return f"{report.get('split', 'test')} {name}", accuracy, videos


def load_taxonomy(class_names: Sequence[str], *, lists_dir: str | None = None, report_dir: str | None = None,
                  videos_dir: str | None = None) -> Taxonomy:
    taxonomy = Taxonomy(class_names=list(class_names))
    if lists_dir:
        taxonomy.counts = _split_counts(Path(lists_dir), len(class_names))
    if report_dir:
        taxonomy.report_name, taxonomy.accuracy, taxonomy.videos = _read_report(
            Path(report_dir), len(class_names), Path(videos_dir) if videos_dir else None)
    return taxonomy
