"""What the studies share: trainings that are reused when identical, loading a checkpoint for a test, rank-0
writes of ``results.json`` / ``report.md``, and small helpers for tables.

A training's folder is ``<runs>/<name>-<key>``, where ``key`` hashes the config (all but ``train.output_dir``) and
the contents of its train/val lists. Asking twice for the same training (two studies, or a rerun of a study)
resumes the finished run instead of training again: the engine's auto-resume finds the last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn as nn

from pmv.config import Config, config_from_dict, config_to_dict
from pmv.errors import CheckpointError, ConfigError, PmvError

log = logging.getLogger(__name__)


def is_main() -> bool:
    """Rank 0 of a ``torchrun`` job (or the only process): the one that writes a study's files."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def setup_device(device: str) -> torch.device:
    """Join the ``torchrun`` process group when there is one; this process's device."""
    from pmv.engine import distributed as distrib

    return distrib.setup(device).device


def barrier() -> None:
    from pmv.engine import distributed as distrib

    distrib.barrier()


def _list_digest(config: Config) -> str:
    """The train and val videos (path, size, modification time) and the class names, so a changed dataset (new
    lists, or new files under the same names) is a new training."""
    from pmv.data.annotations import class_names_file, load_split

    digest = hashlib.sha1()
    try:
        digest.update(Path(class_names_file(config.data)).read_bytes())
    except OSError:
        digest.update(b"-")
    for split in ("train", "val"):
        try:
            annotations = load_split(config.data, split, check_files=False)
        except (FileNotFoundError, PmvError):
            digest.update(b"-")
            continue
        for path, label in zip(annotations.paths, annotations.labels):
            try:
                stat = os.stat(path)
                digest.update(f"{os.path.abspath(path)}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{path}|{label}|missing\n".encode())
    return digest.hexdigest()


def run_key(config: Config) -> str:
    """A short hash of what decides a training's outcome: the config (not its output folder) and the lists."""
    body = config_to_dict(config)
    body["train"].pop("output_dir", None)
    text = json.dumps(body, sort_keys=True, default=str) + _list_digest(config)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


@dataclass
class TrainedModel:
    name: str  # e.g. "portrait", "shorter", "tiny_frame"
    config: Config  # as trained (train.output_dir = the run folder)
    checkpoint: Path
    run_dir: Path
    best_metric: Optional[float]


def train_once(config: Config, runs_dir: str | Path, name: str, *, device: str = "auto") -> TrainedModel:
    """Train ``config`` into ``<runs_dir>/<name>-<key>`` (or pick up the finished run already there)."""
    from pmv.engine.trainer import train

    run_dir = Path(runs_dir) / f"{name}-{run_key(config)}"
    config = replace(config, train=replace(config.train, output_dir=str(run_dir), auto_resume=True))
    log.info("study training %r: %s into %s", name, config.model.name, run_dir)
    result = train(config, device=device)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    if checkpoint is None or not Path(checkpoint).is_file():
        from pmv.engine.checkpointing import list_checkpoints

        found = list_checkpoints(run_dir)
        if not found:
            raise CheckpointError(f"training {name!r} in {run_dir} left no checkpoint")
        checkpoint = found[-1]
    return TrainedModel(name, config, Path(checkpoint), run_dir, result.best_metric)


def load_for_test(checkpoint: str | Path, device: torch.device,
                  config: Optional[Config] = None) -> tuple[nn.Module, Config, list[str]]:
    """The model of a pmv checkpoint, built for its test crop, weights loaded, on ``device``, in eval mode;
    its config (``config`` if given, else the checkpoint's) and class names."""
    from pmv.engine.build import build_model, load_weights, test_input_size
    from pmv.engine.checkpointing import read_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    state = read_checkpoint(path)
    if config is None:
        if not isinstance(state.get("config"), dict):
            raise CheckpointError(f"{path} holds no pmv config; pass the recipe with --config")
        config = config_from_dict(state["config"])
    model_cfg = replace(config.model, pretrained="")
    model = build_model(model_cfg, test_input_size(config))
    load_weights(model, state, strict=True)
    return model.to(device).eval(), config, list(state.get("class_names") or [])


def top1_of(report: Any) -> Optional[float]:
    """Top-1 (%) of a test report's main protocol; None on ranks other than 0 (they get an empty report)."""
    return float(report.main.metrics.top1) if report is not None and report.protocols else None


def with_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """``config`` with ``section.key=value`` overrides applied (the config loader's rules and errors)."""
    if not overrides:
        return config
    from pmv.config import apply_overrides

    return config_from_dict(apply_overrides(config_to_dict(config), list(overrides)))


