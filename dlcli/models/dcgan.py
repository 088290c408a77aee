"""DCGAN (Radford, Metz, Chintala 2015): a generator of transposed convolutions from a latent
vector to an image, and a discriminator of strided convolutions from an image to one logit.

Rules from the paper: no pooling (strided convs down, transposed convs up), batch norm in both
nets except the generator's output and the discriminator's input layer, ReLU in G with a tanh
output in [-1, 1], LeakyReLU(0.2) in D. Weights start from N(0, 0.02) (BN gains from N(1, 0.02)).

The one departure on offer, `upsample="resize"`, swaps G's strided transposed convs for nearest 2x
upsampling and a 3x3 conv (see `_up`); the bundled MNIST generator uses it.

Sizes: 28 and 32 (grey or colour, two/three up-steps from 7x7 or 4x4) and 64 (four up-steps
from 4x4). Torch only: no I/O, no device code.
"""

from __future__ import annotations

import torch
from torch import nn

SIZES = (28, 32, 64)


def _plan(image_size: int) -> tuple[int, int]:
    """(side of the first feature map, number of 2x up/down steps) for an image size."""
    if image_size == 28:
        return 7, 2
    if image_size == 32:
        return 4, 3
    if image_size == 64:
        return 4, 4
    raise ValueError(f"DCGAN image_size must be one of {SIZES}, got {image_size}")


def init_weights(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: conv weights ~ N(0, 0.02), BN gains ~ N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


UPSAMPLES = ("transposed", "resize")


def _up(cin: int, cout: int, upsample: str) -> list[nn.Module]:
    """One 2x up-step. "transposed" is the paper's 4x4 stride-2 transposed conv. Its kernel overlaps
    unevenly, which stamps a checkerboard on the output in phase with the 2x2 pixel grid (Odena et al.
    2016, "Deconvolution and checkerboard artifacts"). "resize" (nearest 2x, then a 3x3 conv) has no
    uneven overlap. On MNIST it trained faster (benchmarks/dcgan_d_probe.py and the README tell the
    measurements); a stride-2 discriminator can still find some grid-aligned texture, which is what
    the trainer's --augment translate takes away."""
    if upsample == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1, bias=False)]
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)]


class Generator(nn.Module):
    """z (N, latent_dim) -> image (N, channels, image_size, image_size) in [-1, 1].

    `width` is the channel count of the last hidden layer; each earlier layer doubles it.
    `upsample`: "transposed" (the paper's) | "resize" (see `_up`)."""

    def __init__(self, latent_dim: int = 100, channels: int = 1, image_size: int = 28, width: int = 64,
                 upsample: str = "transposed") -> None:
        super().__init__()
        if upsample not in UPSAMPLES:
            raise ValueError(f"Generator upsample must be one of {UPSAMPLES}, got {upsample!r}")
        self.latent_dim = latent_dim
        self.channels = channels
        self.image_size = image_size
        start, steps = _plan(image_size)
        top = width * 2 ** (steps - 1)
        # Project z to the first feature map with a transposed conv over a 1x1 input (as the
        # paper's reference code does), so the whole net is convolutional.
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, top, start, 1, 0, bias=False),
            nn.BatchNorm2d(top),
            nn.ReLU(True),
        ]
        ch = top
        for _ in range(steps - 1):
            layers += [*_up(ch, ch // 2, upsample), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [*_up(ch, channels, upsample), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim, 1, 1))


D_NORMS = ("batch", "spectral")


class Discriminator(nn.Module):
    """image (N, channels, image_size, image_size) in [-1, 1] -> logit (N,) (real > 0).

    `norm`: "batch" is the paper's (BN after every conv but the first); "spectral" drops BN and
    bounds each conv's spectral norm instead (Miyato et al. 2018), which keeps D's gradients to G
    well-scaled and lets D take a larger learning rate than G (the TTUR recipe)."""

    def __init__(self, channels: int = 1, image_size: int = 28, width: int = 64, norm: str = "batch",
                 classes: int = 0) -> None:
        super().__init__()
        if norm not in D_NORMS:
            raise ValueError(f"Discriminator norm must be one of {D_NORMS}, got {norm!r}")
        self.channels = channels
        self.image_size = image_size
        start, steps = _plan(image_size)
        spectral = norm == "spectral"

        def conv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Module:
            c = nn.Conv2d(cin, cout, k, s, p, bias=spectral)
            return nn.utils.parametrizations.spectral_norm(c) if spectral else c

        layers: list[nn.Module] = [conv(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = width
        for _ in range(steps - 1):
            layers += [conv(ch, ch * 2, 4, 2, 1)]
            if not spectral:
                layers += [nn.BatchNorm2d(ch * 2)]
            layers += [nn.LeakyReLU(0.2, True)]
            ch *= 2
        # One conv over the whole last map gives the logit.
        layers += [conv(ch, 1, start, 1, 0)]
        self.net = nn.Sequential(*layers)
        # classes > 0: a second head on the same features that names the class of a real image (the
        # trainer's --class-entropy). It makes D's features know what a digit looks like.
        self.aux = conv(ch, classes, start, 1, 0) if classes > 0 else None
        if not spectral:
            self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(real/fake logit (N,), class logits (N, classes)); needs classes > 0."""
        if self.aux is None:
            raise ValueError("this Discriminator has no class head (classes=0)")
        h = self.net[:-1](x)
        return self.net[-1](h).flatten(), self.aux(h).flatten(1)
