"""`dl summary MODEL`: per layer output shape, parameters, multiply-accumulates and receptive field
(the book's section 8.1.3), from one forward pass of a randomly initialised model with hooks.

No weights are needed: shapes, counts and receptive fields depend on the architecture only.

Receptive fields follow tensors through the network: every leaf module's output is tagged with
(rf, jump) computed from its input's tag, rf_out = rf_in + (k - 1) * dilation * jump_in and
jump_out = jump_in * stride (the standard recurrence). Tags are keyed by the tensor's storage, so
in-place ops (ResNet's `out += identity; relu_`) keep them; a tensor made by a functional op
(torch.cat, x + y, squeeze-excitation's x * scale) is unknown and takes the largest field seen so
far among tensors of its spatial size, which is exact for branches that merge at equal jump
(Inception, ResNet) and ignores the global context of squeeze-excitation gates, as is customary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dlcli.errors import InputError, WeightsError
from dlcli.weights import registry
from dlcli.weights.presets import input_shape_for

if TYPE_CHECKING:
    from dlcli.results import ModelSummary


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def macs_of(module: Any, inputs: tuple[Any, ...], output: Any) -> int:
    """Multiply-accumulates of one call of a conv or linear layer (others count 0: their cost is
    elementwise and small beside these)."""
    import torch.nn as nn

    if not hasattr(output, "shape"):
        return 0
    if isinstance(module, nn.modules.conv._ConvNd):
        kernel = 1
        for k in module.kernel_size:
            kernel *= int(k)
        per_output = (module.in_channels // module.groups) * kernel
        return int(output.numel()) * per_output
    if isinstance(module, nn.Linear):
        return int(output.numel()) * module.in_features
    return 0


def _is_primitive(module: Any) -> bool:
    """A layer counted as one, even when it has children: third-party subclasses of the torch
    layers (EfficientNet-Lite's Conv2dStaticSamePadding holds its padding as a child module)."""
    import torch.nn as nn

    return isinstance(module, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._NormBase,
                               nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd))


def layer_modules(model: Any) -> list[tuple[str, Any]]:
    """The modules that are layers, in registration order: leaves, and torch layer subclasses
    whose own children (padding helpers) are then skipped."""
    out: list[tuple[str, Any]] = []

    def walk(prefix: str, module: Any) -> None:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if _is_primitive(child) or not any(True for _ in child.children()):
                out.append((full, child))
            else:
                walk(full, child)

    walk("", model)
    return out


_leaf_modules = layer_modules


def _kernel_stride_dilation(module: Any, x: Any) -> tuple[int, int, int] | None:
    """How a module moves the receptive field (one spatial axis; these nets are square), or None
    when it leaves it unchanged (elementwise, norms)."""
    import torch.nn as nn

    if isinstance(module, nn.modules.conv._ConvNd) and len(module.kernel_size) == 2:
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            return None
        return _pair(module.kernel_size)[0], _pair(module.stride)[0], _pair(module.dilation)[0]
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        stride = module.stride if module.stride is not None else module.kernel_size
        dilation = getattr(module, "dilation", 1)
        return _pair(module.kernel_size)[0], _pair(stride)[0], _pair(dilation)[0]
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and hasattr(x, "shape") and x.dim() == 4:
        out = _pair(module.output_size if module.output_size is not None else x.shape[-1])[0]
        size = int(x.shape[-1])
        if out == 1:
            return size, size, 1
        stride = size // out
        return size - (out - 1) * stride, stride, 1
    return None


