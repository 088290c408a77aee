"""Wrap a model so that its forward takes one tensor and returns tensors only: what ONNX and
TorchScript can hold. Models return many shapes (torchvision segmenters a dict, GoogLeNet a
namedtuple while training, detectors a list of dicts per image); the adapter is chosen by running
the model once, so each wrapper stays small enough for torch.jit.script."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Detections(nn.Module):
    """A torchvision-style detector on ONE image (3, H, W) -> boxes (n, 4), labels (n,), scores (n,)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model([image])[0]
        return out["boxes"], out["labels"], out["scores"]


class DictOut(nn.Module):
    """torchvision segmenters: {"out": logits, "aux": …} -> logits."""

    def __init__(self, model: nn.Module, key: str = "out") -> None:
        super().__init__()
        self.model = model
        self.key = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[self.key]


class FirstOut(nn.Module):
    """Models returning (logits, aux…) or an object with `.logits` -> the logits."""

    def __init__(self, model: nn.Module, attr: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.attr = attr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.attr is not None:
            return getattr(out, self.attr)
        return out[0]


def tensor_graph(model: nn.Module, example: torch.Tensor, *, detector: bool = False) -> nn.Module:
    """`model` itself when it already maps a tensor to a tensor, else the wrapper that makes it so.
    Raises TypeError (with what came out) for outputs none of the wrappers handles."""
    model = model.eval()
    if detector:
        return Detections(model).eval()
    with torch.no_grad():
        out = model(example)
    if isinstance(out, torch.Tensor):
        return model
    if isinstance(out, dict) and isinstance(out.get("out"), torch.Tensor):
        return DictOut(model).eval()
    if hasattr(out, "logits") and isinstance(getattr(out, "logits"), torch.Tensor):
        return FirstOut(model, "logits").eval()
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return FirstOut(model).eval()
    raise TypeError(f"the model returns {type(out).__name__}, not a tensor")


def run_torch(graph: nn.Module, x: torch.Tensor) -> tuple[Any, ...]:
    """The graph's outputs for `x` as a tuple of float/int numpy arrays (CPU, no autograd)."""
    with torch.inference_mode():
        out = graph(x)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(o.detach().cpu().numpy() for o in outs)
