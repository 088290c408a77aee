"""Preprocessing presets: how a weights entry wants its images. An entry names its preset
(`WeightsSpec.preprocess`) and its arguments (`preprocess_args`); a task asks for the transform.

A preset factory gets (spec, args) and returns a callable PIL.Image -> CHW float tensor, plus the
PIL mode it expects ("RGB" or "L")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from dlcli.errors import WeightsError
from dlcli.weights.spec import TorchvisionSource, WeightsSpec


@dataclass(frozen=True)
class Preset:
    name: str
    factory: Callable[[WeightsSpec, dict[str, Any]], Callable[[Any], Any]]
    mode: str = "RGB"
    description: str = ""
    # (spec, args) -> the (C, H, W) the preset makes, for presets that look at the picture (the
    # digit finder refuses a blank one) and so cannot be measured on a blank image.
    shape: Callable[[WeightsSpec, dict[str, Any]], tuple[int, ...]] | None = None


_presets: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    if preset.name in _presets and _presets[preset.name] is not preset:
        raise ValueError(f"duplicate preprocessing preset {preset.name!r}")
    _presets[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    import dlcli.weights.registry as registry

    registry.ensure_loaded()  # task modules register their presets on import (dlcli.catalog)
    preset = _presets.get(name)
    if preset is None:
        raise WeightsError(f"unknown preprocessing preset {name!r} (known: {', '.join(sorted(_presets))})")
    return preset


def preset_names() -> list[str]:
    import dlcli.weights.registry as registry

    registry.ensure_loaded()
    return sorted(_presets)


def transform_for(spec: WeightsSpec) -> tuple[Callable[[Any], Any], str]:
    """(PIL image -> tensor, the PIL mode to load images in) for a weights entry."""
    preset = get_preset(spec.preprocess)
    return preset.factory(spec, dict(spec.preprocess_args)), preset.mode


def _imagenet(spec: WeightsSpec, args: dict[str, Any]) -> Callable[[Any], Any]:
    """torchvision's own transforms for its weights (resize, crop, normalise as the enum says);
    for other entries the classic 256 -> 224 crop with ImageNet mean/std, overridable by args."""
    if isinstance(spec.source, TorchvisionSource) and not args:
        from dlcli.weights.store import torchvision_weights

        return torchvision_weights(spec.source).transforms()
    from torchvision.transforms import v2 as T
    import torch

    size = int(args.get("crop", 224))
    return T.Compose([
        T.ToImage(),
        T.Resize(int(args.get("resize", 256)), antialias=True),
        T.CenterCrop(size),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(args.get("mean", [0.485, 0.456, 0.406]), args.get("std", [0.229, 0.224, 0.225])),
    ])


register_preset(Preset("imagenet", _imagenet, "RGB", "torchvision's transforms (resize, centre crop, ImageNet mean/std)"))


# --- presets for weights that were not trained with torchvision's preprocessing ----------------


def _caffe(spec: WeightsSpec, args: dict[str, Any]) -> Callable[[Any], Any]:
    """Caffe's ImageNet preprocessing (the original SqueezeNet, VGG, GoogLeNet releases): the
    shorter side to 256, a centre crop of 227, channels swapped to BGR, values kept in 0..255 with
    the per-channel mean (B, G, R) = (104, 117, 123) subtracted and no division by a std."""
    from torchvision.transforms import v2 as T
    import torch

    mean_bgr = torch.tensor(args.get("mean", [104.0, 117.0, 123.0]), dtype=torch.float32).view(3, 1, 1)
    to_tensor = T.Compose([
        T.ToImage(),
        T.Resize(int(args.get("resize", 256)), antialias=True),
        T.CenterCrop(int(args.get("crop", 227))),
        T.ToDtype(torch.float32, scale=False),  # keep 0..255, as Caffe did
    ])

    def transform(img: Any) -> Any:
        return to_tensor(img).flip(0) - mean_bgr  # RGB -> BGR, then mean subtraction

    return transform


def _efficientnet_lite(spec: WeightsSpec, args: dict[str, Any]) -> Callable[[Any], Any]:
    """TensorFlow's EfficientNet-Lite preprocessing: a centre crop of crop/(crop+32) of the shorter
    side resized to `crop` (224 for lite0), values mapped to about -1..1 by (x - 127) / 128
    (the Lite models use these constants instead of ImageNet's mean and std)."""
    crop = int(args.get("crop", 224))
    return _imagenet(spec, {
        "resize": int(args.get("resize", crop + 32)),
        "crop": crop,
        "mean": [127.0 / 255.0] * 3,
        "std": [128.0 / 255.0] * 3,
    })


register_preset(Preset("caffe", _caffe, "RGB", "Caffe: 256 -> 227 crop, BGR, 0..255 minus mean (104, 117, 123)"))
register_preset(Preset("efficientnet-lite", _efficientnet_lite, "RGB",
                       "EfficientNet-Lite (TF): 256 -> 224 crop, (x - 127) / 128"))


# --- turning a preprocessed tensor back into a picture (what the network saw) -----------------

# preset name -> function(spec, tensor CHW) -> tensor CHW in 0..1, RGB or grey. Presets without one
# are shown by min-max scaling each image, which is exact up to contrast for any affine preset.
_displays: dict[str, Callable[[WeightsSpec, Any], Any]] = {}


def register_display(preset: str, fn: Callable[[WeightsSpec, Any], Any]) -> None:
    _displays[preset] = fn


def _undo_normalize(mean: Any, std: Any) -> Callable[[WeightsSpec, Any], Any]:
    def undo(spec: WeightsSpec, x: Any) -> Any:
        import torch

        m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
        s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
        return x * s + m

    return undo


def _imagenet_display(spec: WeightsSpec, x: Any) -> Any:
    args = dict(spec.preprocess_args)
    if isinstance(spec.source, TorchvisionSource) and not args:
        from dlcli.weights.store import torchvision_weights

        tf = torchvision_weights(spec.source).transforms()
        return _undo_normalize(tf.mean, tf.std)(spec, x)
    return _undo_normalize(args.get("mean", [0.485, 0.456, 0.406]), args.get("std", [0.229, 0.224, 0.225]))(spec, x)


def _caffe_display(spec: WeightsSpec, x: Any) -> Any:
    import torch

    mean_bgr = torch.tensor(spec.preprocess_args.get("mean", [104.0, 117.0, 123.0]), dtype=x.dtype).view(3, 1, 1)
    return ((x + mean_bgr) / 255.0).flip(0)  # BGR -> RGB


register_display("imagenet", _imagenet_display)
register_display("caffe", _caffe_display)
register_display("efficientnet-lite", _undo_normalize([127.0 / 255.0] * 3, [128.0 / 255.0] * 3))


def to_display(spec: WeightsSpec, tensor: Any) -> Any:
    """A preprocessed CHW tensor -> a PIL image of what the network saw (RGB for 3 channels,
    grey for 1): the preset's inverse when it has one, else a min-max stretch of the tensor."""
    import torch
    from PIL import Image

    x = tensor.detach().to("cpu", torch.float32)
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise WeightsError(f"cannot show a preprocessed tensor of shape {tuple(x.shape)} as an image")
    undo = _displays.get(spec.preprocess)
    if undo is not None:
        x = undo(spec, x)
    else:
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    arr = (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0].numpy(), "L")
    return Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy(), "RGB")


def input_shape_for(spec: Any) -> tuple[int, ...]:
    """(C, H, W) the entry's preprocessing produces: the preset's own `shape` where it has one
    (content-dependent presets such as the digit finder), else found by running it on a blank
    picture, so every preset (ImageNet 224, Caffe 227, MNIST 28x28 grey…) gives the right shape."""
    from PIL import Image

    preset = get_preset(spec.preprocess)
    if preset.shape is not None:
        return tuple(int(d) for d in preset.shape(spec, dict(spec.preprocess_args)))
    transform, mode = transform_for(spec)
    blank = Image.new(mode, (320, 320), 255 if mode == "L" else (255, 255, 255))
    return tuple(int(d) for d in transform(blank).shape)
