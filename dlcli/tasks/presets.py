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


_presets: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    if preset.name in _presets and _presets[preset.name] is not preset:
        raise ValueError(f"duplicate preprocessing preset {preset.name!r}")
    _presets[preset.name] = preset
    return preset


def get_preset(name: str) -> Preset:
    import dlcli.weights.registry as registry

    registry.ensure_loaded()  # task modules register their presets on import
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
