"""`dl export`: a registered model (or a weights file dlcli wrote) -> an ONNX or TorchScript file
that carries what inference needs, checked against the torch model before it is written; with
int8, an ONNX graph quantised on calibration inputs.

Also the other way round: an exported ONNX file (`--model-file`) or a registered model run
through onnxruntime (`--runtime onnx`, exported once into $DL_HOME/exported/<weights SHA-256>.onnx)
as a LoadedWeights whose model is an ORT-backed callable, so classify, segment and generate run
it through their own pre- and postprocessing unchanged.

This module decides per task what a graph's input and output are and which inputs check it;
dlcli/export/ does the exporting, quantising and running. Torch, onnx and onnxruntime are
imported inside functions: the registry imports every task module to learn names.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from dlcli.errors import DLError, InputError, WeightsError
from dlcli.progress import NullReporter, Reporter

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import ExportReport
    from dlcli.device import Runtime

EXPORTABLE = ("classify", "segment", "detect", "generate", "dqn")
RUNNABLE = ("classify", "segment", "generate")  # tasks that run an exported file (--model-file)
ENGINES = ("torch", "onnx")
FP32_TOLERANCE = 1e-4
MAX_CALIBRATION = 10_000
CALIBRATION_BATCH = 16
CHECK_SAMPLES = 32  # calibration inputs the int8 graph is compared with torch on
CACHE_DIR = "exported"

_WHY_NOT = {
    "caption": "its LSTM decoder runs word by word inside a beam search, which is not one tensor graph",
    "stylize": "style transfer optimises an image with the VGG features; there is no trained model to hand over",
}


# --- what a task's graph looks like ----------------------------------------------------------------


@dataclass
class Plan:
    """How to export one loaded model: the tensor graph, its input and outputs, and the inputs that
    check it (each a batch, or one image for detectors)."""

    graph: Any
    input_name: str
    input_dtype: str
    input_shape: list[Any]  # None for dynamic axes
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]
    examples: list[Any]
    kind: str  # how outputs compare: scores | values | detect (dlcli/export/verify.py)
    transform: Callable[[Any], Any] | None = None
    mode: str = "RGB"


def probe_image(seed: int, size: tuple[int, int], mode: str = "RGB") -> Any:
    """A deterministic synthetic picture (a light background, dark and coloured shapes): realistic
    enough for every preset (the MNIST one needs ink on paper), and needs no file."""
    import numpy as np
    from PIL import Image, ImageDraw

    from dlcli.media import normalize_mode

    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(190, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        x1, y1 = int(rng.integers(x0 + w // 6, w)), int(rng.integers(y0 + h // 6, h))
        colour = tuple(int(v) for v in rng.integers(0, 160, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    draw.line((0, int(rng.integers(0, h)), w, int(rng.integers(0, h))), fill=(0, 0, 0), width=max(2, w // 30))
    return normalize_mode(img, mode)


def _graph(model: Any, example: Any, name: str, *, detector: bool = False) -> Any:
    from dlcli.export.graph import tensor_graph

    try:
        return tensor_graph(model, example, detector=detector)
    except TypeError as exc:
        raise InputError(f"{name} cannot be exported: {exc}") from None


def plan_for(loaded: Any) -> Plan:
    """The export plan of a loaded model, by task."""
    import torch

    from dlcli.weights.presets import transform_for

    spec = loaded.spec
    task = spec.task
    model = loaded.model.eval()
    config = _config(spec)
    if task == "classify":
        transform, mode = transform_for(spec)
        tensors = [transform(probe_image(s, size, mode)) for s, size in enumerate([(300, 260), (260, 300), (320, 320)])]
        fixed = len({tuple(t.shape) for t in tensors}) == 1
        examples = [torch.stack(tensors[:2]), tensors[2][None]] if fixed else [t[None] for t in tensors]
        axes = {0: "batch"} if fixed else {0: "batch", 2: "height", 3: "width"}
        shape = [None, *tensors[0].shape] if fixed else [None, int(tensors[0].shape[0]), None, None]
        return Plan(_graph(model, examples[0], spec.name), "image", "float32", shape, ("logits",),
                    {"image": axes, "logits": {0: "batch"}}, examples, "scores", transform, mode)
    if task == "segment":
        transform, mode = transform_for(spec)
        # Two sizes, neither divisible by 16, so size-dependent code (padding) is traced and checked.
        examples = [transform(probe_image(s, size, mode))[None] for s, size in enumerate([(200, 150), (131, 97)])]
        axes = {0: "batch", 2: "height", 3: "width"}
        return Plan(_graph(model, examples[0], spec.name), "image", "float32",
                    [None, int(examples[0].shape[1]), None, None], ("logits",), {"image": axes, "logits": axes},
                    examples, "scores", transform, mode)
    if task == "detect":
        transform, mode = transform_for(spec)
        examples = [transform(probe_image(s, size, mode)) for s, size in enumerate([(160, 128), (112, 96)])]
        return Plan(_graph(model, examples[0], spec.name, detector=True), "image", "float32",
                    [int(examples[0].shape[0]), None, None], ("boxes", "labels", "scores"),
                    {"image": {1: "height", 2: "width"}, "boxes": {0: "detections"}, "labels": {0: "detections"},
                     "scores": {0: "detections"}}, examples, "detect", transform, mode)
    if task == "generate":
        latent = int(config.get("latent_dim", getattr(model, "latent_dim", 100)))
        examples = [torch.randn(n, latent, generator=torch.Generator().manual_seed(s)) for s, n in ((0, 2), (1, 1))]
        return Plan(_graph(model, examples[0], spec.name), "latent", "float32", [None, latent], ("images",),
                    {"latent": {0: "batch"}, "images": {0: "batch"}}, examples, "values")
    if task == "dqn":
        frames = int(config.get("frames", 4))
        screen = int(spec.preprocess_args.get("screen", 84))
        gen = torch.Generator().manual_seed(0)
        examples = [torch.randint(0, 256, (n, frames, screen, screen), generator=gen, dtype=torch.uint8) for n in (2, 1)]
        return Plan(_graph(model, examples[0], spec.name), "frames", "uint8", [None, frames, screen, screen],
                    ("q_values",), {"frames": {0: "batch"}, "q_values": {0: "batch"}}, examples, "scores")
    raise InputError(_not_exportable(spec.name, task))


def _not_exportable(name: str, task: str) -> str:
    why = _WHY_NOT.get(task, "dl export has no plan for this task")
    return f"{name} is a {task} model and cannot be exported: {why} (dl export handles {', '.join(EXPORTABLE)} models)"


def _config(spec: Any) -> dict[str, Any]:
    from dlcli.weights import registry

    return {**registry.get_arch(spec.arch).default_config, **spec.config}


def resolve_labels(loaded: Any) -> list[str] | None:
    """The class names inference shows (entries that say "imagenet" get torchvision's list)."""
    if loaded.labels is not None:
        return list(loaded.labels)
    if loaded.spec.extra.get("labels") == "imagenet":
        from dlcli.tasks.classify import imagenet_categories

        return imagenet_categories()
    return None


def _record(loaded: Any, plan: Plan, precision: str) -> dict[str, Any]:
    """What the exported file carries about itself (ONNX metadata_props / the TorchScript sidecar)."""
    import torch

    from dlcli import __version__
    from dlcli.weights.spec import TorchvisionSource

    spec = loaded.spec
    record: dict[str, Any] = {
        "task": spec.task, "weights": spec.name, "weights_sha256": loaded.sha256 or "", "arch": spec.arch,
        "config": _config(spec), "preprocess": spec.preprocess, "preprocess_args": dict(spec.preprocess_args),
        "labels": resolve_labels(loaded), "license": spec.license, "extra": dict(spec.extra),
        "metrics": dict(spec.metrics), "precision": precision,
        "input": {"name": plan.input_name, "shape": plan.input_shape, "dtype": plan.input_dtype},
        "outputs": list(plan.output_names), "exported_by": f"dlcli {__version__}, torch {torch.__version__}",
    }
    if isinstance(spec.source, TorchvisionSource) and spec.preprocess == "imagenet" and not spec.preprocess_args:
        # dlcli rebuilds torchvision's own transforms from the enum; other readers get the numbers.
        from dlcli.weights.store import torchvision_weights

        record["torchvision_weights"] = spec.source.enum
        tf = torchvision_weights(spec.source).transforms()
        record["transforms"] = {k: _plain_list(getattr(tf, k)) for k in ("resize_size", "crop_size", "mean", "std")
                                if getattr(tf, k, None) is not None}
        # How the resize samples (torchvision's weights differ: bilinear for most, bicubic for some):
        # with it, `--runtime onnx` preprocesses with PIL and numpy alone (dlcli/tasks/_arrays.py).
        mode = getattr(tf, "interpolation", None)
        if mode is not None:
            record["transforms"]["interpolation"] = str(getattr(mode, "value", mode))
            record["transforms"]["antialias"] = getattr(tf, "antialias", True)
    return record


def _plain_list(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


# --- calibration inputs ---------------------------------------------------------------------------


@dataclass
class Calibration:
    """Calibration batches for the quantiser: the first few loaded up front (they also check the
    int8 graph, and prove the source holds a usable input), the rest streamed."""

    source: str
    first: list[Any]
    rest: Iterator[Any]
    used: list[int] = field(default_factory=lambda: [0])

    def batches(self) -> Iterator[Any]:
        for batch in itertools.chain(self.first, self.rest):
            self.used[0] += int(batch.shape[0])
            yield batch


def _batched(tensors: Iterator[Any], size: int) -> Iterator[Any]:
    """Stack same-shape CHW tensors into numpy batches of up to `size` (a new shape starts a batch)."""
    import torch

    batch: list[Any] = []
    for t in tensors:
        if batch and (len(batch) >= size or tuple(t.shape) != tuple(batch[0].shape)):
            yield torch.stack(batch).numpy()
            batch = []
        batch.append(t)
    if batch:
        yield torch.stack(batch).numpy()


def calibration_set(source: str | None, loaded: Any, plan: Plan, size: int, *, offline: bool = False) -> Calibration:
    """Calibration inputs for `loaded` from `source`: a folder (or file, or glob) of images, a folder
    holding the MNIST IDX files (models with the mnist preset), `scenes` (the synthetic scene
    world, for models trained on it), or nothing for generators (latents from N(0, 1))."""
    import torch

    spec = loaded.spec
    if not 1 <= size <= MAX_CALIBRATION:
        raise InputError(f"--calibration-size must be between 1 and {MAX_CALIBRATION} (got {size})")
    if spec.task == "detect":
        raise InputError("--int8 is not available for detection models (box decoding and NMS do not quantise "
                         "with onnxruntime's static quantiser); export them in fp32")
    from dlcli.data import scenes

    scene_model = spec.preprocess == "tensor01" and tuple(spec.labels or ()) == tuple(scenes.CLASS_NAMES)
    tensors: Iterator[Any]
    if source is None:
        if spec.task == "generate":
            gen = torch.Generator().manual_seed(0)
            latent = int(plan.input_shape[1])
            batches = (torch.randn(min(CALIBRATION_BATCH, size - i), latent, generator=gen).numpy()
                       for i in range(0, size, CALIBRATION_BATCH))
            return _peek("latents from N(0, 1)", batches, source)
        hints = []
        if spec.preprocess == "mnist":
            hints.append("or a folder holding the MNIST IDX files")
        if scene_model:
            hints.append("or 'scenes' for the synthetic scene world")
        raise InputError(f"--int8 needs calibration inputs: --calibrate DIR, a folder of images like those "
                         f"{spec.name} will see" + (f" ({'; '.join(hints)})" if hints else ""))
    if source == "scenes":
        if not scene_model:
            raise InputError(f"--calibrate scenes is for models trained on the synthetic scenes; {spec.name} is not")
        from PIL import Image

        assert plan.transform is not None
        tensors = (plan.transform(Image.fromarray(scenes.make_scene(scenes.TRAIN_SEED, i).image)) for i in range(size))
        return _peek(f"{size} synthetic scenes (train seed)", _batched(tensors, CALIBRATION_BATCH), source)
    path = Path(source).expanduser()
    if spec.preprocess == "mnist" and path.is_dir():
        from dlcli.data import mnist

        if mnist.locate(path) is not None:
            images, _ = mnist.load_mnist(path, "train")
            x = images[:size].unsqueeze(1).float().div_(255.0).numpy()  # the test set's scaling (no recentring)
            return _peek(f"the first {len(x)} MNIST training images",
                         (x[i:i + CALIBRATION_BATCH] for i in range(0, len(x), CALIBRATION_BATCH)), source)
    if plan.transform is None:
        raise InputError(f"--calibrate takes no images for {spec.name}: its inputs are not images")
    from dlcli import media

    files = media.expand_inputs([source], offline=offline)
    problems: list[str] = []

    def preprocessed() -> Iterator[Any]:
        used = 0
        for item in media.iter_images(files, mode=plan.mode, offline=offline, strict=False):
            if used >= size:
                return
            if isinstance(item, Exception):
                problems.append(item.message)
                continue
            try:
                yield plan.transform(item.image)  # type: ignore[misc]
                used += 1
            except Exception as exc:  # a preset that cannot take this picture: skip it, as classify does
                problems.append(f"{item.source}: {getattr(exc, 'message', exc)}")

    if spec.task == "dqn":
        # Screens in file order, `frames` at a time, as the environment stacks them.
        frames = int(plan.input_shape[1])

        def stacks() -> Iterator[Any]:
            it = preprocessed()
            while True:
                group = list(itertools.islice(it, frames))
                if len(group) < frames:
                    return
                yield torch.cat(group, 0)

        tensors = stacks()
    else:
        tensors = preprocessed()
    return _peek(f"{source}", _batched(tensors, CALIBRATION_BATCH), source, problems=problems, total=len(files))


def _peek(label: str, batches: Iterator[Any], source: str | None, *, problems: list[str] | None = None,
          total: int = 0) -> Calibration:
    first: list[Any] = []
    seen = 0
    for batch in batches:
        first.append(batch)
        seen += int(batch.shape[0])
        if seen >= CHECK_SAMPLES:
            break
    if not first:
        example = f" (e.g. {problems[0]})" if problems else ""
        raise InputError(f"--calibrate {source}: none of the {total} files is a usable input{example}")
    return Calibration(label, first, batches)


# --- exporting ----------------------------------------------------------------------------------------


def _task_of(model: str | None, weights_file: str | Path | None) -> str:
    """The task of a name or of a dlcli weights file, refused here when it cannot be exported."""
    from dlcli.weights import loader, registry, store

    if (model is None) == (weights_file is None):
        raise InputError("name the model to export (NAME) or give --weights-file FILE, one of the two")
    if model is not None:
        task = registry.get(model).task
        what = model
    else:
        path = Path(weights_file).expanduser()  # type: ignore[arg-type]
        if not path.is_file():
            raise InputError(f"weights file {path} does not exist")
        meta: dict[str, Any] = {}
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                with safe_open(str(path), framework="pt") as f:
                    raw = (f.metadata() or {}).get(store.META_KEY)
                meta = json.loads(raw) if raw else {}
            except Exception as exc:  # safetensors raises its own types
                raise WeightsError(f"{path} is not a valid safetensors file ({exc})") from None
        task = loader.spec_from_file(path, meta, "").task
        what = str(path)
    if task not in EXPORTABLE:
        raise InputError(_not_exportable(what, task))
    return task


def export(*, model: str | None = None, weights_file: str | Path | None = None, fmt: str = "onnx",
           out: str | Path, int8: bool = False, calibrate: str | None = None, calibration_size: int = 1000,
           tolerance: float | None = None, quant_format: str = "qdq", per_channel: bool = True,
           force: bool = False, offline: bool = False, reporter: Reporter | None = None,
           random_init: bool = False, runtime: Runtime | None = None) -> Any:
    """Export a registered model (or a dlcli weights file) to `out`; see export_loaded."""
    from dlcli.atomic import check_writable
    from dlcli.export import FORMATS, require_onnx
    from dlcli.export.torchscript import sidecar_path
    from dlcli.weights import loader

    reporter = reporter or NullReporter()
    fmt = (fmt or "").strip().lower()
    if fmt not in FORMATS:
        raise InputError(f"unknown --format {fmt!r}: use {' or '.join(FORMATS)}")
    if int8 and fmt != "onnx":
        raise InputError("--int8 is for --format onnx (onnxruntime's quantiser works on ONNX graphs)")
    if calibrate is not None and not int8:
        raise InputError("--calibrate is for --int8 (fp32 exports need no calibration)")
    if tolerance is not None and not tolerance >= 0:
        raise InputError(f"--tolerance must be 0 or more (got {tolerance})")
    if not 1 <= calibration_size <= MAX_CALIBRATION:
        raise InputError(f"--calibration-size must be between 1 and {MAX_CALIBRATION} (got {calibration_size})")
    out = Path(out).expanduser()
    check_writable(out, force)  # before any work
    if fmt == "torchscript":
        check_writable(sidecar_path(out), force)
    if fmt == "onnx":
        require_onnx()
    task = _task_of(model, weights_file)
    loaded = loader.load_model(model, task=task, file=weights_file, offline=offline, reporter=reporter,
                               random_init=random_init)
    return export_loaded(loaded, fmt=fmt, out=out, int8=int8, calibrate=calibrate, calibration_size=calibration_size,
                         tolerance=tolerance, quant_format=quant_format, per_channel=per_channel, force=force,
                         offline=offline, reporter=reporter, runtime=runtime)


def export_loaded(loaded: Any, *, fmt: str = "onnx", out: str | Path, int8: bool = False,
                  calibrate: str | None = None, calibration_size: int = 1000, tolerance: float | None = None,
                  quant_format: str = "qdq", per_channel: bool = True, force: bool = False, offline: bool = False,
                  reporter: Reporter | None = None, runtime: Runtime | None = None) -> ExportReport:
    """Export, check against torch, and only then write `out` (atomically; a TorchScript file gets
    its JSON sidecar). The fp32 graph must match torch within `tolerance` (default 1e-4, max abs
    difference over every output); an int8 graph is compared on calibration inputs and bounded only
    when `tolerance` is given. Returns an ExportReport."""
    import torch

    from dlcli.atomic import atomic_output
    from dlcli.export.graph import run_torch
    from dlcli.export.verify import compare
    from dlcli.results import ExportReport, Provenance
    from dlcli.weights import store

    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    out = Path(out).expanduser()
    name = loaded.spec.name
    plan = plan_for(loaded)
    calibration = calibration_set(calibrate, loaded, plan, calibration_size, offline=offline) if int8 else None
    record = _record(loaded, plan, "int8" if int8 else "fp32")
    reference = [run_torch(plan.graph, x) for x in plan.examples]
    scales = [float(max(x.shape[-2:])) for x in plan.examples] if plan.kind == "detect" else None
    fp32_bound = FP32_TOLERANCE if tolerance is None or int8 else tolerance
    checks = []
    quantization = None
    sidecar = None

    def check_or_refuse(check: Any) -> None:
        checks.append(check)
        agreement = "" if check.top1_agreement is None else f", top-1 agreement {check.top1_agreement:.2%}"
        reporter.message(f"{check.what} vs torch on {check.inputs} inputs: max abs diff {check.max_abs_diff:.3g}"
                         f"{agreement}")
        if not check.passed:
            why = check.note or f"max abs diff {check.max_abs_diff:.3g} > tolerance {check.tolerance:g}"
            raise InputError(f"the {check.what} export of {name} disagrees with torch ({why}); nothing was written"
                             + (" (--tolerance sets the bound)" if check.tolerance is not None and not check.note else ""))

    with tempfile.TemporaryDirectory(prefix="dl-export-") as tmp:
        work = Path(tmp)
        if fmt == "onnx":
            from dlcli.export.onnx import export_onnx, write_metadata
            from dlcli.export.runtime import OnnxModel

            reporter.start(f"exporting {name} to ONNX", None)
            try:
                fp32 = work / "fp32.onnx"
                export_onnx(plan.graph, plan.examples[0], fp32, input_name=plan.input_name,
                            output_names=plan.output_names, dynamic_axes=plan.dynamic_axes, what=name)
                session = OnnxModel(fp32)
                got = [tuple(session.run(x.numpy())) for x in plan.examples]
            finally:
                reporter.finish()
            check_or_refuse(compare("onnx fp32", plan.kind, reference, got, fp32_bound, box_scale=scales))
            final = fp32
            if calibration is not None:
                from dlcli.export.quantize import quantize_int8

                reporter.start(f"quantising {name} to int8 (calibrating on {calibration.source})", None)
                try:
                    final = work / "int8.onnx"
                    quantization = quantize_int8(fp32, final, calibration.batches(), plan.input_name, workdir=work,
                                                 quant_format=quant_format, per_channel=per_channel)
                    qsession = OnnxModel(final)
                    probes = [torch.from_numpy(b) for b in calibration.first]
                    got_q = [tuple(qsession.run(b.numpy())) for b in probes]
                    ref_q = [run_torch(plan.graph, b) for b in probes]
                finally:
                    reporter.finish()
                quantization["calibration_source"] = calibration.source
                record["quantization"] = quantization
                check_or_refuse(compare("onnx int8", plan.kind, ref_q, got_q, tolerance))
            record["checks"] = [c.to_dict() for c in checks]
            write_metadata(final, record)
            with atomic_output(out, force) as target:
                shutil.copyfile(final, target)
        else:
            from dlcli.export import torchscript

            module, method = torchscript.to_torchscript(plan.graph, plan.examples[0], what=name)
            saved = work / "model.pt"
            torchscript.save(module, saved)
            reloaded = torchscript.load(saved)
            got = [run_torch(reloaded, x) for x in plan.examples]
            check_or_refuse(compare("torchscript", plan.kind, reference, got, fp32_bound, box_scale=scales))
            record["torchscript"] = method
            record["checks"] = [c.to_dict() for c in checks]
            side = work / "model.json"
            torchscript.write_sidecar(side, record)
            sidecar = torchscript.sidecar_path(out)
            with atomic_output(sidecar, force) as side_target, atomic_output(out, force) as target:
                shutil.copyfile(saved, target)
                shutil.copyfile(side, side_target)
    reporter.message(f"wrote {out}")
    return ExportReport(
        model=name, task=loaded.spec.task, format=fmt, precision="int8" if int8 else "fp32", file=out,
        bytes=out.stat().st_size, sha256=store.sha256_file(out), sidecar=sidecar, source_sha256=loaded.sha256,
        checks=tuple(checks), calibration_images=calibration.used[0] if calibration is not None else None,
        quantization=quantization, seconds=round(time.perf_counter() - t0, 3),
        provenance=Provenance.collect(runtime, name, loaded.sha256),
    )


# --- running exported files -------------------------------------------------------------------------


def spec_from_export(meta: dict[str, Any], path: Path) -> Any:
    """The weights entry an exported file describes (its preprocessing and labels drive the task)."""
    from dlcli.weights.spec import ImportedSource, TorchvisionSource, WeightsSpec

    source: Any
    if meta.get("torchvision_weights"):
        source = TorchvisionSource(str(meta["torchvision_weights"]))
    else:
        source = ImportedSource(path.name, str(meta.get("weights_sha256", "")), str(path))
    labels = meta.get("labels")
    return WeightsSpec(
        name=str(meta["weights"]), arch=str(meta.get("arch", "")), task=str(meta["task"]), source=source,
        preprocess=str(meta.get("preprocess", "imagenet")), preprocess_args=dict(meta.get("preprocess_args") or {}),
        labels=tuple(labels) if labels is not None else None, license=str(meta.get("license", "")),
        metrics=dict(meta.get("metrics") or {}), config=dict(meta.get("config") or {}),
        description=f"exported to {path.name}", extra=dict(meta.get("extra") or {}),
    )


def load_model_file(path: str | Path, task: str, *, threads: int | None = None) -> Any:
    """An ONNX file written by `dl export` as a LoadedWeights whose model runs in onnxruntime."""
    from dlcli.export.runtime import OnnxModel
    from dlcli.weights.loader import LoadedWeights

    path = Path(path).expanduser()
    model = OnnxModel(path, threads=threads)
    meta = model.metadata
    if not meta.get("task") or not meta.get("weights"):
        raise WeightsError(f"{path} carries no dlcli metadata (task, labels, preprocessing); "
                           "write it with `dl export`")
    if meta["task"] != task:
        raise WeightsError(f"{path} holds a {meta['task']!r} model ({meta['weights']}), not {task!r}")
    spec = spec_from_export(meta, path)
    return LoadedWeights(model, spec, path, meta.get("weights_sha256") or None,
                         list(spec.labels) if spec.labels is not None else None, meta)


def cache_path(sha256: str) -> Path:
    """Where `--runtime onnx` keeps the export of the weights with this SHA-256."""
    from dlcli.weights import store

    return store.dl_home() / CACHE_DIR / f"{sha256}.onnx"


def for_engine(loaded: Any, engine: str | None, *, reporter: Reporter | None = None,
               threads: int | None = None) -> Any:
    """`loaded` as is for torch; for onnx, the same entry run by onnxruntime from the cached export
    (made, checked and cached on first use)."""
    from dlcli.export.runtime import OnnxModel
    from dlcli.weights.loader import LoadedWeights

    engine = engine or "torch"
    if engine not in ENGINES:
        raise InputError(f"unknown --runtime {engine!r}: use {' or '.join(ENGINES)}")
    if engine == "torch":
        return loaded
    reporter = reporter or NullReporter()
    if not loaded.sha256:
        raise InputError("--runtime onnx needs weights with a known SHA-256 (a name or a --weights-file)")
    path = cache_path(loaded.sha256)
    model = None
    if path.is_file():
        try:
            model = OnnxModel(path, threads=threads)
        except DLError:
            model = None
        if model is None or model.metadata.get("weights_sha256") != loaded.sha256:
            reporter.message(f"the cached export {path} is damaged; exporting again")
            model = None
    if model is None:
        reporter.message(f"exporting {loaded.spec.name} to ONNX once (cached as {path})")
        export_loaded(loaded, fmt="onnx", out=path, force=True, reporter=reporter)
        model = OnnxModel(path, threads=threads)
    return LoadedWeights(model, loaded.spec, loaded.path, loaded.sha256, loaded.labels, loaded.meta)


def cached_export(task: str, *, model: str | None = None, weights_file: str | Path | None = None,
                  threads: int | None = None) -> Any:
    """What load_weights(engine="onnx") gives, from the export already in the cache and without
    importing torch: the entry is resolved in the registry (its SHA-256 from the manifest or the
    import index), a --weights-file is hashed; the cached .onnx of that SHA-256 opens in
    onnxruntime. None when there is nothing usable cached (no export yet, a damaged one, a
    torchvision download never verified here): load_weights then exports it, with torch.

    The weights file itself is not read: the export was checked against it when it was made, and
    the cache holds it under the full SHA-256 the weights are known by."""
    from dlcli.export.runtime import OnnxModel
    from dlcli.weights import registry, store
    from dlcli.weights.loader import LoadedWeights

    if model is not None and weights_file is not None:
        return None  # load_model's error
    path: Path | None = None
    spec = None
    if weights_file is not None:
        path = Path(weights_file).expanduser()
        if not path.is_file():
            return None  # load_model's error says what the path is
        sha = store.sha256_file(path)
    else:
        spec = registry.resolve(model, task)
        sha = store.expected_sha256(spec)
    if not sha:
        return None
    cached = cache_path(sha)
    if not cached.is_file():
        return None
    try:
        onnx_model = OnnxModel(cached, threads=threads)
    except DLError:
        return None  # for_engine reports the damage and exports again
    meta = onnx_model.metadata
    if meta.get("weights_sha256") != sha or not meta.get("task") or not meta.get("weights"):
        return None
    if spec is None:
        assert path is not None
        if meta["task"] != task:
            raise WeightsError(f"{path} holds {meta['task']!r} weights ({meta.get('arch', '')}), not {task!r}")
        from dlcli.weights.spec import ImportedSource, WeightsSpec

        # The entry load_model would make from the file's own metadata, as the export recorded it.
        exported = spec_from_export(meta, path)
        spec = WeightsSpec(**{**exported.__dict__, "source": ImportedSource(path.name, sha, str(path)),
                              "description": ""})
    elif meta["task"] != spec.task or meta["weights"] != spec.name:
        return None
    labels = list(spec.labels) if spec.labels is not None else meta.get("labels")
    return LoadedWeights(onnx_model, spec, path, sha, list(labels) if labels is not None else None, meta)


def load_weights(task: str, *, model: str | None = None, weights_file: str | Path | None = None,
                 model_file: str | Path | None = None, engine: str | None = None, offline: bool = False,
                 reporter: Reporter | None = None, random_init: bool = False) -> Any:
    """What classify, segment and generate load: weights by name or file (torch, or onnxruntime with
    engine="onnx"), or an exported ONNX file (`model_file`, always onnxruntime)."""
    from dlcli.weights import loader

    if model_file is not None:
        if model is not None or weights_file is not None:
            raise InputError("give --model-file alone (the file names its weights), not with --model or --weights-file")
        if engine not in (None, "onnx"):
            raise InputError(f"--model-file runs with onnxruntime; drop --runtime {engine}")
        return load_model_file(model_file, task)
    if engine not in (None, *ENGINES):
        raise InputError(f"unknown --runtime {engine!r}: use {' or '.join(ENGINES)}")
    loaded = loader.load_model(model, task=task, file=weights_file, offline=offline, reporter=reporter,
                               random_init=random_init)
    return for_engine(loaded, engine, reporter=reporter)


def engine_of(model: Any) -> str | None:
    """What the provenance names as the engine of a task's model ("torch" for modules)."""
    return getattr(model, "engine", None)
