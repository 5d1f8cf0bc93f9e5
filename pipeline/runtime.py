"""Device, dtype, autocast and process group: decided here, once, and passed down.

Every other module receives a `Runtime` (or a `torch.device`) and never asks
"is CUDA there?" itself.  CUDA present -> cuda + nccl + bf16 autocast;
otherwise cpu + gloo + fp32.  torchrun's RANK/WORLD_SIZE/LOCAL_RANK variables
are the launcher's contract, not hyperparameters, so they are read here.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    backend: str  # "nccl" | "gloo"
    autocast_dtype: torch.dtype | None  # bf16 on CUDA, None (fp32) on CPU
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun

    @property
    def distributed(self) -> bool:
        """A process group and DDP: several processes, or one started by torchrun (as the record
        scripts do: `train.launcher: torchrun` runs the multi-GPU code path on one device)."""
        return self.world_size > 1 or self.launched

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward pass where the device supports it."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A CPU tensor on this runtime's device, copied without waiting for the device.

        On CUDA the copy goes through pinned memory (PyTorch caches the pinned
        blocks): a copy from pageable memory first waits for all queued work,
        which would make every training step a host sync.
        """
        if not self.is_cuda:
            return tensor.to(self.device)
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def synchronize(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def reset_peak_memory(self) -> None:
        if self.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory_bytes(self) -> int:
        if self.is_cuda:
            return int(torch.cuda.max_memory_allocated(self.device))
        return 0

    def device_count(self) -> int:
        """Devices of this kind visible to the process (1 for the CPU)."""
        return torch.cuda.device_count() if self.is_cuda else 1

    def device_name(self) -> str:
        if self.is_cuda:
            return torch.cuda.get_device_name(self.device)
        return "cpu"


def accelerator_rng_state() -> dict[str, object]:
    """The GPU generators' states, for a checkpoint ({} without CUDA)."""
    return {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}


def set_accelerator_rng_state(state: dict[str, object]) -> None:
    """Restore what `accelerator_rng_state` saved, where this process has CUDA too."""
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def launcher_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) as set by torchrun; (0, 1, 0) when run directly."""
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world_size, local_rank


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun (it sets LOCAL_RANK and WORLD_SIZE)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def detect_runtime(force_cpu: bool = False) -> Runtime:
    """The runtime for this process, without starting a process group."""
    rank, world_size, local_rank = launcher_env()
    launched = launched_by_torchrun()
    if torch.cuda.is_available() and not force_cpu:
        device = torch.device("cuda", local_rank)
        return Runtime(device, "nccl", torch.bfloat16, rank, world_size, local_rank, launched)
    return Runtime(torch.device("cpu"), "gloo", None, rank, world_size, local_rank, launched)


def init_runtime(force_cpu: bool = False) -> Runtime:
    """Detect the runtime and, under torchrun, join the process group."""
    rt = detect_runtime(force_cpu)
    if rt.is_cuda:
        torch.cuda.set_device(rt.device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if rt.distributed and not dist.is_initialized():
        kwargs = {"backend": rt.backend, "timeout": datetime.timedelta(minutes=30)}
        if rt.is_cuda:
            kwargs["device_id"] = rt.device
        dist.init_process_group(**kwargs)
    return rt


def shutdown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()
