"""`pmv predict --checkpoint CKPT PATH...`: top-k classes of videos (files, folders or list files).

Writes JSON Lines to stdout (default) or to ``--out`` (``.jsonl``/``.json`` or ``.csv``). A file that cannot be
read gets a row with its error and the run goes on; the exit code is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="video files, folders of videos, or .txt/.csv lists of paths (one per line)")
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a pmv checkpoint (config and class names stored) or a PySlowFast/UniFormer file")
    parser.add_argument("--config", help="recipe YAML (needed for foreign checkpoints)")
    parser.add_argument("--class-names", metavar="FILE",
                        help="class names: class_name_mapping.csv ('name,id' lines) or one name per line")
    parser.add_argument("--root", metavar="DIR", help="folder that relative paths in list files are under (default: "
                        "the list file's folder); e.g. data.root for PMV-400's test.csv")
    parser.add_argument("--views", metavar="TxS", help="temporal x spatial views, e.g. 1x1, 5x3 (default: the "
                        "recipe's test views; 3 spatial crops sit along the long side)")
    parser.add_argument("--top-k", type=int, default=5, metavar="K", help="classes per video (default 5)")
    parser.add_argument("--per-view", action="store_true", help="also write each view's top-k")
    parser.add_argument("--out", metavar="FILE", help="write here instead of stdout: .jsonl (JSON Lines) or .csv")
    parser.add_argument("--format", choices=["jsonl", "csv"], help="output format (default: from --out, else jsonl)")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes (0 = decode in this process)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="section.key=value",
                        help="a config override (repeatable), e.g. --set test.aggregation=logits_sum")


def _output_format(args) -> str:
    if args.format:
        return args.format
    return "csv" if args.out and args.out.lower().endswith(".csv") else "jsonl"


def run(args: argparse.Namespace) -> int:
    from pmv.engine.predictor import Predictor, PredictError, expand_inputs
    from pmv.utils import atomic_output

    if args.top_k < 1:
        raise PredictError(f"--top-k must be at least 1, got {args.top_k}")
    paths = expand_inputs(args.paths, root=args.root)
    predictor = Predictor.from_checkpoint(args.checkpoint, config_path=args.config, overrides=args.overrides,
                                          class_names=args.class_names, views=args.views, device=args.device,
                                          precision=args.precision, use_ema=args.ema)
    fmt = _output_format(args)
    results = predictor.predict_many(paths, top_k=args.top_k, views=None, per_view=args.per_view,
                                     workers=args.workers, progress=sys.stderr.isatty() or args.out is not None)
    failed = 0
    if args.out:
        with atomic_output(args.out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
            failed = _write(results, handle, fmt, args.top_k)
        print(f"{len(paths)} video(s), {failed} failed: {args.out}", file=sys.stderr)
    else:
        failed = _write(results, sys.stdout, fmt, args.top_k)
    if failed:
        print(f"pmv: {failed} of {len(paths)} video(s) could not be read (see their 'error')", file=sys.stderr)
    return 1 if failed else 0


def _write(results, handle: io.TextIOBase, fmt: str, top_k: int) -> int:
    failed = 0
    writer = None
    for result in results:
        failed += not result.ok
        if fmt == "csv":
            row = result.csv_row(top_k)
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
        else:
            handle.write(json.dumps(result.to_dict()) + "\n")
        handle.flush()
    return failed
