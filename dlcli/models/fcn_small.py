"""A small fully convolutional network (FCN, Long et al. 2015; the book's 8.4) for 128x128 scenes.

Only convolutions: an encoder downsamples by 16 in four stages; 1x1 convolutions turn the stage-4,
stage-3 and stage-2 features into per-class scores, which are upsampled and summed coarse-to-fine
("FCN-4s" skips) by transposed convolutions initialised to bilinear interpolation, and a last
transposed convolution (stride 4) brings the scores back to the input size. Any input whose sides
are multiples of 16 works; other sizes are padded and cropped back in `forward`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights (in, out, k, k) that make a ConvTranspose2d do bilinear upsampling, channel by channel."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    for c in range(min(in_channels, out_channels)):
        weight[c, c] = filt
    return weight


def bilinear_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A learnable x`factor` upsampler that starts as exact bilinear interpolation."""
    k = 2 * factor
    up = nn.ConvTranspose2d(channels, channels, kernel_size=k, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, channels, k))
    return up


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class FCNSmall(nn.Module):
    """FCN with bilinear-initialised transposed-conv upsampling.

    Args:
        num_classes: output channels (background included).
        width: channels of the first stage; later stages use 2x, 4x, 6x.
    """

    def __init__(self, num_classes: int = 5, width: int = 16) -> None:
        super().__init__()
        w = int(width)
        self.num_classes = int(num_classes)
        self.stage1 = _block(3, w, 2)  # /2
        self.stage2 = _block(w, 2 * w, 2)  # /4
        self.stage3 = _block(2 * w, 4 * w, 2)  # /8
        # Dilation widens the receptive field at /16 so a large shape is seen whole.
        self.stage4 = nn.Sequential(
            _block(4 * w, 6 * w, 2),
            nn.Conv2d(6 * w, 6 * w, 3, padding=2, dilation=2, bias=False),
            nn.BatchNorm2d(6 * w),
            nn.ReLU(inplace=True),
        )
        self.score4 = nn.Conv2d(6 * w, num_classes, 1)
        self.score3 = nn.Conv2d(4 * w, num_classes, 1)
        self.score2 = nn.Conv2d(2 * w, num_classes, 1)
        self.up4 = bilinear_upsampler(num_classes, 2)  # /16 -> /8
        self.up3 = bilinear_upsampler(num_classes, 2)  # /8 -> /4
        self.up_out = bilinear_upsampler(num_classes, 4)  # /4 -> /1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % 16, (-w) % 16
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        f2 = self.stage2(self.stage1(x))
        f3 = self.stage3(f2)
        f4 = self.stage4(f3)
        s = self.up4(self.score4(f4)) + self.score3(f3)
        s = self.up3(s) + self.score2(f2)
        return self.up_out(s)[..., :h, :w]
