"""Reconstruction heads (SwinFusion's `upsampler` values), from the decoded feature to the image."""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

NUM_FEAT = 64  # SwinIR/SwinFusion's width before upsampling


def _shuffle_up(scale: int, feat: int) -> nn.Sequential:
    layers = []
    if scale == 3:
        layers += [nn.Conv2d(feat, 9 * feat, 3, 1, 1), nn.PixelShuffle(3)]
    else:
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(feat, 4 * feat, 3, 1, 1), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


class ConvHead(nn.Module):
    """upsampler '': three convs, same size (SwinFusion's fusion head)."""

    def __init__(self, dim: int, out_chans: int):
        super().__init__()
        mid, low = max(dim // 2, 1), max(dim // 4, 1)
        self.body = nn.Sequential(nn.Conv2d(dim, mid, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(mid, low, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(low, out_chans, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PixelShuffleHead(nn.Module):
    """upsampler 'pixelshuffle': conv to NUM_FEAT, (conv + pixel shuffle) per factor, conv out."""

    def __init__(self, dim: int, out_chans: int, scale: int):
        super().__init__()
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))
        self.upsample = _shuffle_up(scale, NUM_FEAT)
        self.conv_last = nn.Conv2d(NUM_FEAT, out_chans, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(self.upsample(self.conv_before_upsample(x)))


class PixelShuffleDirectHead(nn.Module):
    """upsampler 'pixelshuffledirect': one conv to scale^2 * out channels and one shuffle (lightweight)."""

    def __init__(self, dim: int, out_chans: int, scale: int):
        super().__init__()
        self.upsample = nn.Sequential(nn.Conv2d(dim, scale * scale * out_chans, 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(x)


class NearestConvHead(nn.Module):
    """upsampler 'nearest+conv': nearest x2 then a conv, per factor of 2 (fewer artifacts than shuffling)."""

    def __init__(self, dim: int, out_chans: int, scale: int):
        super().__init__()
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True))
        self.conv_up = nn.ModuleList(nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1) for _ in range(int(math.log2(scale))))
        self.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
        self.conv_last = nn.Conv2d(NUM_FEAT, out_chans, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_before_upsample(x)
        for conv in self.conv_up:
            x = self.lrelu(conv(F.interpolate(x, scale_factor=2, mode="nearest")))  # (B, F, 2H, 2W)
        return self.conv_last(self.lrelu(self.conv_hr(x)))


def build_head(upsampler: str, dim: int, out_chans: int, scale: int) -> nn.Module:
    if upsampler == "":
        return ConvHead(dim, out_chans)
    if upsampler == "pixelshuffle":
        return PixelShuffleHead(dim, out_chans, scale)
    if upsampler == "pixelshuffledirect":
        return PixelShuffleDirectHead(dim, out_chans, scale)
    return NearestConvHead(dim, out_chans, scale)
