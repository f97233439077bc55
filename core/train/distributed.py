"""``torchrun`` / DistributedDataParallel plumbing (one process per GPU, NCCL).

``dvsapp train`` run by ``torchrun --nproc_per_node=N`` finds ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment and joins the process
group; run plainly it is a single process.  NVLink multicast stays off
(``NCCL_NVLS_ENABLE=0`` and friends are set unless the caller set them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: environment defaults that keep NVLink multicast off in NCCL, PyTorch and NVSHMEM
NO_MULTICAST_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(device: str = "auto", local_rank: int = 0) -> str:
    """``"auto"`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``."""
    import torch

    if device == "auto":
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return f"cuda:{local_rank}"
    return device


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when started by ``torchrun``; otherwise a world of one."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    if world > 1 and not dist.is_initialized():
        for key, value in NO_MULTICAST_ENV.items():
            os.environ.setdefault(key, value)
        if dev.startswith("cuda"):
            torch.cuda.set_device(torch.device(dev))
        dist.init_process_group(backend="nccl" if dev.startswith("cuda") else "gloo")
    return DistInfo(rank, world, local, dev)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(info: DistInfo, values: list[float]) -> list[float]:
    """Sum a few floats over all ranks (identity in a world of one)."""
    if not info.distributed:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def shutdown(info: DistInfo) -> None:
    if info.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
