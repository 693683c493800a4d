"""Several processes under torchrun: DistributedDataParallel with PyTorch's own engine.

Each rank holds the whole training set, walks the same seeded permutation and takes its
own slice of every global batch, so `--batch-size` is the global batch whatever the
number of processes (and the learning rate needs no rescaling). Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sparta.errors import SpartaError


@dataclass(frozen=True)
class Ranks:
    """This process's rank, the world size and its local rank (one process: 0, 1, 0)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """Whether torchrun started several processes (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun set up (nccl on CUDA, gloo on CPU)."""
    if not launched_by_torchrun():
        return Ranks(), device
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ranks, device


def stop(ranks: Ranks) -> None:
    """Leave the process group at the end of a distributed run."""
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard(x: torch.Tensor, y: torch.Tensor, ranks: Ranks) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's contiguous slice of a global batch."""
    if not ranks.distributed:
        return x, y
    if len(y) % ranks.world_size:
        raise SpartaError(f"batch size {len(y)} is not divisible by the {ranks.world_size} processes")
    size = len(y) // ranks.world_size
    part = slice(ranks.rank * size, (ranks.rank + 1) * size)
    return x[part], y[part]


def wrap(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """The DDP module that training steps go through (attacks use the bare model)."""
    if not ranks.distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def sum_across(values: list[float], ranks: Ranks, device: torch.device) -> list[float]:
    """The values summed over all ranks (unchanged in one process)."""
    if not ranks.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(ranks: Ranks) -> None:
    """Wait until every rank reaches this point (nothing to wait for in one process)."""
    if ranks.distributed:
        dist.barrier()
