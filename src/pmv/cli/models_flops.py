"""`pmv models flops NAME [--input 16x224x224]`: parameters and GFLOPs of one view.

GFLOPs are multiply-accumulates / 1e9, the convention of PySlowFast/fvcore model zoos and papers; PyTorch's
FlopCounterMode counts 2 FLOPs per multiply-accumulate, so its total is divided by 2.
"""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="a registered model (see `pmv models list`)")
    parser.add_argument(
        "--input", default="16x224x224", metavar="TxHxW",
        help="clip size of one view, frames x height x width (default 16x224x224; e.g. 16x256x192 portrait)",
    )
    parser.add_argument("--num-classes", type=int, default=400, help="classes of the head (default 400)")
    parser.add_argument("--by-op", action="store_true", help="also list FLOPs per operator")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    from pmv.models.flops import model_flops, parse_input_size

    size = parse_input_size(args.input)
    report = model_flops(args.name, size, num_classes=args.num_classes)
    if args.json:
        print(json.dumps({
            "model": report.model,
            "input": list(report.input_size),
            "params": report.params,
            "gflops_mac": report.gflops,
            "flops_counted": report.flops,
            "by_operator": report.by_operator,
        }, indent=2))
        return 0
    t, h, w = report.input_size
    print(f"model      {report.model}")
    print(f"input      {t}x{h}x{w} (T x H x W), batch 1, one view")
    print(f"params     {report.params_m:.2f} M ({report.params:,})")
    print(f"GFLOPs     {report.gflops:.2f}  (multiply-accumulates / 1e9, as PySlowFast/fvcore report;"
          f" FlopCounterMode counted {report.flops / 1e9:.2f} G at 2 per MAC)")
    if args.by_op:
        for op, count in sorted(report.by_operator.items(), key=lambda item: -item[1]):
            print(f"  {op:<28} {count / 2 / 1e9:.3f} GMAC")
    return 0
