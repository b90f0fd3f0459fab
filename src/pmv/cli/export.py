"""`pmv export --checkpoint CKPT --format onnx|torchscript|exported --out DIR`: a checked, self-describing export."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a pmv checkpoint or a PySlowFast/UniFormer file (with --config)")
    parser.add_argument("--format", required=True, choices=["onnx", "torchscript", "exported"],
                        help="onnx (model.onnx), torchscript (model.torchscript.pt) or exported (torch.export .pt2)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the model file and pmv.json")
    parser.add_argument("--config", help="recipe YAML (needed for foreign checkpoints)")
    parser.add_argument("--class-names", metavar="FILE", help="class_name_mapping.csv or one name per line")
    parser.add_argument("--views", metavar="TxS", help="the views recorded in pmv.json (default: the recipe's)")
    parser.add_argument("--video", metavar="PATH", help="a video to check the export on (default: a synthetic one)")
    parser.add_argument("--onnx-exporter", default="auto", choices=["auto", "dynamo", "legacy"],
                        help="torch.onnx exporter: dynamo (torch.export based, needs onnxscript), legacy "
                        "(TorchScript based), or auto (dynamo, then legacy if it fails; default)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    parser.add_argument("--ema", action="store_true", help="export the checkpoint's EMA weights")
    parser.add_argument("overrides", nargs="*", default=[], metavar="section.key=value",
                        help="config overrides, e.g. test.crop=[256,192]")


def run(args: argparse.Namespace) -> int:
    from pmv.engine.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.format, args.out, config_path=args.config,
                               overrides=args.overrides, class_names=args.class_names, views=args.views,
                               video=args.video, use_ema=args.ema, onnx_exporter=args.onnx_exporter,
                               opset=args.opset)
    how = f" with the {result.onnx_exporter} exporter" if result.onnx_exporter else ""
    print(f"exported {args.format}{how}: {result.model_path} ({result.model_path.stat().st_size / 1e6:.2f} MB)")
    print(f"checked with {result.checked_with} on a batch of {result.check_batch} real clips: max abs diff "
          f"{result.max_abs_diff:.3g} vs eager PyTorch")
    print(f"manifest: {result.manifest_path}  ({result.seconds:.1f} s)")
    return 0