def layer_table(model: Any, input_shape: tuple[int, ...], name: str = "model") -> tuple[Any, ...]:
    """Hook every leaf module, run one forward pass on zeros of `input_shape` (C, H, W) and
    return a LayerSummary per layer call, in execution order."""
    import torch
    import torch.nn as nn

    from dlcli.results import LayerSummary

    tags: dict[int, tuple[int, int]] = {}  # storage pointer -> (rf, jump)
    alive: list[Any] = []  # tagged tensors stay referenced so that no storage is reused mid-pass
    rows: list[dict[str, Any]] = []
    by_size: dict[tuple[int, int], tuple[int, int]] = {}  # (H, W) -> largest (rf, jump) seen at that size

    def key(t: Any) -> int | None:
        return t.untyped_storage().data_ptr() if isinstance(t, torch.Tensor) else None

    def tag_of(t: Any) -> tuple[int, int] | None:
        k = key(t)
        if k is not None and k in tags:
            return tags[k]
        if isinstance(t, torch.Tensor) and t.dim() == 4:
            # produced by a functional op: see the module docstring
            return by_size.get((int(t.shape[-2]), int(t.shape[-1])), (1, 1))
        return None

    def hook(module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x = inputs[0] if inputs else None
        out = output[0] if isinstance(output, (tuple, list)) else output
        rf_in = tag_of(x) if x is not None else None
        rf: tuple[int, int] | None = None
        if rf_in is not None and hasattr(out, "dim") and out.dim() == 4:
            move = _kernel_stride_dilation(module, x)
            if move is None:
                rf = rf_in
            else:
                k, s, d = move
                rf = (rf_in[0] + (k - 1) * d * rf_in[1], rf_in[1] * s)
            k_out = key(out)
            if k_out is not None:
                tags[k_out] = rf
                alive.append(out)
            size = (int(out.shape[-2]), int(out.shape[-1]))
            if rf[0] >= by_size.get(size, (0, 0))[0]:
                by_size[size] = rf
        params = sum(p.numel() for p in module.parameters(recurse=False))
        rows.append({
            "type": type(module).__name__,
            "module": module,
            "shape": tuple(int(d) for d in out.shape[1:]) if hasattr(out, "shape") else (),
            "params": int(params),
            "macs": macs_of(module, inputs, out),
            "rf": rf,
        })

    leaves = _leaf_modules(model)
    names = {id(m): n for n, m in leaves}
    handles = [m.register_forward_hook(hook) for _, m in leaves if not isinstance(m, nn.Identity)]
    x = torch.zeros((1, *input_shape))
    tags[key(x)] = (1, 1)  # type: ignore[index]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(x)
    except RuntimeError as exc:
        raise InputError(f"{name} cannot run an input of shape {tuple(input_shape)}: {str(exc).splitlines()[0]}; "
                         "give its input with --channels and --input-size") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return tuple(
        LayerSummary(
            name=names.get(id(r["module"]), "?"), type=r["type"], output_shape=r["shape"], params=r["params"],
            macs=r["macs"], receptive_field=r["rf"][0] if r["rf"] else None, jump=r["rf"][1] if r["rf"] else None,
        )
        for r in rows
    )


def summarize_module(model: Any, input_shape: tuple[int, ...], name: str = "model") -> ModelSummary:
    """The whole summary of a module: its layer table, totals and the 3x3-stack comparison."""
    from dlcli.results import ModelSummary

    layers = layer_table(model, input_shape, name)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelSummary(
        model=name, input_shape=tuple(input_shape), layers=layers, total_params=int(total),
        trainable_params=int(trainable), total_macs=sum(l.macs for l in layers), stacked_3x3=stacked_3x3_demo(),
    )


def stacked_3x3_demo(max_convs: int = 3) -> tuple[Any, ...]:
    """The book's point, measured rather than typed: n stacked 3x3 convs (one input and one output
    channel, no bias) see (2n+1)x(2n+1) with 9n weights; one kernel that sees as much has (2n+1)^2."""
    import torch.nn as nn

    from dlcli.results import StackDemo

    demos = []
    for n in range(1, max_convs + 1):
        stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, bias=False) for _ in range(n)])
        last = layer_table(stack, (1, 2 * n + 1, 2 * n + 1), f"{n} x conv3x3")[-1]
        assert last.output_shape == (1, 1, 1)  # one output pixel sees the whole (2n+1)^2 input
        rf = int(last.receptive_field or 0)
        single = nn.Conv2d(1, 1, rf, bias=False)
        demos.append(StackDemo(
            convs=n, receptive_field=rf,
            weights_stacked=sum(p.numel() for p in stack.parameters()),
            weights_single=sum(p.numel() for p in single.parameters()),
        ))
    return tuple(demos)


# What one forward pass of `dl summary` / `dl profile` may hold in activations (summed over the
# layers, times the batch), measured on the meta device before anything real is allocated.
MAX_ACTIVATION_BYTES = 2 << 30
MAX_INPUT_SIZE = 8192
MAX_CHANNELS = 1024


