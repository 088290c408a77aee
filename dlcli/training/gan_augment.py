"""Augmenting what a GAN's discriminator sees (Zhao et al. 2020, "Differentiable augmentation for
data-efficient GAN training"): the same random edit goes on real and generated images before D, and
it is differentiable, so G still gets D's gradient through it.

Translation is the edit kept here. A DCGAN discriminator of stride-2 convs can tell fakes from reals
by pixel-grid-aligned texture alone: on MNIST a fresh D trained against a fixed generator told them
apart at AUC 0.99 while ranking malformed and well-formed fakes at chance, and shifting the fakes by
one pixel moved them to the real side (benchmarks/dcgan_d_probe.py --checkpoint). Random shifts take
that cue away. They do not by themselves make D judge shape; the trainer's --class-entropy does that.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

AUGMENTS = ("none", "translate")


def translate(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift each image of (N, C, H, W) by its own random whole-pixel offset in [-max_shift, max_shift]
    on both axes; the border repeats the edge pixels (MNIST's black background)."""
    if max_shift <= 0:
        return x
    n, c, h, w = x.shape
    r = max_shift
    padded = F.pad(x, (r, r, r, r), mode="replicate")
    dy = torch.randint(0, 2 * r + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * r + 1, (n,), device=x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * r)
    padded = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    return padded.gather(3, cols)


class AugmentedD(nn.Module):
    """D behind an augmentation: what train_step calls D during training. The wrapped D is what
    the checkpoint stores (state_dict keys are unchanged: this module owns no parameters of its own)."""

    def __init__(self, d: nn.Module, augment: str, max_shift: int) -> None:
        super().__init__()
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        self.d = d
        self.augment = augment
        self.max_shift = max_shift

    def _seen(self, x: torch.Tensor) -> torch.Tensor:
        return translate(x, self.max_shift) if self.augment == "translate" else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d(self._seen(x))

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.d.forward_both(self._seen(x))


def default_shift(image_size: int) -> int:
    """DiffAugment shifts by up to 1/8 of the side: 3 px at 28 (MNIST digits sit in a 4-px border)."""
    return max(1, image_size // 8)
