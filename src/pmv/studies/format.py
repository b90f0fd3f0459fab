"""Study 1, format: portrait vs landscape training.

The dataset is split by orientation (a ``pmv data check`` report's ``orientation`` when given, else each file's
container metadata: display size after rotation; square videos join neither side). The training and validation
subsets are made equal in size, class by class (the smaller side's count of each class, in list order); every test
video of each orientation is kept. One model is trained per orientation with the same recipe, and both are tested
on both test sets: a 2 x 2 table, train format x test format. The subset lists are written under
``<out>/format/lists/{portrait,landscape}/`` (absolute video paths) and can be reused by hand.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from pmv.config import Config
from pmv.errors import DataError
from pmv.studies.common import (
    StudyOutcome, StudyRequest, is_main, load_for_test, markdown_table, model_run, pct, top1_of, write_study,
)

log = logging.getLogger(__name__)

FORMATS = ("portrait", "landscape")
SPLITS = ("train", "val", "test")


def orientations_from_report(report_path: str | Path) -> dict[str, str]:
    """Path -> orientation from a ``pmv data check`` report.json (usable videos only)."""
    try:
        body = json.loads(Path(report_path).read_text(encoding="utf-8"))
        return {str(Path(v["path"]).resolve()): v.get("orientation", "") for v in body["videos"] if v.get("usable")}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"cannot read the orientations of {report_path} ({err}); pass a `pmv data check` "
                        "report.json or leave --check-report out to probe the files") from None


def probe_orientations(paths: list[str], known: Optional[dict[str, str]] = None,
                       cache: Optional[dict[str, list]] = None) -> list[str]:
    """Each video's orientation (portrait / landscape / square), '' for a file that cannot be probed.

    ``cache`` (path -> [size, mtime_ns, orientation]) is read and updated, so a rerun does not probe again."""
    from pmv.video import probe
    from pmv.video.errors import VideoError

    result = []
    for path in paths:
        resolved = str(Path(path).resolve())
        if known is not None:
            result.append(known.get(resolved, ""))
            continue
        try:
            stat = os.stat(path)
            entry = (cache or {}).get(resolved)
            if entry and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
                result.append(entry[2])
                continue
            orientation = probe(path).orientation
            if cache is not None:
                cache[resolved] = [stat.st_size, stat.st_mtime_ns, orientation]
            result.append(orientation)
        except (VideoError, OSError) as err:
            log.warning("format study: cannot probe %s (%s); left out", path, err)
            result.append("")
    return result


@dataclass
class FormatSubsets:
    configs: dict[str, Config]  # orientation -> config reading that orientation's lists
    counts: dict[str, dict[str, int]]  # orientation -> split -> videos


def split_by_orientation(config: Config, lists_dir: str | Path, check_report: Optional[str] = None) -> FormatSubsets:
    """Write balanced portrait/landscape lists of every split under ``lists_dir`` and return configs for them."""
    from pmv.data.annotations import class_names_file, load_split
    from pmv.utils import atomic_write_text

    known = orientations_from_report(check_report) if check_report else None
    lists_dir = Path(lists_dir).resolve()
    cache_file = lists_dir / "orientations.json"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8")) if cache_file.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    selected: dict[str, dict[str, list[tuple[str, int]]]] = {o: {} for o in FORMATS}
    for split in SPLITS:
        try:
            annotations = load_split(config.data, split, check_files=False)
        except FileNotFoundError:
            if split == "val":
                continue  # training runs without validation then
            raise
        kinds = probe_orientations(annotations.paths, known, cache)
        by_class: dict[str, dict[int, list[str]]] = {o: defaultdict(list) for o in FORMATS}
        for path, label, kind in zip(annotations.paths, annotations.labels, kinds):
            if kind in FORMATS:
                by_class[kind][label].append(str(Path(path).resolve()))
        for orientation in FORMATS:
            rows = []
            for label in sorted(set(by_class["portrait"]) | set(by_class["landscape"])):
                videos = by_class[orientation][label]
                if split != "test":  # equal-size training (and validation) subsets, class by class
                    videos = videos[: min(len(by_class["portrait"][label]), len(by_class["landscape"][label]))]
                rows.extend((path, label) for path in videos)
            selected[orientation][split] = rows
    names_file = str(class_names_file(config.data).resolve())
    configs, counts = {}, {}
    for orientation in FORMATS:
        folder = lists_dir / orientation
        if not selected[orientation].get("train"):
            raise DataError(f"the format study found no {orientation} training videos that pair with the other "
                            f"orientation in {config.data.list_dir}; it needs both (e.g. `pmv data synth "
                            "--orientation mixed`)")
        if not selected[orientation].get("test"):
            raise DataError(f"no {orientation} test videos in {config.data.list_dir}")
        if is_main():
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cache_file, json.dumps(cache))
            for split, rows in selected[orientation].items():
                atomic_write_text(folder / f"{split}.csv", "\n".join(f"{path},{label}" for path, label in rows))
        data = replace(config.data, list_dir=str(folder), subset="", list_template="{split}.csv",
                       class_names=names_file, separator=",")
        configs[orientation] = replace(config, data=data)
        counts[orientation] = {split: len(rows) for split, rows in selected[orientation].items()}
    from pmv.studies.common import barrier

    barrier()  # the lists exist before any rank reads them
    return FormatSubsets(configs, counts)


def run(request: StudyRequest) -> StudyOutcome:
    from pmv.engine.evaluator import run_test
    from pmv.studies.common import setup_device
    from pmv.studies.plots import plot_matrix

    started = time.perf_counter()
    out = request.out_dir
    device = setup_device(request.device)
    subsets = split_by_orientation(request.config, out / "lists", request.options.get("check_report"))
    trained = {o: model_run(subsets.configs[o], request.runs_dir, device=request.device) for o in FORMATS}
    top1: dict[str, dict[str, Optional[float]]] = {}
    for train_format in FORMATS:
        model, _, class_names = load_for_test(trained[train_format].checkpoint, device, trained[train_format].config)
        top1[train_format] = {}
        for test_format in FORMATS:
            test_config = replace(trained[train_format].config, data=subsets.configs[test_format].data)
            report = run_test(test_config, model, out / f"test_{train_format}_on_{test_format}", device=device,
                              class_names=class_names)
            top1[train_format][test_format] = top1_of(report)
    results = {
        "top1": top1,
        "videos": subsets.counts,
        "checkpoints": {o: str(trained[o].checkpoint) for o in FORMATS},
        "model": request.config.model.name,
    }
    figures = []
    if is_main():
        figures.append(plot_matrix([[top1[a][b] for b in FORMATS] for a in FORMATS], FORMATS, FORMATS,
                                   out / "format_top1.png", title=f"{request.config.model.name}: top-1 (%)",
                                   row_label="trained on", col_label="tested on"))
        rows = [["trained on \\ tested on", *FORMATS]] + [[a, *(pct(top1[a][b]) for b in FORMATS)] for a in FORMATS]
        counts = [["subset", *SPLITS]] + [[o, *(str(subsets.counts[o].get(s, 0)) for s in SPLITS)] for o in FORMATS]
        report_md = f"""# Study: format (portrait vs landscape training)

The same recipe (`{request.config.model.name}`) trained from scratch on equal-size portrait and landscape subsets
(balanced class by class) and tested on the portrait and the landscape test videos. Top-1 (%):

{markdown_table(rows)}

Videos per subset:

{markdown_table(counts)}

![format](format_top1.png)

Checkpoints: portrait `{trained['portrait'].checkpoint}`, landscape `{trained['landscape'].checkpoint}`.
Subset lists: `lists/portrait/`, `lists/landscape/`. Per-test files: `test_<train>_on_<test>/`.
"""
        write_study(out, results, report_md)
    return StudyOutcome("format", results, out, figures, {f"format-{o}": trained[o] for o in FORMATS},
                        time.perf_counter() - started)
