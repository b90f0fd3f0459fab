"""Data loaders: reproducible worker seeding, distributed sampling, and a collate that flattens repeated
augmentation.

Randomness: the loader's own generator is seeded from ``seed`` and the process rank, so shuffling and each
worker's seed (``torch.initial_seed()`` in a worker = a draw from that generator + worker id) are reproducible.
Every worker seeds ``torch``, ``numpy`` and ``random`` with its seed and gives the dataset a private generator from
it; with ``num_workers=0`` the dataset gets one seeded from ``seed`` and the rank. Under ``torch.distributed`` the
loader uses a :class:`DistributedSampler` (seeded with ``seed``); call ``loader.sampler.set_epoch(epoch)`` (or
:func:`set_epoch`) at the start of every epoch so each epoch shuffles differently.
"""

from __future__ import annotations

import random
import signal
from typing import Any, Callable, Optional

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, get_worker_info

RANK_STRIDE = 1_000_003  # keeps the seeds of different ranks apart


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _init_worker(worker_id: int) -> None:
    """Runs in each worker: one thread (torch and OpenCV: the workers are the parallelism), every RNG seeded, and
    stop signals left to the main process (which finishes its step and checkpoints; a worker killed by Ctrl-C would
    break that)."""
    for name in ("SIGINT", "SIGTERM", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    info = get_worker_info()
    seed = info.seed if info is not None else torch.initial_seed()
    _seed_all(seed)
    dataset = info.dataset if info is not None else None
    if dataset is not None and hasattr(dataset, "generator"):
        dataset.generator = torch.Generator().manual_seed(seed)


def _stack(values: list) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(values)
    if isinstance(first, bool):
        return torch.tensor(values, dtype=torch.bool)
    if isinstance(first, int):
        return torch.tensor(values, dtype=torch.long)
    if isinstance(first, float):
        return torch.tensor(values, dtype=torch.float32)
    return list(values)


def collate_clips(items: list[dict]) -> dict:
    """Stack a list of dataset items into a batch dict.

    Repeated augmentation (items whose ``clip`` is ``N x C x T x H x W``) is flattened to ``B*N`` clips, with
    every per-video value (``label``, ``index``, ``audio``...) repeated N times, each video's N clips adjacent.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch = {key: _stack([item[key] for item in items]) for key in items[0]}
    clip = batch.get("clip")
    if isinstance(clip, torch.Tensor) and clip.dim() == 6:  # B x N x C x T x H x W
        repeats = clip.shape[1]
        batch["clip"] = clip.flatten(0, 1)
        for key, value in batch.items():
            if key == "clip":
                continue
            if isinstance(value, torch.Tensor):
                batch[key] = value.repeat_interleave(repeats, dim=0)
            else:
                batch[key] = [v for v in value for _ in range(repeats)]
    return batch


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    drop_last: bool = False,
    sampler: Optional[Sampler] = None,
    collate_fn: Optional[Callable] = None,
    persistent_workers: bool = True,
) -> DataLoader:
    """A DataLoader with reproducibly seeded workers (see the module notes)."""
    rank = _rank()
    if sampler is None and dist.is_available() and dist.is_initialized():
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
    generator = torch.Generator().manual_seed(seed + RANK_STRIDE * rank)
    if num_workers == 0 and hasattr(dataset, "generator"):
        dataset.generator = torch.Generator().manual_seed(seed + RANK_STRIDE * rank + 1)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn or collate_clips,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        worker_init_fn=_init_worker if num_workers > 0 else None,
        generator=generator,
        persistent_workers=persistent_workers and num_workers > 0,
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell a distributed sampler which epoch starts (a no-op for other samplers)."""
    set_sampler_epoch = getattr(loader.sampler, "set_epoch", None)
    if callable(set_sampler_epoch):
        set_sampler_epoch(epoch)
