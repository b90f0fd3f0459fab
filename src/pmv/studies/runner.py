"""Run a study by name, and ``pmv study all --demo``: every study on a synthetic dataset made for it, on a CPU.

The demo synthesises one mixed-orientation dataset whose classes make each effect show (motion direction, an
action at the top or bottom of the frame outside the centre square, a tone), then runs the six studies with the
recipes of ``configs/demo/studies/``. Trainings are shared between studies when they are identical (same recipe,
same data): the portrait model of ``format`` is the one probed by ``spatial-bias``, swept by ``views``, shuffled by
``temporal``, the ``shorter`` row of ``augmentation`` and the visual model of ``audio``.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

import torch

import pmv
from pmv.config import load_config
from pmv.errors import ConfigError
from pmv.studies import STUDIES
from pmv.studies.common import StudyOutcome, StudyRequest, is_main, markdown_table
from pmv.utils import atomic_write_text

log = logging.getLogger(__name__)

MODULES = {"format": "format", "spatial-bias": "spatial_bias", "augmentation": "augmentation", "views": "views",
           "temporal": "temporal", "audio": "audio"}
DEMO_RECIPES = Path("configs") / "demo" / "studies"
DEMO_FAMILY = ("shorter", "default", "rect_48x36", "rect_54x36")
DEMO_CLASSES = ("moving up", "moving down", "waving at the top", "waving at the bottom", "tone 200 Hz", "tone 800 Hz")


def run_study(name: str, request: StudyRequest) -> StudyOutcome:
    if name not in MODULES:
        import difflib

        match = difflib.get_close_matches(name, MODULES, n=1)
        raise ConfigError(f"unknown study {name!r}; " + (f"did you mean {match[0]!r}?" if match else
                                                          f"choose from {', '.join(STUDIES)}"))
    module = importlib.import_module(f"pmv.studies.{MODULES[name]}")
    log.info("study %s -> %s", name, request.out_dir)
    outcome = module.run(request)
    log.info("study %s finished in %.0f s", name, outcome.seconds)
    return outcome


def find_demo_recipes(folder: Optional[str] = None) -> Path:
    """``configs/demo/studies`` here or next to the pmv sources (or ``folder``)."""
    candidates = [Path(folder)] if folder else [Path.cwd() / DEMO_RECIPES,
                                                Path(pmv.__file__).resolve().parents[2] / DEMO_RECIPES]
    for path in candidates:
        if (path / "shorter.yaml").is_file():
            return path
    raise ConfigError(f"cannot find the demo recipes {DEMO_RECIPES} (looked in {', '.join(map(str, candidates))}); "
                      "run from the pmv checkout")


@dataclass
class DemoOptions:
    out_dir: str = "study_demo"
    train_per_class: int = 32  # per orientation
    val_per_class: int = 8
    test_per_class: int = 8
    size: tuple[int, int] = (64, 36)  # portrait H x W; landscape videos are 36 x 64
    epochs: Optional[int] = None  # default: the recipes' (12)
    seed: int = 0
    workers: int = 2  # synthesis processes
    device: str = "cpu"
    studies: Sequence[str] = STUDIES
    recipes: Optional[str] = None  # folder of the demo recipes
    extra_overrides: list[str] = field(default_factory=list)


def run_demo(options: DemoOptions) -> dict[str, StudyOutcome]:
    """Synthesise the demo data and run the chosen studies; writes ``<out>/README.md`` with every table."""
    from pmv.acquire.synth import SynthOptions, synthesize
    from pmv.studies.format import split_by_orientation

    from pmv.studies.common import setup_device

    started = time.perf_counter()
    out = Path(options.out_dir)
    recipes = find_demo_recipes(options.recipes)
    setup_device(options.device)  # under torchrun: join the group before rank 0 writes lists the others read
    unknown = [s for s in options.studies if s not in MODULES]
    if unknown:
        raise ConfigError(f"unknown studies {unknown}; choose from {', '.join(STUDIES)}")
    data_dir = out / "data"
    if (data_dir / "synth.json").is_file() and (data_dir / "test.csv").is_file():
        log.info("demo data already in %s", data_dir)  # a rerun reuses the data (and the finished trainings)
        classes = json.loads((data_dir / "synth.json").read_text(encoding="utf-8"))["classes"]
        overrides = [f"data.list_dir={data_dir}", f"data.root={data_dir / 'videos'}",
                     f"model.num_classes={len(classes)}"]
    else:
        # Plain backgrounds: on textured ones the tiny model needs far more videos than a CPU demo can afford.
        synth = SynthOptions(class_names=DEMO_CLASSES, orientation="mixed", background="plain", size=tuple(options.size),
                             train_per_class=2 * options.train_per_class, val_per_class=2 * options.val_per_class,
                             test_per_class=2 * options.test_per_class, seed=options.seed, workers=options.workers)
        log.info("synthesising the demo data (%d classes, portrait + landscape) in %s", len(DEMO_CLASSES), data_dir)
        overrides = synthesize(data_dir, synth, progress=is_main()).config_overrides()
    overrides += [f"train.seed={options.seed}"]
    if options.epochs is not None:
        overrides.append(f"train.epochs={options.epochs}")
    overrides += list(options.extra_overrides)
    family = {name: load_config(recipes / f"{name}.yaml", overrides) for name in DEMO_FAMILY}
    runs_dir = out / "runs"
    # Portrait-only lists for every study but `format` (the paper's setting); `format` writes the same ones.
    subsets = split_by_orientation(family["shorter"], out / "format" / "lists")
    portrait = {name: replace(config, data=subsets.configs["portrait"].data) for name, config in family.items()}

    def request(name: str, configs, checkpoints=(), **extra) -> StudyRequest:
        return StudyRequest(configs=configs, out_dir=out / name, runs_dir=runs_dir, device=options.device,
                            checkpoints=list(checkpoints), options=extra)

    shorter = [("shorter", family["shorter"])]
    threads = torch.get_num_threads()
    if options.device == "cpu":
        # The tiny model's tensors are small: a second intra-op thread only adds OpenMP hand-offs (a training step
        # is ~50x slower with 2 threads than with 1 on a busy 2-core machine); the loader worker uses the other core.
        torch.set_num_threads(1)
    try:
        outcomes = _run_demo_studies(options, request, family, portrait, subsets, runs_dir, shorter)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - started
    if is_main():
        write_demo_readme(out, collect_outcomes(out, outcomes), seconds, recipes)
    log.info("study demo finished in %.0f s", seconds)
    return outcomes


def _run_demo_studies(options, request, family, portrait, subsets, runs_dir, shorter) -> dict[str, StudyOutcome]:
    outcomes: dict[str, StudyOutcome] = {}
    for name in options.studies:
        if name == "format":
            outcomes[name] = run_study(name, request(name, shorter))
        elif name == "spatial-bias":
            # Probing-P: the portrait model on portrait test videos; Probing-L: the landscape model on landscape.
            from pmv.studies.common import model_run

            models = [model_run(subsets.configs[o], runs_dir, device=options.device) for o in ("portrait", "landscape")]
            outcomes[name] = run_study(name, request(name, [(m.name, m.config) for m in models],
                                                     [m.checkpoint for m in models]))
        elif name == "augmentation":
            outcomes[name] = run_study(name, request(name, list(portrait.items())))
        else:
            outcomes[name] = run_study(name, request(name, [("shorter", portrait["shorter"])]))
    return outcomes


def collect_outcomes(out: Path, outcomes: dict[str, StudyOutcome]) -> dict[str, StudyOutcome]:
    """This run's outcomes, plus those of earlier runs into ``out`` (their results.json), in the studies' order."""
    found = {}
    for name in STUDIES:
        if name in outcomes:
            found[name] = outcomes[name]
            continue
        results = out / name / "results.json"
        if results.is_file():
            try:
                body = json.loads(results.read_text(encoding="utf-8"))
            except ValueError:
                continue
            found[name] = StudyOutcome(name, body, out / name, sorted((out / name).glob("*.png")), {}, float("nan"))
    return found


def summary_tables(outcomes: dict[str, StudyOutcome]) -> str:
    """Each study's results.json as a small markdown table."""
    from pmv.studies.common import pct

    parts = []
    for name, outcome in outcomes.items():
        r = outcome.results
        if name == "format":
            formats = list(r["top1"])
            table = [["trained on \\ tested on", *formats]] + [[a, *(pct(r["top1"][a][b]) for b in formats)]
                                                              for a in formats]
        elif name == "spatial-bias":
            grid = r["top1"] or []
            table = [["probe", "mean", "top rows (0-3)", "middle rows (6-9)", "bottom rows (12-15)"]]
            for label, probe in r.get("probes", {}).items():
                g = probe["top1"]

                def mean(rows):
                    values = [v for row in rows for v in row]
                    return sum(values) / len(values)

                table.append([label, pct(mean(g)), pct(mean(g[0:4])), pct(mean(g[6:10])), pct(mean(g[12:16]))])
                per_class = probe.get("top1_per_class", {})
                if len(per_class) <= 12:  # where in the frame each class is recognised
                    table += [[f"{label}, {name}", pct(mean(c)), pct(mean(c[0:4])), pct(mean(c[6:10])),
                               pct(mean(c[12:16]))] for name, c in per_class.items()]
            if not grid:
                table.append(["-", "-", "-", "-", "-"])
        elif name == "augmentation":
            table = [["recipe", "top-1 (%)", "GFLOPs/train clip", "train time (s)"]] + [
                [k, pct(v), f"{r['cost'][k]['train_gflops_per_clip'] or 0:.3g}", f"{r['cost'][k]['train_seconds']:.0f}"]
                for k, v in r["top1"].items()]
        elif name == "views":
            table = [["temporal", "spatial", "top-1 (%)", "GFLOPs/video"]] + [
                [row["temporal"], row["spatial"], pct(row["top1"]),
                 "-" if row["gflops"] is None else f"{row['gflops']:.3g}"] for row in r["rows"]]
        else:  # temporal, audio: top1 per variant, plus per kind of class when known
            by_kind = r.get("top1_by_kind", {})
            kinds = sorted({k for row in by_kind.values() for k in row})
            table = [["variant", "top-1 (%)", *(f"{k}" for k in kinds)]] + [
                [k, pct(v), *(pct(by_kind.get(k, {}).get(kind)) for kind in kinds)] for k, v in r["top1"].items()]
        took = "an earlier run" if outcome.seconds != outcome.seconds else f"{outcome.seconds:.0f} s"
        parts.append(f"## {name} ({took})\n\n{markdown_table(table)}\n\nFigures: "
                     + ", ".join(f"[{p.name}]({name}/{p.name})" for p in outcome.figures) + f"; [report]({name}/report.md)")
    return "\n\n".join(parts)


def write_demo_readme(out: Path, outcomes: dict[str, StudyOutcome], seconds: float, recipes: Path) -> Path:
    text = f"""# pmv study demo

The paper's six studies on a synthetic dataset ({', '.join(DEMO_CLASSES)}; portrait and landscape versions), with
the tiny model on the CPU (this run: {seconds:.0f} s). Recipes: `{recipes}`. Each study's folder holds `results.json`,
`report.md` and its figures; trainings are in `runs/` (shared between studies when identical).

{summary_tables(outcomes)}
"""
    return atomic_write_text(out / "README.md", text)
