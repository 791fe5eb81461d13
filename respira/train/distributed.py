"""Distributed data parallel under `torchrun`: one process per device, gloo on CPU, nccl on CUDA.

Without torchrun (WORLD_SIZE unset or 1) everything here is a no-op on one process, so the
training loop is the same code in both cases. Rank 0 alone writes files and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from respira.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place: rank of world processes, and the device it trains on."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0


def setup(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun (env WORLD_SIZE > 1); pick the device.

    device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N". Under torchrun
    each process takes cuda:LOCAL_RANK.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {device!r} asked for, but CUDA is not available here")
    if cuda and world > 1 and local >= torch.cuda.device_count():
        raise ConfigError(f"train.device: process {local} of {world} has no GPU of its own "
                          f"({torch.cuda.device_count()} visible); start fewer processes or use train.device=cpu")
    if cuda:
        chosen = torch.device("cuda", local) if world > 1 or device in ("auto", "cuda") else torch.device(device)
        torch.cuda.set_device(chosen)
    else:
        chosen = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank=rank, world=world, device=chosen)


def teardown(dist: Dist) -> None:
    """Leave the process group (after a barrier, so no rank exits while another still talks)."""
    if dist.world > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def wrap(model: nn.Module, dist: Dist) -> nn.Module:
    """The model as DistributedDataParallel when there are several processes, else as is."""
    if dist.world == 1:
        return model
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(order: np.ndarray, dist: Dist) -> np.ndarray:
    """This rank's share of an epoch's sample order: every world-th item from rank, after
    repeating items so all ranks get the same count (what DistributedSampler does)."""
    if dist.world == 1:
        return order
    total = -(-len(order) // dist.world) * dist.world
    padded = np.resize(order, total)
    return padded[dist.rank :: dist.world]


def sync_buffers(model: nn.Module, dist: Dist) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if dist.world == 1:
        return
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer, src=0)


def any_rank(flag: bool, dist: Dist) -> bool:
    """Whether `flag` is set on any process (all processes must call this together)."""
    if dist.world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=dist.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)