def activation_bytes(meta_model: Any, input_shape: tuple[int, ...], batch_size: int = 1, name: str = "model") -> int:
    """Bytes of every leaf module's float32 output for one pass of a (batch, *input_shape) input,
    computed on the meta device (shapes only, no memory)."""
    import torch
    import torch.nn as nn

    total = 0

    def count(out: Any) -> int:
        if isinstance(out, torch.Tensor):
            return out.numel() * 4
        if isinstance(out, (tuple, list)):
            return sum(count(o) for o in out)
        if isinstance(out, dict):
            return sum(count(o) for o in out.values())
        return 0

    def hook(module: Any, inputs: Any, output: Any) -> None:
        nonlocal total
        total += count(output)

    handles = [m.register_forward_hook(hook) for _, m in _leaf_modules(meta_model) if not isinstance(m, nn.Identity)]
    try:
        with torch.no_grad():
            meta_model.eval()(torch.empty((batch_size, *input_shape), device="meta"))
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise InputError(f"{name} cannot run an input of shape {tuple(input_shape)}: {lines[0] if lines else exc}; "
                         "give its input with --channels and --input-size") from None
    finally:
        for h in handles:
            h.remove()
    return total


def random_model(model: str, *, input_size: int | None = None, channels: int | None = None,
                 batch_size: int = 1) -> tuple[Any, tuple[int, ...], Any]:
    """(randomly initialised nn.Module in eval mode, input shape (C, H, W), weights entry or None)
    for an entry or architecture name. An entry's preprocessing gives the input shape; a bare
    architecture without entries is fed 3x224x224 unless --channels / --input-size say otherwise.
    The input is bounded before the model is built: its activations for `batch_size` images,
    measured on the meta device, must stay under MAX_ACTIVATION_BYTES."""
    import torch

    from dlcli.weights import loader

    if input_size is not None and not 1 <= input_size <= MAX_INPUT_SIZE:
        raise InputError(f"--input-size must be between 1 and {MAX_INPUT_SIZE} (got {input_size})")
    if channels is not None and not 1 <= channels <= MAX_CHANNELS:
        raise InputError(f"--channels must be between 1 and {MAX_CHANNELS} (got {channels})")
    spec = registry.lookup(model)
    arch = None
    if spec is None and model in {a.name for a in registry.archs()}:
        spec = next((s for s in registry.entries() if s.arch == model), None)
        if spec is None:
            arch = registry.get_arch(model)
    if spec is None and arch is None:
        registry.get(model)  # raises "unknown weights … did you mean"
        raise WeightsError(f"unknown model {model!r}")  # pragma: no cover
    if arch is not None:
        shape: tuple[int, ...] = (channels or 3, input_size or 224, input_size or 224)
        with torch.device("meta"):
            meta = arch.build(**arch.default_config)
    else:
        shape = input_shape_for(spec)
        if input_size is not None:
            shape = (shape[0], input_size, input_size)
        if channels is not None:
            shape = (channels, *shape[1:])
        loader.check_random_init(spec)
        meta = loader.build_meta(spec)
    need = activation_bytes(meta, shape, batch_size, model)
    if need > MAX_ACTIVATION_BYTES:
        raise InputError(f"{model} on {batch_size} x {'x'.join(map(str, shape))} needs about {need / 2**30:.1f} GiB of "
                         f"activations, over the limit of {MAX_ACTIVATION_BYTES >> 30} GiB; use a smaller --input-size "
                         "or --batch-size")
    if arch is not None:
        net = arch.build(**arch.default_config)
        if arch.finalize is not None:
            net = arch.finalize(net, dict(arch.default_config)) or net
        return net.eval(), shape, None
    net = loader.load_model(spec.name, task=spec.task, random_init=True).model
    return net.eval(), shape, spec


def summarize(model: str, *, input_size: int | None = None, channels: int | None = None) -> Any:
    """Summarise an architecture or weights entry (by name; built with random weights)."""
    net, shape, _ = random_model(model, input_size=input_size, channels=channels)
    return summarize_module(net, shape, name=model)
