"""A torch graph -> a TorchScript file (for libtorch, C++ or mobile), with our metadata record in
a JSON file beside it (TorchScript archives have no place for it that other tools read)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping

from dlcli.errors import InputError
from dlcli.export import FORMAT_VERSION


def sidecar_path(path: Path) -> Path:
    """`model.pt` -> `model.pt.json` (never clashes with another export's own file)."""
    return path.with_name(path.name + ".json")


def to_torchscript(graph: Any, example: Any, *, what: str) -> tuple[Any, str]:
    """(ScriptModule, "script" | "trace"). Scripting keeps data-dependent control flow (e.g. the
    padding of the small FCN for sizes not divisible by 16); models that cannot be scripted are
    traced on `example`, and the comparison with torch afterwards says whether that was enough."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.script(graph), "script"
        except Exception:  # many modules are not scriptable; tracing is the usual fallback
            pass
        try:
            return torch.jit.trace(graph, (example,), check_trace=False), "trace"
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise InputError(f"TorchScript can neither script nor trace {what}: {type(exc).__name__}: {first}") from None


def save(module: Any, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.9 calls TorchScript deprecated; it is still what libtorch loads
        torch.jit.save(module, str(path))


def load(path: Path) -> Any:
    """Load a TorchScript file this process just wrote (to check it)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu").eval()


def write_sidecar(path: Path, record: Mapping[str, Any]) -> None:
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, **record}, indent=2, ensure_ascii=False) + "\n",
                    encoding="utf-8")
