"""`dl profile MODEL`: where the time of a forward pass goes, per layer type (conv, pool, fc, norm,
activation, other) — the book's figure 8-14 (conv ~89% of AlexNet's time on a CPU, ~95% on a GPU).

Method: forward hooks on every leaf module time each call between two device synchronisations
(so GPU kernels are counted where they run, not where they were queued), after warm-up passes,
over repeated passes (per layer type the median pass counts, so one preemption on a busy machine
does not skew a share). A plain forward pass is timed too: the difference between it and the
hooked layers' sum is work done outside modules (functional adds, concatenations,
flattening) plus the hooks' own cost; it is reported under "other (outside modules)" so that the
shares of the named types are never inflated.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from dlcli.errors import InputError

if TYPE_CHECKING:  # typing only: the device manager imports torch
    from dlcli.results import ProfileReport
    from dlcli.device import Runtime

CATEGORIES = ("conv", "pool", "fc", "norm", "activation", "other")


def category_of(module: Any) -> str:
    import torch.nn as nn

    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                           nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
        return "pool"
    if isinstance(module, (nn.Linear, nn.Bilinear)):
        return "fc"
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)):
        return "norm"
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid,
                           nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Softmax)):
        return "activation"
    name = type(module).__name__.lower()
    if "swish" in name or "relu" in name:  # third-party activations (EfficientNet's Swish)
        return "activation"
    return "other"


def profile_module(model: Any, runtime: Runtime, input_shape: tuple[int, ...], *, batch_size: int = 1,
                   warmup: int = 3, repeats: int = 10, name: str = "model", weights: str | None = None) -> ProfileReport:
    """Time `model` (already on the runtime's device, in eval mode) on random input."""
    import torch

    from dlcli.results import ProfileReport, ProfileShare, Provenance

    if warmup < 0 or repeats < 1:
        raise InputError(f"--warmup must be >= 0 and --repeats >= 1 (got {warmup}, {repeats})")
    x = runtime.to(torch.randn((batch_size, *input_shape)), channels_last=runtime.device.type == "cuda")
    from dlcli.tasks.summary import layer_modules

    leaves = [m for _, m in layer_modules(model)]
    # One leaf module object may be called several times per pass (torchvision's ResNet reuses its
    # ReLU): time each call.
    # Time per layer type, one dict per recorded pass: the report takes the median pass, so one
    # preemption on a busy machine does not make a cheap layer look expensive.
    passes: list[dict[str, float]] = []
    calls: dict[str, int] = defaultdict(int)
    starts: list[float] = []
    recording = {"on": False}

    def pre(module: Any, inputs: Any) -> None:
        runtime.synchronize()
        starts.append(time.perf_counter())

    def post(module: Any, inputs: Any, output: Any) -> None:
        runtime.synchronize()
        dt = time.perf_counter() - starts.pop()
        if recording["on"]:
            spent = passes[-1]
            spent[type(module).__name__] = spent.get(type(module).__name__, 0.0) + dt
            calls[type(module).__name__] += 1

    categories_of_type: dict[str, str] = {type(m).__name__: category_of(m) for m in leaves}

    def one_pass() -> float:
        runtime.synchronize()
        t0 = time.perf_counter()
        with runtime.inference():
            model(x)
        runtime.synchronize()
        return time.perf_counter() - t0

    # 1) plain passes: the true forward time
    for _ in range(warmup):
        one_pass()
    plain = [one_pass() for _ in range(repeats)]
    # 2) hooked passes: the split by layer
    handles = [m.register_forward_pre_hook(pre) for m in leaves] + [m.register_forward_hook(post) for m in leaves]
    try:
        one_pass()  # a warm-up with hooks
        recording["on"] = True
        hooked: list[float] = []
        for _ in range(repeats):
            passes.append({})
            hooked.append(one_pass())
    finally:
        recording["on"] = False
        for h in handles:
            h.remove()

    forward = statistics.median(plain)
    per_pass = {t: statistics.median(p.get(t, 0.0) for p in passes) for t in calls}
    layer_sum = sum(per_pass.values())
    by_cat: dict[str, float] = defaultdict(float)
    cat_calls: dict[str, int] = defaultdict(int)
    for t, s in per_pass.items():
        by_cat[categories_of_type[t]] += s
        cat_calls[categories_of_type[t]] += calls[t] // repeats
    outside = max(0.0, statistics.median(hooked) - layer_sum)
    denom = layer_sum + outside
    cats = [ProfileShare(c, by_cat[c] * 1e3, by_cat[c] / denom if denom else 0.0, cat_calls[c])
            for c in CATEGORIES if by_cat.get(c)]
    cats.sort(key=lambda c: -c.ms)
    cats.append(ProfileShare("other (outside modules)", outside * 1e3, outside / denom if denom else 0.0, 0))
    types = sorted(
        (ProfileShare(t, s * 1e3, s / denom if denom else 0.0, calls[t] // repeats) for t, s in per_pass.items()),
        key=lambda c: -c.ms,
    )
    return ProfileReport(
        model=name, input_shape=(batch_size, *input_shape), warmup=warmup, repeats=repeats,
        forward_ms=forward * 1e3, hooked_ms=layer_sum * 1e3, categories=tuple(cats), layer_types=tuple(types),
        provenance=Provenance.collect(runtime, weights, None),
    )


def profile(model: str, runtime: Runtime, *, batch_size: int = 1, input_size: int | None = None,
            warmup: int = 3, repeats: int = 10) -> Any:
    """Profile an architecture or weights entry by name, randomly initialised (time does not
    depend on the weights' values)."""
    from dlcli.tasks.summary import random_model

    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1 (got {batch_size})")
    net, shape, spec = random_model(model, input_size=input_size, batch_size=batch_size)
    net = runtime.place(net, channels_last=runtime.device.type == "cuda").eval()
    return profile_module(net, runtime, shape, batch_size=batch_size, warmup=warmup, repeats=repeats, name=model,
                          weights=f"{spec.name if spec else model} (random init)")
