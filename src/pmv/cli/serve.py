"""`pmv serve --checkpoint CKPT [--host 127.0.0.1] [--port 8000]`: the HTTP API, the upload page and the taxonomy."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a pmv checkpoint or a PySlowFast/UniFormer file (with --config)")
    parser.add_argument("--config", help="recipe YAML (needed for foreign checkpoints)")
    parser.add_argument("--class-names", metavar="FILE", help="class_name_mapping.csv or one name per line")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to all)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--views", metavar="TxS", help="default views (default: the recipe's test views)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload accepted (413 above)")
    parser.add_argument("--queue", type=int, default=4, help="requests admitted at once; more get 503")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to decode and score an upload before answering 504")
    parser.add_argument("--tmp-dir", metavar="DIR", help="where uploads are written while scored (removed after)")
    parser.add_argument("--lists", metavar="DIR", help="folder with train.csv/val.csv/test.csv: counts per class")
    parser.add_argument("--report", metavar="DIR", help="a `pmv test` output folder: per-class accuracy and the "
                        "videos the model got right and wrong")
    parser.add_argument("--videos", metavar="DIR", help="where the report's videos are (default: their paths)")
    parser.add_argument("--ema", action="store_true", help="use the checkpoint's EMA weights")
    parser.add_argument("overrides", nargs="*", default=[], metavar="section.key=value", help="config overrides")


def run(args: argparse.Namespace) -> int:
    from pmv.errors import ConfigError

    try:
        import uvicorn

        from pmv.serve.app import ServeOptions, create_app
    except ImportError as err:
        raise ConfigError(f"pmv serve needs FastAPI and uvicorn ({err.name} is missing): pip install 'pmv[serve]'")
    from pmv.engine.predictor import Predictor

    if args.queue < 1 or args.max_upload_mb <= 0 or args.timeout <= 0:
        raise ConfigError("--queue must be at least 1, and --max-upload-mb and --timeout positive")
    predictor = Predictor.from_checkpoint(args.checkpoint, config_path=args.config, overrides=args.overrides,
                                          class_names=args.class_names, views=args.views, device=args.device,
                                          precision=args.precision, use_ema=args.ema)
    options = ServeOptions(max_upload_bytes=int(args.max_upload_mb * (1 << 20)), queue_size=args.queue,
                           timeout_s=args.timeout, tmp_dir=args.tmp_dir, lists_dir=args.lists,
                           report_dir=args.report, videos_dir=args.videos)
    app = create_app(predictor, options)
    print(f"pmv serve: {predictor.model_name} ({len(predictor.class_names)} classes, views {predictor.spec.views}) "
          f"on http://{args.host}:{args.port}/  (API docs: /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0
