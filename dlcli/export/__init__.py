"""Leaving PyTorch: export a model to ONNX or TorchScript, check the export against the model it
came from, quantise an ONNX graph to int8, and run an exported file with onnxruntime.

This package knows graphs, not tasks: it gets an nn.Module, example inputs and a metadata record
from its caller (dlcli/tasks/export.py decides those per task) and never imports dlcli.tasks.
`onnx` and `onnxruntime` are optional (`pip install 'dlcli[export]'`) and imported inside
functions, so importing dlcli never pays for them.
"""

from __future__ import annotations

from typing import Any

from dlcli.errors import InputError

FORMATS = ("onnx", "torchscript")
# Opset 17: supported by every onnxruntime since 1.14 and by torch's legacy (TorchScript-based)
# exporter, which needs no onnxscript.
OPSET = 17
# The prefix of our keys in an ONNX file's metadata_props (and the keys of the TorchScript sidecar).
META_PREFIX = "dlcli."
FORMAT_VERSION = "1"
INSTALL_HINT = "pip install 'dlcli[export]'"


def require_onnx() -> tuple[Any, Any]:
    """(onnx, onnxruntime), or a one-line InputError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise InputError(f"ONNX export and inference need the packages onnx and onnxruntime "
                         f"({exc.name} is missing): {INSTALL_HINT}") from None
    return onnx, onnxruntime


def require_onnxruntime() -> Any:
    """onnxruntime alone (running a file needs no `onnx`)."""
    try:
        import onnxruntime
    except ImportError:
        raise InputError(f"running an ONNX file needs the package onnxruntime: {INSTALL_HINT}") from None
    return onnxruntime
