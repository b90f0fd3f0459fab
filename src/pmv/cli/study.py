"""`pmv study NAME --config RECIPE [section.key=value ...] --out DIR`: one of the paper's six studies, and
`pmv study all --demo --out DIR`: all six on a synthetic dataset, on the CPU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAMES = ("format", "spatial-bias", "augmentation", "views", "temporal", "audio", "all")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=NAMES, metavar="NAME", help=f"the study: {', '.join(NAMES)}")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="config overrides for every recipe, e.g. train.epochs=30 data.root=/data/PMV")
    parser.add_argument("--config", action="extend", nargs="+", default=[], metavar="RECIPE",
                        help="recipe YAML (several, or a folder, for the augmentation family; spatial-bias: one per "
                             "--checkpoint); section.key=value overrides may follow it")
    parser.add_argument("--out", required=True, metavar="DIR", help="results go to DIR/NAME/; trainings to DIR/runs/")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="CKPT",
                        help="test this checkpoint instead of training one (spatial-bias: up to two, "
                             "Probing-P then Probing-L; views, temporal: one)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--demo", action="store_true",
                        help="synthesise a dataset made for the studies and run on it with configs/demo/studies")
    parser.add_argument("--epochs", type=int, help="demo: epochs of every training (default: the recipes')")
    parser.add_argument("--train-per-class", type=int, help="demo: training videos per class and orientation")
    parser.add_argument("--val-per-class", type=int, help="demo: validation videos per class and orientation")
    parser.add_argument("--test-per-class", type=int, help="demo: test videos per class and orientation")
    parser.add_argument("--frame-model", help="temporal: the frame-level model (default: tiny -> tiny_frame, "
                        "uniformer_s -> uniformer_s_frame)")
    parser.add_argument("--av-model", help="audio: the audio-visual model (default: tiny -> tiny_av, "
                        "slowfast_r50 -> avslowfast_r50)")
    parser.add_argument("--no-audio-only", action="store_true", help="audio: skip the audio-only model")
    parser.add_argument("--check-report", metavar="JSON",
                        help="format: orientations from this `pmv data check` report.json instead of probing")
    parser.add_argument("--temporal-views", help="views: temporal view counts, default 1,3,5,7,10")


def recipe_paths(values: list[str]) -> list[Path]:
    """Recipe files; a folder stands for its recipes (``*.yaml`` not starting with ``_``), sorted."""
    from pmv.errors import ConfigError

    paths: list[Path] = []
    for value in values:
        path = Path(value)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.yaml") if not p.name.startswith("_"))
            if not found:
                raise ConfigError(f"{path} holds no recipes (*.yaml)")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise ConfigError(f"recipe not found: {path}")
    return paths


def _print_results(out: Path, names) -> None:
    for name in names:
        results = out / name / "results.json"
        if results.is_file():
            body = json.loads(results.read_text(encoding="utf-8"))
            print(f"{name}: {json.dumps(body.get('top1') if 'top1' in body else body.get('rows'))}")
            print(f"  report: {out / name / 'report.md'}")


def run(args: argparse.Namespace) -> int:
    from pmv.config import config_from_dict, load_config
    from pmv.errors import ConfigError
    from pmv.studies import STUDIES
    from pmv.studies.common import StudyRequest, is_main, with_overrides

    out = Path(args.out)
    # `--config RECIPE a.b=c`: argparse hands the overrides that follow --config to it; they are overrides.
    overrides = [v for v in args.config if "=" in v and not Path(v).exists()]
    args.config = [v for v in args.config if v not in overrides]
    args.overrides = list(args.overrides) + overrides
    if args.demo:
        from pmv.studies.runner import DemoOptions, run_demo, summary_tables

        options = DemoOptions(out_dir=str(out), device="cpu" if args.device == "auto" else args.device,
                              epochs=args.epochs, studies=STUDIES if args.name == "all" else (args.name,),
                              extra_overrides=list(args.overrides))
        if args.train_per_class:
            options.train_per_class = args.train_per_class
        if args.val_per_class:
            options.val_per_class = args.val_per_class
        if args.test_per_class:
            options.test_per_class = args.test_per_class
        outcomes = run_demo(options)
        if is_main():
            from pmv.studies.runner import collect_outcomes

            print(summary_tables(collect_outcomes(out, outcomes)))
            print(f"\nall results: {out / 'README.md'}")
        return 0
    if args.name == "all":
        raise ConfigError("`pmv study all` runs on the synthetic demo data only (add --demo); on real data run the "
                          "studies one by one, each with its recipe")
    recipes = recipe_paths(args.config)
    if recipes:
        configs = [(path.stem, load_config(path, args.overrides)) for path in recipes]
    elif args.checkpoint:  # the checkpoints' own configs (pmv checkpoints carry theirs)
        from pmv.engine.checkpointing import read_checkpoint

        configs = []
        for checkpoint in args.checkpoint:
            stored = read_checkpoint(checkpoint).get("config")
            if not isinstance(stored, dict):
                raise ConfigError(f"{checkpoint} holds no pmv config; pass --config RECIPE.yaml")
            configs.append((Path(checkpoint).stem, with_overrides(config_from_dict(stored), args.overrides)))
    else:
        raise ConfigError(f"`pmv study {args.name}` needs --config RECIPE.yaml (or --checkpoint)")
    if args.name != "augmentation" and len(configs) > 1 and args.name != "spatial-bias":
        raise ConfigError(f"`pmv study {args.name}` takes one recipe, got {len(configs)}")
    options = {"frame_model": args.frame_model, "av_model": args.av_model, "audio_only": not args.no_audio_only,
               "check_report": args.check_report}
    if args.temporal_views:
        try:
            options["temporal_views"] = [int(v) for v in args.temporal_views.split(",")]
        except ValueError:
            raise ConfigError(f"--temporal-views {args.temporal_views!r} must be comma-separated numbers") from None
    from pmv.studies.runner import run_study
    from pmv.engine import distributed

    request = StudyRequest(configs=configs, out_dir=out / args.name, runs_dir=out / "runs", device=args.device,
                           checkpoints=args.checkpoint, options=options)
    try:
        run_study(args.name, request)
    finally:
        distributed.cleanup()
    if is_main():
        _print_results(out, [args.name])
    return 0
