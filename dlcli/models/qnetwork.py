"""The Nature DQN Q-network (Mnih et al., 2015): 4 stacked 84x84 grey frames -> one Q-value per action."""

from __future__ import annotations

import torch
from torch import nn


class QNetwork(nn.Module):
    """Conv 32 8x8/4 -> conv 64 4x4/2 -> conv 64 3x3/1 -> FC 512 -> n_actions, ReLU between.

    Built from `n_actions` alone so that weights load without an environment. The input may be
    uint8 frames (0..255, what the replay buffer stores) or floats already in [0, 1]."""

    def __init__(self, n_actions: int, frames: int = 4) -> None:
        super().__init__()
        if n_actions < 1:
            raise ValueError(f"n_actions must be >= 1, got {n_actions}")
        self.n_actions = int(n_actions)
        self.frames = int(frames)
        self.features = nn.Sequential(
            nn.Conv2d(frames, 32, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Linear(512, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Scaling lives in the model so uint8 observations go straight in (4x less to move).
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return self.head(self.features(x))
