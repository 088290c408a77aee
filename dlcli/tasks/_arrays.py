"""Preprocessing presets in PIL and numpy alone, for models onnxruntime runs: the same arrays the
torch presets make (bit for bit: tests/test_export.py compares them), without importing torch,
whose import takes most of a short `dl classify --runtime onnx`.

Only presets that can be reproduced exactly are here: "mnist" (the digit finder is PIL and numpy
already), "tensor01", and "imagenet" for torchvision's own weights, whose transform resizes and
crops the PIL image itself (the exported file records its sizes, mean, std and interpolation). Other
presets (torchvision v2 pipelines that resize a tensor, Caffe's, custom arguments) return None here,
and the caller runs the torch preset instead. (A leading underscore keeps the registry's task
discovery from importing this module.)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from dlcli.weights.spec import TorchvisionSource, WeightsSpec

# torchvision's InterpolationMode values that name a PIL resampling filter (torchvision hands a PIL
# image to PIL's resize with that filter).
_PIL_FILTERS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


def _mnist(spec: WeightsSpec) -> Callable[[Any], Any] | None:
    import numpy as np

    from dlcli.tasks.digits import mnist_style

    invert = str(spec.preprocess_args.get("invert", "auto"))
    if invert not in ("auto", "yes", "no"):
        return None  # the torch preset raises the WeightsError that names the problem

    def transform(img: Any) -> Any:
        pre = np.asarray(mnist_style(img, invert=invert), dtype=np.float32)
        return (pre / np.float32(255.0))[None]  # (1, 28, 28) in [0, 1], as the torch preset

    return transform


def _tensor01(spec: WeightsSpec) -> Callable[[Any], Any] | None:
    import numpy as np

    def transform(img: Any) -> Any:
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)

    return transform


def _torchvision_imagenet(spec: WeightsSpec, tf: Mapping[str, Any]) -> Callable[[Any], Any] | None:
    """torchvision's ImageClassification on a PIL image: the shorter side resized (by PIL) to
    resize_size, a centre crop (zero padding where the picture is smaller), /255, then mean/std."""
    import numpy as np
    from PIL import Image

    try:
        resize = int(_one(tf["resize_size"]))
        crop = int(_one(tf["crop_size"]))
        mean = np.asarray(tf["mean"], dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(tf["std"], dtype=np.float32).reshape(-1, 1, 1)
        interpolation = str(tf["interpolation"])
        if interpolation not in _PIL_FILTERS:
            return None
        resample = getattr(Image.Resampling, interpolation.upper())
    except (KeyError, TypeError, ValueError):
        return None  # an export made before the interpolation was recorded: the torch preset
    if tf.get("antialias", True) is not True or resize < 1 or crop < 1:
        return None

    def transform(img: Any) -> Any:
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = resize, int(resize * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), resample)
        a = np.asarray(img, dtype=np.uint8)
        if a.ndim == 2:
            a = a[:, :, None]
        if crop > new_w or crop > new_h:
            left, top = max(crop - new_w, 0) // 2, max(crop - new_h, 0) // 2
            padded = np.zeros((max(crop, new_h), max(crop, new_w), a.shape[2]), dtype=np.uint8)
            padded[top:top + new_h, left:left + new_w] = a
            a = padded
        hh, ww = a.shape[:2]
        top, left = round((hh - crop) / 2.0), round((ww - crop) / 2.0)  # torchvision's centre
        a = a[top:top + crop, left:left + crop].transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
        return (a - mean) / std

    return transform


def _one(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) else value


def array_transform(spec: WeightsSpec, meta: Mapping[str, Any]) -> Callable[[Any], Any] | None:
    """PIL image -> float32 CHW numpy array, the same as the torch preset of `spec` gives; None
    where only the torch preset can give it. `meta` is the exported file's metadata record."""
    args = dict(spec.preprocess_args)
    if spec.preprocess == "mnist":
        return _mnist(spec)
    if spec.preprocess == "tensor01":
        return _tensor01(spec)
    if spec.preprocess == "imagenet" and not args and isinstance(spec.source, TorchvisionSource):
        tf = meta.get("transforms")
        return _torchvision_imagenet(spec, tf) if isinstance(tf, Mapping) else None
    return None
