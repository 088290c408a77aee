"""Post-training static int8 quantisation of an ONNX graph with onnxruntime's quantiser.

Activations are calibrated on real inputs (min/max of every tensor over the calibration batches),
weights are quantised per output channel. The defaults (QDQ format, per-channel int8 weights,
uint8 activations, min/max calibration) are the ones `benchmarks/export_speed.py` measured best
here on deepconvnet.mnist: see README.md ("Export and int8") for the figures.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

from dlcli.errors import InputError

QUANT_FORMATS = ("qdq", "qoperator")
METHODS = ("minmax", "percentile", "entropy")
# The calibrator keeps every intermediate tensor of every batch until it reduces them; reducing
# every few batches bounds its memory whatever the calibration set's size.
MAX_INTERMEDIATE_BATCHES = 4


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantiser prints progress to stdout and warnings to the root logger: neither
    may reach the user's stdout (it carries --json)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def quantize_int8(fp32_path: Path, out_path: Path, batches: Iterable[Any], input_name: str, *, workdir: Path,
                  quant_format: str = "qdq", per_channel: bool = True, method: str = "minmax") -> dict[str, Any]:
    """Write the int8 graph of `fp32_path` to `out_path`, calibrated on `batches` (numpy arrays of
    the graph's input). Returns the settings used (for the file's metadata)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if quant_format not in QUANT_FORMATS:
        raise InputError(f"unknown quantisation format {quant_format!r}: use {' or '.join(QUANT_FORMATS)}")
    if method not in METHODS:
        raise InputError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)
            self.seen = 0

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.it, None)
            if batch is None:
                return None
            self.seen += int(batch.shape[0])
            return {input_name: batch}

    reader = Reader()
    pre = workdir / "preprocessed.onnx"
    with _quiet():
        # ONNX shape inference and onnxruntime's graph fusions first, as onnxruntime recommends
        # before quantising. Its symbolic shape inference is skipped: it adds nothing for these
        # convolutional graphs, and where it gives up (sizes computed at run time, like the small
        # FCN's padding) it dumps a debug model into the current directory.
        try:
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        except Exception:  # onnxruntime raises bare Exceptions here; quantise the graph as exported
            shutil.copyfile(fp32_path, pre)
        quantize_static(
            str(pre), str(out_path), reader,
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[method],
            extra_options={"CalibMaxIntermediateOutputs": MAX_INTERMEDIATE_BATCHES},
        )
    return {"tool": "onnxruntime.quantization.quantize_static", "format": quant_format, "per_channel": per_channel,
            "weights": "int8", "activations": "uint8", "calibration": method, "calibration_inputs": reader.seen}
