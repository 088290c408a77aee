"""The book's deep CNN for MNIST (chapter 8, `DeepConvNet`), layer for layer.

Input 1x28x28 in [0, 1]. Six 3x3 convolutions (16, 16 | 32, 32 | 64, 64) with ReLU and a 2x2
max-pool after each pair; the fourth convolution pads by 2 (as in the book), so the map is
14 -> 16 -> 8 before the last block and 64x4x4 = 1024 features reach the classifier:
linear 1024->50, ReLU, dropout 0.5, linear 50->10, dropout 0.5. 123,552 parameters.

Dropout here is PyTorch's inverted dropout (scale by 1/(1-p) while training, identity at test
time); the book instead multiplies by (1-p) at test time. The importer for the book's parameters
folds those two factors into the last linear layer, so the logits agree with the book's.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# (in, out, padding) of the six convolutions; a max-pool follows every second one.
CONV_LAYERS: tuple[tuple[int, int, int], ...] = (
    (1, 16, 1), (16, 16, 1),
    (16, 32, 1), (32, 32, 2),
    (32, 64, 1), (64, 64, 1),
)


class DeepConvNet(nn.Module):
    """The book's DeepConvNet. `hidden` (50) and `dropout` (0.5) are the book's values;
    `logit_dropout` (default: `dropout`, the book's placement) is the dropout on the logits. Setting
    it to 0 keeps the network (and its weights files) the same and only changes training."""

    def __init__(self, num_classes: int = 10, hidden: int = 50, dropout: float = 0.5,
                 logit_dropout: float | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (cin, cout, pad) in enumerate(CONV_LAYERS):
            layers += [nn.Conv2d(cin, cout, 3, padding=pad), nn.ReLU(inplace=True)]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
            nn.Dropout(dropout if logit_dropout is None else logit_dropout),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation as in the book: N(0, sqrt(2 / fan_in)), biases zero."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                with torch.no_grad():
                    m.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
                    m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def conv_layers(self) -> list[nn.Conv2d]:
        return [m for m in self.features if isinstance(m, nn.Conv2d)]

    def linear_layers(self) -> list[nn.Linear]:
        return [m for m in self.classifier if isinstance(m, nn.Linear)]


def build_deepconvnet(num_classes: int = 10, hidden: int = 50, dropout: float = 0.5) -> DeepConvNet:
    return DeepConvNet(num_classes=num_classes, hidden=hidden, dropout=dropout)
