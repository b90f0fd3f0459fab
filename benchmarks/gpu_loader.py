"""Can the data loader feed a GPU? Clips/s loaded by N workers vs clips/s an MViTv2-S bf16 train step consumes.

The MViTv2-S ``rect_256x192`` recipe's training clips (16 frames at stride 4, jitter [256, 320] with auto-adjust,
crop 256x192, RandAugment m7-n4, erasing 0.25, two augmented copies per decode) from 720x1280 phone-like videos,
and from the same videos after ``pmv data prepare --short-side 320 --gop 16``. The GPU side is the train step
(forward, backward, AdamW step) of MViTv2-S under bf16 autocast on random clips of the same shape, measured in the
same run. Prints one table; a loader rate below the GPU rate means the GPU would wait for data.

    python benchmarks/gpu_loader.py [--workers 8,16] [--videos 8] [--batch 8] [--dir /tmp/pmv-gpu-loader]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from loader import TRANSFORM, make_videos  # noqa: E402

from pmv.acquire.prepare import PrepareOptions, prepare_videos  # noqa: E402
from pmv.data.dataset import build_train_dataset  # noqa: E402
from pmv.engine.distributed import ShardedSampler  # noqa: E402
from pmv.data.loader import build_loader  # noqa: E402
from pmv.models import create_model  # noqa: E402


def prepared_copy(data, folder: Path):
    """The dataset re-encoded by ``pmv data prepare`` (short side 320, a keyframe every 16 frames)."""
    out = folder / "prepared"
    prepare_videos(data.root, out / "videos", PrepareOptions(short_side=320, gop=16), workers=8, progress=False)
    for name in ("train.csv", "class_name_mapping.csv"):
        (out / name).write_text((Path(data.list_dir) / name).read_text())
    return replace(data, list_dir=str(out), root=str(out / "videos"))


def loader_rate(data, workers: int, batch: int, batches: int) -> float:
    """Decoded clips per second (each gives ``num_sample`` augmented copies) once the workers are warm."""
    dataset = build_train_dataset(data, TRANSFORM)
    sampler = ShardedSampler(len(dataset), shuffle=True, seed=0, drop_last=False, item_seeds=True)
    keys = [key for epoch in range(1000) for key in (sampler.set_epoch(epoch) or list(sampler))]
    loader = build_loader(dataset, batch_size=batch, shuffle=False, num_workers=workers, seed=0, sampler=keys,
                          persistent_workers=False)
    iterator = iter(loader)
    for _ in range(workers):  # every worker has produced a batch
        next(iterator)
    start = time.perf_counter()
    clips = sum(b["clip"].shape[0] // TRANSFORM.num_sample for b, _ in zip(iterator, range(batches)))
    return clips / (time.perf_counter() - start)


def gpu_rate(batch: int, steps: int) -> float:
    """Decoded clips per second the MViTv2-S bf16 train step consumes (``num_sample`` copies per clip)."""
    device = torch.device("cuda")
    model = create_model("mvitv2_s", num_classes=400, input_size=(16, 256, 192)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    clips = torch.randn(batch * TRANSFORM.num_sample, 3, 16, 256, 192, device=device)
    labels = torch.randint(0, 400, (clips.shape[0],), device=device)
    for step in range(steps + 3):
        if step == 3:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(clips).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="8,16")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--batch", type=int, default=8, help="decoded clips per batch (x num_sample copies)")
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--dir", default="/tmp/pmv-gpu-loader")
    args = parser.parse_args()
    folder = Path(args.dir)
    original = make_videos(folder, args.videos, args.seconds, gop=250)
    prepared = prepared_copy(original, folder)
    consumed = gpu_rate(args.batch, steps=10) if torch.cuda.is_available() else float("nan")
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"| videos | workers | loaded clips/s | GPU consumes clips/s ({name}, MViTv2-S bf16 step) | loaded / consumed |")
    print("|---|---:|---:|---:|---:|")
    for label, data in (("original 720x1280, GOP 250", original), ("prepared, short side 320, GOP 16", prepared)):
        for workers in [int(w) for w in args.workers.split(",")]:
            loaded = loader_rate(data, workers, args.batch, args.batches)
            print(f"| {label} | {workers} | {loaded:.1f} | {consumed:.1f} | {loaded / consumed:.2f} |", flush=True)


if __name__ == "__main__":
    main()
