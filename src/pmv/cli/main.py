"""`pmv` entry point.

Commands are listed in one table and their modules imported only when run, so `pmv --help` stays fast. A
command module defines ``configure(parser)`` (adds its arguments) and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from dataclasses import dataclass

import pmv
from pmv.errors import PmvError


@dataclass(frozen=True)
class Command:
    group: str | None  # None: a top-level command such as `pmv train`
    name: str
    module: str
    help: str


# One line per command; keep the table sorted by group, then name.
COMMANDS: list[Command] = [
    Command(None, "demo", "pmv.cli.demo", "synthesise a small portrait dataset, train the tiny model on the CPU, test it"),
    Command(None, "export", "pmv.cli.export", "export a checkpoint to ONNX, TorchScript or torch.export, verified, with pmv.json"),
    Command(None, "predict", "pmv.cli.predict", "top-k classes of videos (files, folders, lists) with the test views"),
    Command(None, "serve", "pmv.cli.serve", "HTTP API and web page (upload a video, see top-5 and crops; taxonomy)"),
    Command(None, "study", "pmv.cli.study", "the paper's six studies (format, spatial-bias, augmentation, views, temporal, audio); `all --demo` on a CPU"),
    Command(None, "test", "pmv.cli.test", "multi-view test of a checkpoint: top-1/top-5, per-class CSV, confusion matrix"),
    Command(None, "train", "pmv.cli.train", "train a model from a recipe (one process, or many under torchrun)"),
    Command(None, "download", "pmv.cli.download", "download PMV-400 videos (or import a mirror), verified and resumable"),
    Command("config", "show", "pmv.cli.config_show", "print a recipe's resolved config (+ overrides), each key with its help"),
    Command("data", "check", "pmv.cli.data_check", "probe every listed video: missing, broken, too short, orientation; cleaned lists"),
    Command("data", "fetch-annotations", "pmv.cli.data_fetch", "download and verify the PMV-400 lists and class names"),
    Command("data", "prepare", "pmv.cli.data_prepare", "re-encode videos upright, smaller, short GOP (H.264), audio kept"),
    Command("data", "preview", "pmv.cli.data_preview", "draw sampled training clips after augmentation to a PNG"),
    Command("data", "probe", "pmv.cli.data_probe", "print the metadata of video files (no decoding)"),
    Command("data", "synth", "pmv.cli.data_synth", "write a synthetic portrait-mode dataset (real mp4 files)"),
    Command("models", "flops", "pmv.cli.models_flops", "parameters and GFLOPs (multiply-accumulates) of one view of a model"),
    Command("models", "list", "pmv.cli.models_list", "the model zoo with parameter counts at 400 classes"),
]

GROUP_HELP = {
    "config": "inspect recipes: the resolved config with each key's meaning",
    "data": "get, check, prepare and inspect video data",
    "models": "list the model zoo, count parameters and FLOPs",
}


def _configure_lazily(parser: argparse.ArgumentParser, command: Command) -> None:
    module = importlib.import_module(command.module)
    module.configure(parser)
    parser.set_defaults(_module=module)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pmv", description="Video recognition on portrait-mode (vertical, 9:16) short videos."
    )
    parser.add_argument("--version", action="version", version=f"pmv {pmv.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    # Only the command being run has its module imported (and its arguments added).
    wanted = [a for a in argv if not a.startswith("-")][:2]
    for command in COMMANDS:
        if command.group is None:
            sub = top.add_parser(command.name, help=command.help, description=command.help)
            if wanted[:1] == [command.name]:
                _configure_lazily(sub, command)
            continue
        if command.group not in groups:
            group_parser = top.add_parser(command.group, help=GROUP_HELP.get(command.group, ""))
            groups[command.group] = group_parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
            group_parser.set_defaults(_group_parser=group_parser)
        sub = groups[command.group].add_parser(command.name, help=command.help, description=command.help)
        if wanted == [command.group, command.name]:
            _configure_lazily(sub, command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    # Under torchrun only rank 0 speaks; other ranks report problems.
    quiet_rank = os.environ.get("RANK", "0").strip() not in ("", "0")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet_rank else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    module = getattr(args, "_module", None)
    if module is None:
        (getattr(args, "_group_parser", None) or parser).print_help()
        return 0 if args.command is None else 2
    try:
        return int(module.run(args) or 0)
    except PmvError as err:
        print(f"pmv: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pmv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
