"""Synthetic degradations of the fusion inputs, as in Text-IF's degradation-aware training.

The network sees degraded sources and a prompt naming the degradation; the loss compares its output with
the clean sources, so the prompt tells it what to undo. Every function takes one image as a float tensor
or numpy array in [0, 1] with layout (..., H, W), returns the same type, shape and range, and draws its
random strength from the generator it is given (torch.Generator or numpy Generator): same generator
state, same result.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


class _Draw:
    """Uniform scalars and normal noise from either kind of generator, always on the CPU in float32."""

    def __init__(self, rng: torch.Generator | np.random.Generator):
        self.rng = rng

    def uniform(self, low: float, high: float) -> float:
        if isinstance(self.rng, np.random.Generator):
            return float(self.rng.uniform(low, high))
        return low + (high - low) * float(torch.rand((), generator=self.rng))

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        if isinstance(self.rng, np.random.Generator):
            return torch.from_numpy(self.rng.standard_normal(shape, dtype=np.float32))
        return torch.randn(shape, generator=self.rng)


def _as_tensor(img) -> tuple[torch.Tensor, bool]:
    if isinstance(img, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)), True
    return img, False


def _noise(shape, draw: _Draw, device, dtype) -> torch.Tensor:
    return draw.normal(tuple(shape)).to(device=device, dtype=dtype)


# ---- visible degradations -------------------------------------------------------------------------

def vis_low_light(img: torch.Tensor, draw: _Draw) -> torch.Tensor:
    """Night: a gamma curve darkens the mid-tones, a gain dims everything, sensor noise shows."""
    gamma, gain, sigma = draw.uniform(1.8, 3.5), draw.uniform(0.15, 0.5), draw.uniform(0.005, 0.03)
    dark = gain * img.clamp(0, 1) ** gamma
    return (dark + sigma * _noise(img.shape, draw, img.device, img.dtype)).clamp(0, 1)


def vis_overexposure(img: torch.Tensor, draw: _Draw) -> torch.Tensor:
    """Glare: an inverse gamma lifts the mid-tones, a gain and an offset push the highlights into clipping."""
    gamma, gain, offset = draw.uniform(1.8, 3.5), draw.uniform(1.2, 1.8), draw.uniform(0.05, 0.25)
    return (gain * img.clamp(0, 1) ** (1.0 / gamma) + offset).clamp(0, 1)


def vis_noise(img: torch.Tensor, draw: _Draw) -> torch.Tensor:
    """Additive white gaussian noise, sigma 10..35 on the 0..255 scale."""
    sigma = draw.uniform(10.0, 35.0) / 255.0
    return (img + sigma * _noise(img.shape, draw, img.device, img.dtype)).clamp(0, 1)


def vis_haze(img: torch.Tensor, draw: _Draw) -> torch.Tensor:
    """Atmospheric scattering I = J t + A (1 - t), t = exp(-beta d).

    Road scenes put the far field near the horizon, so the depth d is a vertical ramp, largest at a random
    horizon row and falling off towards the bottom (the road in front of the car)."""
    H, W = img.shape[-2:]
    beta, airlight = draw.uniform(1.0, 2.8), draw.uniform(0.7, 1.0)
    horizon = draw.uniform(-0.2, 0.5)  # in image heights from the top
    rows = torch.linspace(0.0, 1.0, H, device=img.device, dtype=img.dtype)
    depth = (1.0 - 0.8 * (rows - horizon).abs().clamp(max=1.0)).clamp(min=0.2)  # (H,)
    t = torch.exp(-beta * depth).view(H, 1).expand(H, W)  # (H, W)
    return (img * t + airlight * (1 - t)).clamp(0, 1)


def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
    k = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    shape = img.shape
    flat = img.reshape(-1, 1, *shape[-2:])  # (N, 1, H, W)
    # replicate padding works for any size, even a crop smaller than the kernel
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return flat.reshape(shape)


def vis_blur(img: torch.Tensor, draw: _Draw) -> torch.Tensor:
    """Defocus / motion softness: a gaussian blur, sigma 1..3 pixels."""
    return _gaussian_blur(img, draw.uniform(1.0, 3.0)).clamp(0, 1)


# ---- infrared degradations ------------------------------------------------------------------------

def ir_low_contrast(img: torch.Tensor, draw: _Draw) -> torch.Tensor:
    """A flat thermal scene: intensities squeezed to 20..50% of their spread around a mid-gray level."""
    factor, level = draw.uniform(0.2, 0.5), draw.uniform(0.35, 0.65)
    mean = img.mean(dim=(-2, -1), keepdim=True)
    return (level + factor * (img - mean)).clamp(0, 1)


def ir_noise(img: torch.Tensor, draw: _Draw) -> torch.Tensor:
    """Thermal sensor noise: additive gaussian, sigma 10..35 on the 0..255 scale."""
    sigma = draw.uniform(10.0, 35.0) / 255.0
    return (img + sigma * _noise(img.shape, draw, img.device, img.dtype)).clamp(0, 1)


def ir_stripe_noise(img: torch.Tensor, draw: _Draw) -> torch.Tensor:
    """Fixed-pattern noise of microbolometer arrays: one gain and one offset per column, plus a little
    white noise."""
    H, W = img.shape[-2:]
    offset_sigma, gain_sigma = draw.uniform(0.03, 0.10), draw.uniform(0.0, 0.08)
    offsets = offset_sigma * _noise((W,), draw, img.device, img.dtype)  # (W,)
    gains = 1.0 + gain_sigma * _noise((W,), draw, img.device, img.dtype)  # (W,)
    white = 0.01 * _noise(img.shape, draw, img.device, img.dtype)
    return (img * gains + offsets + white).clamp(0, 1)


def none(img: torch.Tensor, draw: _Draw) -> torch.Tensor:
    return img


# ---- registry -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Degradation:
    name: str
    modality: str  # "vis", "ir" or "" (none touches nothing)
    fn: Callable[[torch.Tensor, _Draw], torch.Tensor]


KINDS: dict[str, Degradation] = {d.name: d for d in (
    Degradation("vis_low_light", "vis", vis_low_light),
    Degradation("vis_overexposure", "vis", vis_overexposure),
    Degradation("vis_noise", "vis", vis_noise),
    Degradation("vis_haze", "vis", vis_haze),
    Degradation("vis_blur", "vis", vis_blur),
    Degradation("ir_low_contrast", "ir", ir_low_contrast),
    Degradation("ir_noise", "ir", ir_noise),
    Degradation("ir_stripe_noise", "ir", ir_stripe_noise),
    Degradation("none", "", none),
)}
KIND_NAMES: tuple[str, ...] = tuple(KINDS)


def degrade_image(kind: str, img, rng: torch.Generator | np.random.Generator):
    """Apply degradation `kind` to one image (..., H, W) in [0, 1], whatever its modality."""
    if kind not in KINDS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {list(KINDS)}")
    tensor, was_numpy = _as_tensor(img)
    out = KINDS[kind].fn(tensor, _Draw(rng))
    return out.numpy() if was_numpy else out


def degrade(kind: str, ir, vis, rng: torch.Generator | np.random.Generator):
    """Degrade the source that `kind` touches; the other comes back unchanged. Returns (ir, vis)."""
    modality = KINDS[kind].modality if kind in KINDS else None
    if modality is None:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {list(KINDS)}")
    if modality == "ir":
        ir = degrade_image(kind, ir, rng)
    elif modality == "vis":
        vis = degrade_image(kind, vis, rng)
    return ir, vis


def degrade_fixed(kind: str, ir, vis, seed: int):
    """Deterministic degradation for validation: the strength depends only on (kind, seed)."""
    rng = torch.Generator().manual_seed((zlib.crc32(kind.encode()) * 1_000_003 + int(seed)) % (2 ** 63))
    return degrade(kind, ir, vis, rng)
