"""What a weights entry is: an architecture plus where its tensors come from and how to feed it.

Torch-free on purpose: `dl weights list` and the registry can describe entries without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Union


@dataclass(frozen=True)
class Arch:
    """A buildable architecture. `build(**config)` returns a randomly initialised nn.Module and
    never downloads anything."""

    name: str
    task: str
    build: Callable[..., Any]
    description: str = ""
    # Kwargs passed to `build` when an entry gives none (e.g. num_classes for torchvision models).
    default_config: dict[str, Any] = field(default_factory=dict)
    # Called as finalize(model, config) after the weights are loaded (e.g. drop training-only heads).
    finalize: Callable[..., Any] | None = None
    # Config changes that make a fine-tuned model's state dict (saved after finalize) rebuild
    # exactly (e.g. GoogLeNet without its auxiliary heads).
    finetune_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BundledSource:
    """A file we trained, shipped in weights/ (and inside the wheel as dlcli/_bundled)."""

    filename: str
    sha256: str
    kind: str = "bundled"


@dataclass(frozen=True)
class UrlSource:
    """A file to download (http(s) or file://), verified against its full SHA-256."""

    url: str
    sha256: str
    filename: str
    kind: str = "url"


@dataclass(frozen=True)
class TorchvisionSource:
    """A torchvision Weights enum member, reused as is (url, transforms, categories, metrics).

    `enum` is "ResNet50_Weights.IMAGENET1K_V2"; it is looked up in torchvision.models only when
    needed. torchvision publishes a SHA-256 prefix in each file name; the full hash is recorded in
    the cache index the first time the file is verified, and `dl weights verify` checks it after."""

    enum: str
    kind: str = "torchvision"


@dataclass(frozen=True)
class PackageSource:
    """A file inside an installed pip package (weights that `pip install` brings offline)."""

    module: str
    resource: str
    sha256: str
    pip_name: str
    kind: str = "package"


@dataclass(frozen=True)
class ImportedSource:
    """A local file a user brought in with `dl weights import` (stored under $DL_HOME/imported)."""

    filename: str
    sha256: str
    original: str = ""
    kind: str = "imported"


Source = Union[BundledSource, UrlSource, TorchvisionSource, PackageSource, ImportedSource]


@dataclass(frozen=True)
class WeightsSpec:
    """A named weights entry `arch.tag` (e.g. `resnet50.imagenet`, `deepconvnet.mnist`)."""

    name: str
    arch: str
    task: str
    source: Source
    # Name of a preprocessing preset (dlcli/weights/presets.py) and its arguments.
    preprocess: str = "imagenet"
    preprocess_args: dict[str, Any] = field(default_factory=dict)
    # Class names; None means "ask the source" (torchvision meta categories).
    labels: tuple[str, ...] | None = None
    license: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    # Extra facts the task needs (e.g. a caption vocabulary file, DQN game name).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else ""

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (used by `dl weights list/info --json`)."""
        src = {k: v for k, v in self.source.__dict__.items()}
        return {
            "name": self.name,
            "arch": self.arch,
            "task": self.task,
            "source": src,
            "preprocess": self.preprocess,
            "preprocess_args": dict(self.preprocess_args),
            "labels": len(self.labels) if self.labels is not None else None,
            "license": self.license,
            "metrics": dict(self.metrics),
            "recipe": self.recipe,
            "config": dict(self.config),
            "description": self.description,
        }


def split_name(name: str) -> tuple[str, str]:
    """`resnet50.imagenet` -> ("resnet50", "imagenet"). The tag may not be empty."""
    arch, sep, tag = name.partition(".")
    if not sep or not arch or not tag:
        raise ValueError(name)
    return arch, tag
