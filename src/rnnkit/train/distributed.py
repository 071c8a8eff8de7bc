"""Data parallelism through torchrun and DistributedDataParallel: nothing home-made.

``torchrun --nproc_per_node N -m rnnkit train ...`` sets RANK, LOCAL_RANK and WORLD_SIZE; each
process then takes its share of the global batch, DDP averages the gradients, and rank 0 alone
writes logs and checkpoints. The backend is gloo on the CPU and nccl on GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_environment(cls) -> Distributed:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        return cls(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module to train with: ``model`` itself, or ``model`` in DDP across processes."""
        if self.world_size == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def all_reduce_sums(self, sums: dict[str, float], device: torch.device) -> dict[str, float]:
        """Add up per-process sums (e.g. total loss and token count) over all processes."""
        if self.world_size == 1:
            return sums
        keys = sorted(sums)
        values = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(values)
        return dict(zip(keys, values.tolist(), strict=True))

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def shutdown(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
