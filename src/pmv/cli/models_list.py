"""`pmv models list [--json]`: the registered models with their parameter count at 400 classes."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-classes", type=int, default=400, help="classes of the head (default 400, PMV-400)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def run(args: argparse.Namespace) -> int:
    from pmv.models import list_models
    from pmv.models.flops import parameter_count

    records = []
    for name in list_models():
        params = parameter_count(name, num_classes=args.num_classes)
        records.append({"name": name, "params": params})
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    rows = [["model", f"params ({args.num_classes} classes)"]]
    rows += [[r["name"], f"{r['params'] / 1e6:.2f} M ({r['params']:,})"] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
