"""Feature-wise affine modulation by the prompt (FiLM; Text-IF's FeatureWiseAffine)."""

from __future__ import annotations

import torch
from torch import nn


class FiLM(nn.Module):
    def __init__(self, text_dim: int, channels: int):
        super().__init__()
        self.to_film = nn.Sequential(nn.Linear(text_dim, text_dim * 2), nn.LeakyReLU(0.2, inplace=True),
                                     nn.Linear(text_dim * 2, channels * 2))
        # Start as the identity ((1 + 0) * x + 0): an untrained prompt path leaves the fusion untouched.
        nn.init.zeros_(self.to_film[-1].weight)
        nn.init.zeros_(self.to_film[-1].bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C); text: (B, D) -> (B, H, W, C) = (1 + gamma) * x + beta."""
        gamma, beta = self.to_film(text).chunk(2, dim=-1)  # (B, D) -> (B, 2C) -> 2 x (B, C)
        return torch.addcmul(beta[:, None, None, :], x, 1 + gamma[:, None, None, :])  # one pass, one new map
