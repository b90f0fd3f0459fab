"""`pmv config show RECIPE [section.key=value ...]`: the resolved config, each key with its help and seed option."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import yaml

SMOKE_OVERLAY = "configs/smoke.yaml"
_COMMENT_COLUMN = 40


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", nargs="?",
                        help="recipe YAML, e.g. configs/pmv400/x3d_m/default.yaml (none: the schema defaults)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides, as for pmv train")
    parser.add_argument("--smoke", action="store_true", help=f"stack {SMOKE_OVERLAY} on the recipe, as pmv train --smoke")
    parser.add_argument("--yaml", action="store_true", help="plain YAML without the help comments (a loadable recipe)")


def _value(key: str, value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1_000_000).strip()
    return f"{key}: {text.removesuffix('...').strip()}"  # a scalar document ends with "..."


def annotated_yaml(config) -> str:
    """The config as YAML with each section's and key's help as comments (still loadable YAML)."""
    from pmv.config.checks import describe

    lines = []
    for section in dataclasses.fields(config):
        lines.append(f"{section.name}:".ljust(_COMMENT_COLUMN - 2) + f"  # {section.metadata.get('help', '')}")
        part = getattr(config, section.name)
        for f in dataclasses.fields(part):
            text = "  " + _value(f.name, getattr(part, f.name))
            about = describe(type(part), f.name)
            lines.append(f"{text.ljust(_COMMENT_COLUMN - 2)}  # {about}" if about else text)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pmv.config import dump_config, load_config, shipped_config

    recipe, overrides = args.recipe, list(args.overrides)
    if recipe and "=" in recipe and not Path(recipe).exists():  # `pmv config show train.epochs=3`: defaults + overrides
        recipe, overrides = None, [recipe, *overrides]
    overlays = [shipped_config(SMOKE_OVERLAY)] if args.smoke else []
    config = load_config(recipe, overrides, overlays=overlays)
    if args.yaml:
        print(dump_config(config), end="")
        return 0
    layers = [recipe or "(defaults)", *map(str, overlays)] + (["overrides: " + " ".join(overrides)] if overrides else [])
    print("# " + " + ".join(layers))
    print(annotated_yaml(config))
    return 0
