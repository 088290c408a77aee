"""A torch graph -> an ONNX file with torch's own exporter, and the metadata record we keep in
the file's metadata_props (labels, preprocessing, source weights and their SHA-256, the check).

The exporter is the legacy TorchScript-based one (`dynamo=False`): it needs no onnxscript, handles
every model dlcli exports (the detectors included) and gives graphs onnxruntime runs within 1e-5
of torch. Its warnings (deprecation, tracer notes) are swallowed: the comparison with torch that
follows every export is what decides whether a trace was right.
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from dlcli.errors import InputError, WeightsError
from dlcli.export import FORMAT_VERSION, META_PREFIX, OPSET, require_onnx

# Metadata values that are JSON (everything else is a plain string).
JSON_KEYS = frozenset({"labels", "preprocess_args", "config", "extra", "metrics", "input", "outputs", "checks",
                       "quantization", "transforms"})
MAX_METADATA_BYTES = 16 << 20  # a record larger than this is not ours (labels of 1,000 classes take ~12 kB)


def export_onnx(graph: Any, example: Any, path: Path, *, input_name: str, output_names: Sequence[str],
                dynamic_axes: Mapping[str, Mapping[int, str]], what: str, opset: int = OPSET) -> None:
    """Write `graph` traced on `example` to `path`. A model the exporter cannot handle is a
    one-line InputError naming the model and the exporter's first line."""
    import torch

    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # torch >= 2.5 would otherwise pick the dynamo exporter (needs onnxscript)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, (example,), str(path), export_params=True, do_constant_folding=True,
                              opset_version=opset, input_names=[input_name], output_names=list(output_names),
                              dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()}, **kwargs)
    except Exception as exc:  # the exporter raises many types; the model is what cannot be exported
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise InputError(f"torch's ONNX exporter cannot export {what}: {type(exc).__name__}: {first}") from None


def encode(record: Mapping[str, Any]) -> dict[str, str]:
    """Our record -> string key/values with the `dlcli.` prefix (JSON where the value is not a string)."""
    out = {f"{META_PREFIX}format_version": FORMAT_VERSION}
    for key, value in record.items():
        out[META_PREFIX + key] = value if isinstance(value, str) and key not in JSON_KEYS else json.dumps(value)
    return out


def decode(props: Mapping[str, str], source: str) -> dict[str, Any]:
    """String metadata (an ONNX file's or a sidecar's) -> our record; {} when it holds none of ours."""
    record: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith(META_PREFIX):
            continue
        name = key[len(META_PREFIX):]
        if name in JSON_KEYS:
            try:
                record[name] = json.loads(value)
            except ValueError:
                raise WeightsError(f"{source}: metadata {key} is not valid JSON; export the model again") from None
        else:
            record[name] = value
    return record


def write_metadata(path: Path, record: Mapping[str, Any]) -> None:
    """Replace our keys in the file's metadata_props (other keys are kept)."""
    onnx, _ = require_onnx()
    model = onnx.load(str(path))
    props = encode(record)
    if sum(len(k) + len(v) for k, v in props.items()) > MAX_METADATA_BYTES:
        raise InputError(f"the metadata of {record.get('weights')} is over {MAX_METADATA_BYTES >> 20} MB")
    keep = [p for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def session_metadata(session: Any, source: str) -> dict[str, Any]:
    """Our record from an open onnxruntime session (no `onnx` package needed)."""
    return decode(dict(session.get_modelmeta().custom_metadata_map or {}), source)
