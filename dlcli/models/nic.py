"""NIC, "Show and Tell" (Vinyals et al., 2015): a CNN encodes the image into one vector that is the
LSTM's first input; the LSTM then reads <start>, w1, w2, … and predicts the next word each step.

Torch (and torchvision for the ResNet backbones) only: no I/O, no device code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

BACKBONES = ("resnet18", "resnet34", "resnet50", "small")

State = tuple[torch.Tensor, torch.Tensor]


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU stages (a 5x5 stride-2 stem, then 3x3 convs, max-pool between), cheap on a
    CPU: about 50 M multiply-adds for a 128-pixel image.

    `grid` > 0 average-pools the last map to grid x grid and flattens it, so the vector still says
    WHERE things are (captions like "a red circle left of a blue square" need that); grid 0 is a
    global average. Output: (B, out_dim)."""

    def __init__(self, width: int = 32, grid: int = 4) -> None:
        super().__init__()
        chans = [width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = [nn.Conv2d(3, width, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(inplace=True)]
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.MaxPool2d(2), nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.grid = grid
        self.pool = nn.AdaptiveAvgPool2d(max(grid, 1))
        self.out_dim = chans[-1] * max(grid, 1) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def make_backbone(name: str, width: int = 32, grid: int = 4) -> tuple[nn.Module, int]:
    """(module mapping images to (B, D) features, D). ResNets are torchvision's with the classifier
    removed and random weights; pretrained ImageNet weights are copied in by the trainer when asked."""
    if name == "small":
        cnn = SmallCNN(width, grid)
        return cnn, cnn.out_dim
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    import torchvision.models as tvm

    net = getattr(tvm, name)(weights=None)
    dim = net.fc.in_features
    net.fc = nn.Identity()  # type: ignore[assignment]
    return net, dim


class NIC(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int = 256, hidden_dim: int = 512, num_layers: int = 1,
                 backbone: str = "resnet18", cnn_width: int = 32, cnn_grid: int = 4, dropout: float = 0.0, pad_id: int = 0) -> None:
        super().__init__()
        if vocab_size < 5:
            raise ValueError("a caption vocabulary needs the four special tokens and at least one word")
        self.vocab_size = vocab_size
        self.cnn, feat_dim = make_backbone(backbone, cnn_width, cnn_grid)
        # The image becomes a vector in word-embedding space: the LSTM's input at step -1.
        self.project = nn.Sequential(nn.Linear(feat_dim, embed_dim), nn.BatchNorm1d(embed_dim))
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_dim, vocab_size)
        # Forget-gate bias 1 (gate order i, f, g, o): the image enters once, at step -1, and must
        # survive to the last word; a bias of 0 halves what the cell keeps at every step.
        for layer in range(num_layers):
            bias = getattr(self.lstm, f"bias_ih_l{layer}")
            with torch.no_grad():
                bias[hidden_dim: 2 * hidden_dim].fill_(1.0)
                getattr(self.lstm, f"bias_hh_l{layer}")[hidden_dim: 2 * hidden_dim].zero_()

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.cnn.parameters())

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, embed_dim) image embeddings."""
        return self.project(self.cnn(images))

    def init_state(self, features: torch.Tensor) -> State:
        """Feed the image embedding as the first input, as NIC does; its output is not a word."""
        _, state = self.lstm(features.unsqueeze(1))
        return state

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One word in ((B,) ids) -> log-probabilities of the next word ((B, V), float32) and the state."""
        out, state = self.lstm(self.embed(tokens).unsqueeze(1), state)
        logits = self.head(out.squeeze(1)).float()
        return torch.log_softmax(logits, dim=-1), state

    def forward(self, images: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher forcing. `inputs` (B, T) = <start> w1 … wN (padded); returns logits (B, T, V)
        where position t predicts inputs[t+1] (and the last real one predicts <end>)."""
        feats = self.encode(images).unsqueeze(1)
        seq = torch.cat([feats, self.embed(inputs)], dim=1)
        out, _ = self.lstm(seq)
        return self.head(self.drop(out[:, 1:]))


def build_nic(**config: Any) -> NIC:
    return NIC(**config)