def markdown_table(rows: Sequence[Sequence[Any]]) -> str:
    header, *body = [[str(cell) for cell in row] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def write_study(out_dir: str | Path, results: dict, report_md: str) -> Path:
    """``results.json`` and ``report.md`` of a study (rank 0 only). Returns the folder."""
    from pmv.utils import atomic_write_text

    out = Path(out_dir)
    if is_main():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str) + "\n")
        atomic_write_text(out / "report.md", report_md.rstrip() + "\n")
    return out


def synth_kinds(config: Config) -> dict[str, str]:
    """Class name -> kind (motion, position, sound) when the data is ``pmv data synth`` output, else {}."""
    for folder in (config.data.list_dir, str(Path(config.data.class_names).parent) if config.data.class_names else ""):
        path = Path(folder or ".") / "synth.json"
        if folder and path.is_file():
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
                return {c["name"]: c["kind"] for c in info.get("classes", [])}
            except (OSError, ValueError, KeyError, TypeError):
                return {}
    return {}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class StudyRequest:
    """What a study is asked to do. ``configs``: (name, config) pairs, overrides already applied (the
    augmentation study trains each; the others use the first, or pair them with ``checkpoints``)."""

    configs: list[tuple[str, Config]]
    out_dir: Path  # this study's folder, <out>/<study>
    runs_dir: Path  # trainings (shared between the studies of one `pmv study all`)
    device: str = "auto"
    checkpoints: list[Path] = field(default_factory=list)  # test these instead of training (views, temporal, ...)
    options: dict = field(default_factory=dict)  # study-specific: frame_model, av_model, temporal_views, ...

    def __post_init__(self) -> None:
        self.out_dir, self.runs_dir = Path(self.out_dir), Path(self.runs_dir)
        self.checkpoints = [Path(c) for c in self.checkpoints]
        self.options = dict(self.options)
        if not self.configs:
            raise ConfigError("a study needs a recipe: pass --config RECIPE.yaml")

    @property
    def config(self) -> Config:
        return self.configs[0][1]


@dataclass
class StudyOutcome:
    name: str
    results: dict  # what results.json holds (rank 0; other ranks get the same keys with None values)
    out_dir: Path
    figures: list[Path]
    trained: dict  # name -> TrainedModel, for reuse by later studies of `pmv study all`
    seconds: float = 0.0


def model_run(config: Config, runs_dir: Path, *, device: str) -> TrainedModel:
    """``train_once`` with the run folder named after the model and the config's hash (so identical trainings
    asked for by different studies share one run)."""
    return train_once(config, runs_dir, config.model.name, device=device)


def top1_by_kind(report: Any, kinds: dict[str, str]) -> dict[str, float]:
    """Top-1 (%) over the test videos of each kind of class (synthetic data: motion, position, sound)."""
    if not kinds or report is None or not report.protocols:
        return {}
    hits: dict[str, float] = {}
    videos: dict[str, int] = {}
    for row in report.main.metrics.per_class:
        kind = kinds.get(row["class_name"])
        if kind is None:
            continue
        hits[kind] = hits.get(kind, 0.0) + row["top1"] * row["videos"] / 100.0
        videos[kind] = videos.get(kind, 0) + row["videos"]
    return {kind: 100.0 * hits[kind] / videos[kind] for kind in hits if videos[kind]}


def twin_model(model: str, chosen: str | None, twins: dict[str, str], what: str, flag: str) -> str:
    """The model a study compares ``model`` with (its frame-level or audio-visual twin): ``chosen`` when given."""
    if chosen:
        return chosen
    if model not in twins:
        known = ", ".join(f"{a} -> {b}" for a, b in twins.items())
        raise ConfigError(f"no {what} twin of {model!r} is known ({known}); pass {flag} NAME")
    return twins[model]


def model_for_test(request: "StudyRequest", device: torch.device, run_name: str, trained: dict):
    """The study's model: the request's first checkpoint, else one trained (or reused) from its config, recorded in
    ``trained[run_name]``. Returns (model, config, class names, checkpoint)."""
    if request.checkpoints:
        checkpoint, config = request.checkpoints[0], request.config
    else:
        run = model_run(request.config, request.runs_dir, device=request.device)
        trained[run_name] = run
        checkpoint, config = run.checkpoint, run.config
    model, config, class_names = load_for_test(checkpoint, device, config)
    return model, config, class_names, checkpoint
