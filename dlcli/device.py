"""The device manager: resolves --device / --precision, moves models and tensors, wraps autocast
and inference mode, seeds, and reports what it actually used.

Tasks never call `.cuda()` or `.to(dtype)` by hand: they ask a `Runtime` for it.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from dlcli.errors import DeviceError, InputError
from dlcli.runtime_record import RuntimeRecord

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def available_devices() -> list[str]:
    """Every device this machine offers, in the order `auto` prefers them (cpu last)."""
    found = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(spec: str | None = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu. A device that does not exist is a DeviceError
    that lists the ones that do."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device(available_devices()[0])
    if spec == "gpu":
        spec = "cuda"
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise InputError(
            f"unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps "
            f"(this machine has: {', '.join(available_devices())})"
        ) from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if dev.index is None else dev.index
        if index >= count:
            raise DeviceError(
                f"device {spec!r} is not available (this machine has: {', '.join(available_devices())}); "
                "use --device cpu or --device auto"
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not _mps_available():
            raise DeviceError(
                f"device 'mps' is not available (this machine has: {', '.join(available_devices())}); "
                "use --device cpu or --device auto"
            )
        return dev
    raise InputError(f"unsupported device {spec!r}: use auto, cpu, cuda, cuda:N or mps")


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # bf16 autocast runs on every x86/ARM CPU torch supports; it is only fast with AVX512-BF16/AMX.
        return True
    return device.type == "mps" and hasattr(torch, "bfloat16")


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux; x86 `flags`, ARM `Features`); empty
    elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device, flags: set[str] | None = None) -> tuple[bool, str]:
    """Whether `device` computes bf16 in hardware (fast), and why, in words. CPUs: AMX-BF16 or
    AVX512-BF16 (x86), the BF16 extension (ARM); elsewhere bf16 is emulated and slower than fp32.
    CUDA: torch.cuda.is_bf16_supported() (Ampere and newer)."""
    if device.type == "cuda":
        ok = bool(torch.cuda.is_bf16_supported())
        return ok, f"{torch.cuda.get_device_name(device)} {'supports' if ok else 'lacks'} bf16"
    if device.type != "cpu":
        return False, f"{device.type}: bf16 speed unknown"
    flags = _cpu_flags() if flags is None else flags
    found = [f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in flags]
    capability = torch.backends.cpu.get_cpu_capability()
    if found:
        return True, f"this CPU has native bf16 ({', '.join(found)}; torch capability {capability})"
    return False, f"this CPU has no native bf16 (torch capability {capability}; bf16 would be emulated)"


def fp16_supported(device: torch.device) -> bool:
    return device.type in ("cuda", "mps")


def resolve_precision(precision: str | None, device: torch.device, *, training: bool = False) -> tuple[torch.dtype, str | None]:
    """The dtype to compute in on `device`, and a one-line notice when the request was changed.

    `auto` is fp32, except for training (`training=True`) on a device with native bf16, where bf16
    autocast about halves the step time (benchmarks/mnist_train.py) at the same accuracy; the
    notice then says which was chosen and why.

    fp16 on a CPU falls back to bf16 (or fp32 where bf16 is not supported): CPUs have no fast fp16
    kernels and many fp16 ops are missing there."""
    p = (precision or "auto").strip().lower()
    if p not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if p == "auto" and training:
        native, why = native_bf16(device)
        if native:
            return torch.bfloat16, f"precision auto: bf16 autocast, {why}"
        return torch.float32, f"precision auto: fp32, {why}"
    if p in ("auto", "fp32"):
        return torch.float32, None
    if p == "fp16":
        if fp16_supported(device):
            return torch.float16, None
        if bf16_supported(device):
            return torch.bfloat16, f"fp16 is not supported on {device.type}; using bf16 instead"
        return torch.float32, f"fp16 is not supported on {device.type}; using fp32 instead"
    if bf16_supported(device):
        return torch.bfloat16, None
    return torch.float32, f"bf16 is not supported on {device}; using fp32 instead"


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy (when present) and torch; with `deterministic`, ask torch for
    deterministic kernels (slower; errors on ops that have none are turned into warnings)."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for the core
        pass
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


@dataclass
class Runtime(RuntimeRecord):
    """Where and how a task runs. Build it with `Runtime.create(...)`."""

    device: torch.device
    dtype: torch.dtype
    requested_precision: str = "auto"
    seed: int | None = None
    deterministic: bool = False
    notices: list[str] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        device: str | None = "auto",
        precision: str | None = "auto",
        seed: int | None = None,
        deterministic: bool = False,
        *,
        training: bool = False,
    ) -> "Runtime":
        """`training`: the runtime trains (then `--precision auto` may pick bf16, see resolve_precision)."""
        dev = resolve_device(device)
        dtype, notice = resolve_precision(precision, dev, training=training)
        if seed is not None:
            seed_everything(seed, deterministic)
        return cls(dev, dtype, (precision or "auto"), seed, deterministic, [notice] if notice else [])

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, str(self.dtype))

    @property
    def uses_autocast(self) -> bool:
        return self.dtype != torch.float32

    def place(self, model: torch.nn.Module, *, channels_last: bool = False) -> torch.nn.Module:
        """Move a model to the device. Weights stay fp32: low precision comes from autocast,
        which keeps numerically sensitive ops (softmax, norms, losses) in fp32."""
        model = model.to(self.device)
        if channels_last and self.device.type != "mps":
            model = model.to(memory_format=torch.channels_last)
        return model

    def to(self, tensor: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
        non_blocking = self.device.type == "cuda"
        tensor = tensor.to(self.device, non_blocking=non_blocking)
        if channels_last and tensor.dim() == 4 and self.device.type != "mps":
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.uses_autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """inference_mode + autocast: the context every forward pass of a task runs in."""
        with torch.inference_mode(), self.autocast():
            yield

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

