"""Process groups through ``torchrun``, collective helpers, and the resumable sharded sampler.

``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and the rendezvous address; without it pmv runs
as a single process and every helper here degrades to a no-op. NCCL is used on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from pmv.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def num_nodes(self) -> int:
        """Machines in the job, the seed's NUM_SHARDS (what its LR scaling counts)."""
        return max(1, self.world_size // max(1, self.local_world_size))


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


_INFO: DistInfo | None = None


def setup(device: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group when there is one, and pick this process's device (once per process:
    later calls return the same answer).

    ``device``: ``auto`` (this rank's GPU when CUDA is available, else CPU), ``cpu`` or ``cuda``.
    """
    global _INFO
    if _INFO is not None and (device == "auto" or _INFO.device.type == device.split(":")[0]):
        return _INFO
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ConfigError(f"--device {device!r} is not one of auto, cpu, cuda")
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        build = "this PyTorch build has no CUDA support" if torch.version.cuda is None else "no GPU is visible"
        raise ConfigError(f"--device {device}: {build} (torch {torch.__version__}); install a CUDA build of "
                          "PyTorch on a GPU machine (README, 'On a GPU machine'), or use --device cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        log.info("rank %d/%d joined the %s process group", rank, world_size, backend)
    _INFO = DistInfo(rank, world_size, local_rank, local_world_size, dev)
    return _INFO


def cleanup() -> None:
    """Leave the process group after every rank got here (so no rank tears down while another still talks)."""
    global _INFO
    _INFO = None
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def _all_reduce(values, op, device: torch.device | None) -> torch.Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float64)
    if is_dist():
        if dist.get_backend() == "nccl":
            tensor = tensor.to(device or torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(tensor, op=op)
    return tensor.cpu()


def all_reduce_sum(values: Sequence[float] | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Sum a vector of numbers over all ranks (float64, so counts stay exact)."""
    return _all_reduce(values, dist.ReduceOp.SUM, device)


def all_reduce_max(values: Sequence[float] | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Element-wise maximum over all ranks."""
    return _all_reduce(values, dist.ReduceOp.MAX, device)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list without a process group)."""
    if not is_dist():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


@torch.no_grad()
def max_param_difference(model: torch.nn.Module) -> float:
    """The largest absolute difference between this rank's parameters and rank 0's (0.0 when single-process).

    A cheap end-of-run check that data-parallel replicas stayed in sync.
    """
    if not is_dist():
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max().reshape(1) if flat.numel() else torch.zeros(1, device=flat.device)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for (run seed, epoch, item) (SplitMix64 finaliser over the three)."""
    value = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & (2**64 - 1)
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & (2**64 - 1)
    value ^= value >> 31
    return value >> 1


class ShardedSampler(Sampler):
    """A deterministic, resumable sampler that splits a dataset over ranks.

    Each epoch's order is a permutation drawn from ``seed + epoch`` (identical on every rank, independent of the
    global RNG), then rank ``r`` takes positions ``r, r + world, ...``.

    * ``drop_last=True`` (training): the tail that does not fill every rank equally is dropped, so all ranks run the
      same number of steps;
    * ``drop_last=False`` (evaluation): nothing is padded or repeated; ranks may get one item more or less, and the
      gathered predictions cover every item exactly once.

    ``start_at(n)`` skips this rank's first ``n`` items of the current epoch: a run resumed mid-epoch continues with
    exactly the batches it had not yet consumed.

    ``item_seeds=True`` yields ``(index, seed)`` keys: the seed of an item's augmentation is a function of (``seed``,
    epoch, index) alone, so items do not depend on which worker makes them, and a resumed run (with any number of
    workers) draws the same augmentations as an uninterrupted one.
    """

    def __init__(
        self,
        dataset_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        item_seeds: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.dataset_size = dataset_size
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.item_seeds = item_seeds
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.start = 0

    def start_at(self, items_consumed: int) -> None:
        self.start = max(0, items_consumed)

    def _order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=generator).tolist()
        else:
            order = list(range(self.dataset_size))
        if self.drop_last:
            order = order[: self.dataset_size - self.dataset_size % self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator:
        order = self._order()[self.start :]
        if self.item_seeds:
            return iter([(index, item_seed(self.seed, self.epoch, index)) for index in order])
        return iter(order)

    def __len__(self) -> int:
        if self.drop_last:
            per_rank = self.dataset_size // self.world_size
        else:
            per_rank = len(range(self.rank, self.dataset_size, self.world_size))
        return max(0, per_rank - self.start)
