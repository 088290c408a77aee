"""DistributedDataParallel helpers for trainers started under torchrun.

`torchrun --nproc_per_node N -m dlcli <train command> ...` sets RANK, LOCAL_RANK and WORLD_SIZE;
`setup()` reads them, joins the process group (gloo on CPU, nccl on CUDA) and returns a `Dist`
context. Without torchrun it returns a single-process context whose helpers are no-ops, so a
trainer is written once for both cases. Generic on purpose: every trainer (MNIST, transfer
learning) uses the same pieces: `shard()` for its indices, `wrap()` for the model,
`all_reduce_sum()` for metrics and `dist.is_main` to decide who writes files.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from dlcli.errors import DeviceError


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and prints."""
        return self.rank == 0

    def device_spec(self, requested: str | None) -> str | None:
        """The --device to use on this rank: under DDP with CUDA each rank takes cuda:LOCAL_RANK."""
        if self.active and self.backend == "nccl":
            return f"cuda:{self.local_rank}"
        return requested

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's share of an (already shuffled) index list: every world_size-th item from
        `rank`, padded by wrapping around so that every rank runs the same number of steps
        (DDP's collective calls must pair up), as torch's DistributedSampler does."""
        if not self.active:
            return indices
        n = indices.numel()
        per_rank = -(-n // self.world_size)
        total = per_rank * self.world_size
        if total > n:
            indices = torch.cat([indices, indices[: total - n]])
        return indices[self.rank : total : self.world_size]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around `model` (already on its device); the model itself when not distributed.
        DDP broadcasts rank 0's parameters at construction, so every rank starts identical."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        params = next(model.parameters())
        if params.device.type == "cuda":
            return DDP(model, device_ids=[params.device.index])
        return DDP(model)

    def broadcast_buffers(self, model: torch.nn.Module) -> None:
        """Copy rank 0's buffers (batch-norm running statistics) to every rank. DDP keeps the
        parameters in step, and sends rank 0's buffers at the start of each forward pass, so after
        the last one each rank still holds the statistics of its own last batch."""
        if not self.active:
            return
        import torch.distributed as td

        for buf in getattr(model, "module", model).buffers():
            td.broadcast(buf, src=0)

    def all_reduce_sum(self, values: Sequence[float] | torch.Tensor) -> list[float]:
        """Sum numbers (counts, summed losses) over all ranks; every rank gets the total."""
        t = torch.as_tensor(values, dtype=torch.float64).flatten()
        if self.active:
            import torch.distributed as td

            if self.backend == "nccl":
                t = t.cuda(self.local_rank)
            td.all_reduce(t, op=td.ReduceOp.SUM)
        return [float(v) for v in t.cpu()]

    def broadcast_object(self, obj: Any) -> Any:
        """rank 0's `obj` on every rank (e.g. a decision to stop)."""
        if not self.active:
            return obj
        import torch.distributed as td

        box = [obj]
        td.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()

    def close(self) -> None:
        if self.active:
            import torch.distributed as td

            if td.is_initialized():
                td.destroy_process_group()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str | None = "auto", timeout_s: float = 1800.0) -> Dist:
    """Join the process group torchrun describes (or return a single-process context).

    The backend follows the device: nccl when this run uses CUDA, gloo otherwise."""
    if not launched_by_torchrun():
        return Dist()
    import torch.distributed as td

    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = (device or "auto").lower()
    use_cuda = dev.startswith("cuda") or dev == "gpu" or (dev == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise DeviceError(
                f"rank {rank} needs cuda:{local_rank} but this machine has {torch.cuda.device_count()} GPU(s); "
                "use fewer processes per node or --device cpu"
            )
        torch.cuda.set_device(local_rank)
    backend = "nccl" if use_cuda else "gloo"
    if not td.is_initialized():
        td.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Dist(rank=rank, world_size=world, local_rank=local_rank, backend=backend)
