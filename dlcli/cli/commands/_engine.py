"""The options that pick what runs a model (`--runtime`, `--model-file`), shared by classify,
segment and generate. (A leading underscore keeps command discovery from registering it.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.device import Runtime
    from dlcli.export.runtime import CpuRuntime
    from dlcli.progress import Reporter

RUNTIME_HELP = ("torch (default) | onnx: run the weights in onnxruntime on the CPU, exported and checked once "
                "into the cache ($DL_HOME/exported, keyed by the weights' SHA-256).")
MODEL_FILE_HELP = ("An ONNX file written by `dl export` (fp32 or --int8), run in onnxruntime; its metadata "
                   "gives the preprocessing and labels.")


def runtime_option() -> Any:
    return typer.Option(None, "--runtime", help=RUNTIME_HELP)


def model_file_option() -> Any:
    return typer.Option(None, "--model-file", help=MODEL_FILE_HELP)


def engine_options(opts: Any, engine: Optional[str], model_file: Optional[Path]) -> Any:
    """The shared options for this engine: onnxruntime runs on the CPU, in the precision the file
    was exported in, so --device and --precision are refused rather than silently ignored."""
    from dlcli.errors import InputError

    if engine is not None and engine not in ("torch", "onnx"):
        raise InputError(f"unknown --runtime {engine!r}: use torch or onnx")
    if engine != "onnx" and model_file is None:
        return opts
    if opts.precision not in ("auto", "fp32"):
        raise InputError("--precision is for --runtime torch; an ONNX file keeps the precision it was exported in "
                         "(dl export --int8 writes an int8 one)")
    if opts.device not in ("auto", "cpu"):
        raise InputError("onnxruntime runs on the CPU here; drop --device (or use --runtime torch)")
    return dataclasses.replace(opts, device="cpu")


def engine_start(opts: Any, engine: Optional[str], model_file: Optional[Path]) -> tuple[Runtime | CpuRuntime, Reporter]:
    """opts.start() for torch; for onnxruntime, the CPU stand-in of the device manager, which
    needs no torch (a run whose export is cached then never imports it)."""
    if engine != "onnx" and model_file is None:
        return opts.start()
    from dlcli.export.runtime import CpuRuntime

    return CpuRuntime.create(opts.precision, opts.seed, opts.deterministic), opts.reporter()


def engine_label(model: Any, runtime: Runtime) -> str:
    """What a command's status line names: onnxruntime's version and precision, or device and dtype."""
    engine = getattr(model, "engine", None)
    return engine if engine else f"{runtime.device} ({runtime.dtype_name})"
