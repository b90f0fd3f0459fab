"""Model throughput on this machine's CPU: batch 1, 16 frames, portrait and square crops.

    .venv/bin/python benchmarks/models.py                          # every registered model (about 10 minutes)
    .venv/bin/python benchmarks/models.py --models x3d_m,tiny      # a subset
    .venv/bin/python benchmarks/models.py --sizes 256x192 --frames 8
    .venv/bin/python benchmarks/models.py --bf16-attention          # MViTv2-S, UniFormer-S: bf16 paths only

Per model and crop (H x W) it measures, in one process and on the same inputs:

* forward clips/s in fp32 (eval, no grad) and under bf16 autocast (ratio bf16/fp32 as a column);
* train-step clips/s (forward, cross-entropy, backward, SGD step; fp32);
* for attention models that offer ``set_attention_impl`` (MViTv2, UniFormer): forward clips/s with the fused
  ``scaled_dot_product_attention`` against the explicit ``softmax(QK^T)V`` path (ratio SDPA/math), in fp32 and
  under bf16 autocast, where a second table sets the path the models choose by default (``attention_impl="auto"``:
  explicit on CPU in bf16) against both.

Each function gets one warm-up call; the forward variants of a model are then timed round-robin (so all see the
same machine load and their ratios hold on a busy machine) until each has run ``--min-seconds`` (at most
``--max-iters`` rounds). Clips per second = calls / seconds (batch 1). ``--threads 1`` gives steadier numbers on a
shared machine.
SlowFast-family models get ``--frames`` Fast frames (the Slow pathway is T / alpha inside). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import gc
import platform
import time

import torch
import torch.nn.functional as F

from pmv.models import create_model, list_models
from pmv.models.flops import input_spec_of, parse_input_size


def interleaved_rates(fns: dict, min_seconds: float, max_iters: int) -> dict[str, float]:
    """Calls per second of each function, timed round-robin (after one warm-up call each).

    Interleaving puts every variant under the same machine load, so their ratios hold even on a busy machine.
    """
    for fn in fns.values():
        fn()
    elapsed = dict.fromkeys(fns, 0.0)
    rounds = 0
    while rounds < max_iters and (rounds == 0 or min(elapsed.values()) < min_seconds):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            elapsed[key] += time.perf_counter() - start
        rounds += 1
    return {key: rounds / seconds for key, seconds in elapsed.items()}


def bench_model(name: str, frames: int, height: int, width: int, args) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=400, input_size=(frames, height, width))
    inputs = input_spec_of(model).example_inputs(batch=1, input_size=(frames, height, width))
    row = {"model": name, "input": f"{frames}x{height}x{width}"}

    model.eval()

    def forward():
        with torch.no_grad():
            model(*inputs)

    def forward_bf16():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(*inputs)

    variants = {"fwd_fp32": forward, "fwd_bf16": forward_bf16}
    if hasattr(model, "set_attention_impl"):
        def forward_with(impl, run_forward=forward):
            def run():
                model.set_attention_impl(impl)
                run_forward()
                model.set_attention_impl("auto")
            return run

        variants.update(fwd_sdpa=forward_with("sdpa"), fwd_math=forward_with("math"),
                        bf16_sdpa=forward_with("sdpa", forward_bf16), bf16_math=forward_with("math", forward_bf16))
    if args.bf16_attention:
        variants = {key: variants[key] for key in ("fwd_bf16", "bf16_sdpa", "bf16_math") if key in variants}
    row.update(interleaved_rates(variants, args.min_seconds, args.max_iters))
    if args.bf16_attention:
        return row

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    target = torch.zeros(1, dtype=torch.long)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(*inputs), target)
        loss.backward()
        optimizer.step()

    row["train"] = interleaved_rates({"train": train_step}, args.min_seconds, args.max_iters)["train"]
    del model, optimizer
    gc.collect()
    return row


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="", help="comma-separated model names (default: all registered)")
    parser.add_argument("--sizes", default="224x224,256x192", help="comma-separated crops H x W")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (Fast frames for SlowFast models)")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="time each measurement at least this long")
    parser.add_argument("--max-iters", type=int, default=5, help="at most this many timed calls per measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--bf16-attention", action="store_true",
                        help="only the bf16 forwards of the attention models: chosen path vs SDPA vs explicit")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.models.split(",") if n.strip()] or list_models()
    if args.bf16_attention and not args.models:
        names = ["mvitv2_s", "uniformer_s"]
    sizes = [parse_input_size(f"{args.frames}x{s}") for s in args.sizes.split(",") if s.strip()]

    print(f"# Model throughput, batch 1, CPU ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})\n")
    if not args.bf16_attention:
        print("| model | input TxHxW | fwd fp32 clips/s | fwd bf16 clips/s | bf16 / fp32 | train step clips/s "
              "| fwd SDPA clips/s | fwd math clips/s | SDPA / math |")
        print("|---|---|---|---|---|---|---|---|---|")
    attention_rows = []
    for name in names:
        for frames, height, width in sizes:
            row = bench_model(name, frames, height, width, args)
            if "bf16_sdpa" in row:
                attention_rows.append(row)
            if args.bf16_attention:
                continue
            sdpa, math_ = row.get("fwd_sdpa"), row.get("fwd_math")
            print(
                f"| {row['model']} | {row['input']} | {fmt(row['fwd_fp32'])} | {fmt(row['fwd_bf16'])} "
                f"| {fmt(row['fwd_bf16'] / row['fwd_fp32'])} | {fmt(row['train'])} | {fmt(sdpa)} | {fmt(math_)} "
                f"| {fmt(sdpa / math_ if sdpa and math_ else None)} |",
                flush=True,
            )
    if attention_rows:
        print("\nForwards under bf16 autocast on CPU: the path the models choose (auto) against SDPA and the explicit "
              "path, same process, interleaved\n")
        print("| model | input TxHxW | chosen (auto) clips/s | SDPA clips/s | explicit clips/s | chosen / SDPA "
              "| chosen / explicit |")
        print("|---|---|---|---|---|---|---|")
        for row in attention_rows:
            auto, sdpa, math_ = row["fwd_bf16"], row["bf16_sdpa"], row["bf16_math"]
            print(f"| {row['model']} | {row['input']} | {fmt(auto)} | {fmt(sdpa)} | {fmt(math_)} | {fmt(auto / sdpa)} "
                  f"| {fmt(auto / math_)} |")


if __name__ == "__main__":
    main()
