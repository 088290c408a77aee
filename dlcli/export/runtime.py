"""An onnxruntime session that a task can call where it calls a torch module: it takes and
returns torch tensors, and answers `.to()`, `.eval()` and `.train()` as a module would, so the
device manager can "place" it (it stays on the CPU: onnxruntime's CPU execution provider).

Nothing here imports torch unless it is handed torch tensors: `dl classify --runtime onnx` with the
export already cached runs without torch (importing it is most of a short command's time), with
`CpuRuntime` standing in for the device manager."""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.errors import InputError, WeightsError
from dlcli.runtime_record import RuntimeRecord
from dlcli.export import require_onnxruntime
from dlcli.export.onnx import session_metadata

_NUMPY_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int64)": "int64",
                "tensor(double)": "float64", "tensor(int32)": "int32"}


def default_threads() -> int:
    """The intra-op thread count torch would use, found without importing torch when it is not
    loaded: torch's own count when it is; else OMP_NUM_THREADS (which torch obeys too); else 0,
    onnxruntime's default of one thread per physical core (torch's default as well)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return int(torch.get_num_threads())
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return 0
    return n if n > 0 else 0


def session_options(threads: int | None = None) -> Any:
    """One intra-op pool of `threads` (default: torch's thread count, so both runtimes get the same
    cores; onnxruntime would otherwise take every physical core of a shared machine)."""
    ort = require_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads or default_threads())
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: onnxruntime's warnings would land on the user's stderr
    return so


def open_session(path: str | Path, threads: int | None = None) -> Any:
    """An InferenceSession on the CPU; a file onnxruntime cannot read is a one-line WeightsError."""
    ort = require_onnxruntime()
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # InvalidProtobuf, Fail, InvalidGraph, …
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise WeightsError(f"{path} is not an ONNX model onnxruntime can load ({first}); "
                           "write one with `dl export`") from None


class OnnxModel:
    """A loaded ONNX file: `model(x)` runs it on a torch tensor and returns torch tensor(s)."""

    training = False

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime

        self.path = Path(path).expanduser()
        self.session = open_session(self.path, threads)
        self.metadata = session_metadata(self.session, str(self.path))
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise WeightsError(f"{self.path} takes {len(inputs)} inputs; dlcli runs single-input graphs")
        self.input_name = inputs[0].name
        self.input_dtype = _NUMPY_TYPES.get(inputs[0].type, "float32")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.precision = str(self.metadata.get("precision", "fp32"))
        self.engine = f"onnxruntime {onnxruntime.__version__} ({self.precision})"

    def run(self, x: Any) -> list[Any]:
        """numpy in, numpy outputs."""
        import numpy as np

        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)})

    def __call__(self, x: Any) -> Any:
        import torch

        arr = x.detach().to("cpu").numpy() if isinstance(x, torch.Tensor) else x
        outs = [torch.from_numpy(o) for o in self.run(arr)]
        return outs[0] if len(outs) == 1 else tuple(outs)

    # The module interface the device manager and tasks use: nothing to move, nothing to switch.
    def to(self, *args: Any, **kwargs: Any) -> "OnnxModel":
        return self

    def eval(self) -> "OnnxModel":
        return self

    def train(self, mode: bool = True) -> "OnnxModel":
        return self

    def __repr__(self) -> str:
        return f"OnnxModel({self.path}, {self.engine})"


@dataclass(frozen=True)
class CpuDevice:
    """What `Runtime.device` answers (`.type`, `str()`), for code that only reads it."""

    type: str = "cpu"

    def __str__(self) -> str:
        return self.type


@dataclass
class CpuRuntime(RuntimeRecord):
    """The device manager's stand-in for a model onnxruntime runs: the CPU in float32, described
    as `dlcli.device.Runtime` describes itself, built without importing torch. Tasks given one
    run their onnxruntime pipeline (numpy in, numpy out); it cannot place torch modules."""

    requested_precision: str = "auto"
    seed: int | None = None
    deterministic: bool = False
    notices: list[str] = field(default_factory=list)
    device: CpuDevice = field(default_factory=CpuDevice)
    dtype_name: str = "float32"

    @classmethod
    def create(cls, precision: str | None = "auto", seed: int | None = None,
               deterministic: bool = False) -> "CpuRuntime":
        """Seeds python and numpy as Runtime.create does (torch is not in the process; whatever
        imports it later gets its seed from the caller, as export's fixed generators do)."""
        if seed is not None:
            import numpy as np

            random.seed(seed)
            np.random.seed(seed % 2**32)
        return cls(precision or "auto", seed, deterministic)

    uses_autocast = False


    def synchronize(self) -> None:
        return None
