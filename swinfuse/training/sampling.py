"""Training data: several folders of aligned pairs, each with a sampling weight, and the augmentations
that make a model camera-agnostic.

A data spec is `DIR` or `DIR:WEIGHT` (weight 1 when omitted). A sample first draws a folder in
proportion to the weights, then a pair uniformly within it, so 1,079 small MSRS frames do not drown 171
RoadScene pairs. Pairs are keyed by (folder, stem): two folders may hold the same stem.

Augmentations, all drawn from the sample's own generator (a run repeats exactly):
- random rescale: the crop covers `crop / s` source pixels, resized to `crop` (antialiased), with s
  log-uniform in [1 / rescale, rescale]; the network sees small and large structures of every camera;
- intensity jitter per modality: `gain * x ** gamma` on the clean source, before any degradation, so the
  target of the loss is the jittered source (the network learns no camera's brightness);
- flips.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from swinfuse.errors import InputError


@dataclass(frozen=True)
class DataSpec:
    path: str
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "DataSpec":
        """`DIR` or `DIR:WEIGHT` -> DataSpec; a weight must be a finite number > 0."""
        head, sep, tail = str(text).rpartition(":")
        if sep and head:
            try:
                weight = float(tail)
            except ValueError:
                return cls(str(text))  # a colon that is part of the path
            if not (math.isfinite(weight) and weight > 0):
                raise InputError(f"data weight must be a number > 0, got {tail!r} in {text!r}")
            return cls(head, weight)
        return cls(str(text))

    def __str__(self) -> str:
        return self.path if self.weight == 1.0 else f"{self.path}:{self.weight:g}"


def as_specs(data) -> list[DataSpec]:
    """A str, a DataSpec or a sequence of either -> a non-empty list of DataSpec."""
    items = [data] if isinstance(data, (str, Path, DataSpec)) else list(data or [])
    specs = [d if isinstance(d, DataSpec) else DataSpec.parse(str(d)) for d in items]
    if not specs or any(not s.path for s in specs):
        raise InputError("no training data: give --data DIR (a folder with ir/ + vis/ pairs), "
                         "repeated for several folders, DIR:WEIGHT to weight one")
    return specs


def folder_pairs(root: str | Path) -> list[tuple[str, Path, Path]]:
    """Matched (stem, ir_path, vis_path) of a folder, sorted by stem; unmatched files are reported."""
    from swinfuse.data.pairs import find_pairs

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"data folder not found: {root}")
    found = find_pairs(root)
    unmatched = [p.name for p in found.unmatched_ir + found.unmatched_vis]
    if unmatched:
        print(f"warning: {root}: {len(unmatched)} unmatched files skipped: {', '.join(unmatched[:10])}",
              file=sys.stderr)
    pairs = [(p.stem, p.ir, p.vis) for p in found.pairs]
    if not pairs:
        raise InputError(f"{root} holds no image pairs (ir/ + vis/, matched by file stem)")
    return pairs


def load_pairs(pairs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Read every pair once, as `fuse` reads it: (infrared, visible Y) as (1, H, W) float32 in [0, 1]."""
    from swinfuse.data.io import read_infrared, read_visible

    out = []
    for stem, ir_path, vis_path in pairs:
        ir, vis = read_infrared(ir_path), read_visible(vis_path).y
        if ir.shape != vis.shape:
            raise InputError(f"pair {stem}: infrared {ir.shape} and visible {vis.shape} differ in size")
        out.append((torch.from_numpy(ir)[None], torch.from_numpy(vis)[None]))
    return out


@dataclass(frozen=True)
class Augment:
    rescale: float = 1.0  # s is log-uniform in [1 / rescale, rescale]; 1 = no rescale
    gamma: float = 0.0  # gamma is exp(uniform(-g, g)) per modality; 0 = none
    gain: float = 0.0  # gain is uniform(1 - g, 1) per modality; 0 = none

    def __post_init__(self):
        if not (self.rescale >= 1 and math.isfinite(self.rescale)):
            raise InputError(f"rescale must be >= 1, got {self.rescale}")
        if not 0 <= self.gamma < 2 or not 0 <= self.gain < 1:
            raise InputError(f"gamma jitter must be in [0, 2) and gain jitter in [0, 1), got {self.gamma}, {self.gain}")


def _pad_to(img: torch.Tensor, size: int) -> torch.Tensor:
    H, W = img.shape[-2:]
    if H >= size and W >= size:
        return img
    return F.pad(img[None], (0, max(0, size - W), 0, max(0, size - H)), mode="replicate")[0]


FRAME_STATS_SIDE = 128  # frame statistics are read from the frame area-downsampled to at most this side


def area_downsample(images: torch.Tensor, side: int) -> torch.Tensor:
    """(N, C, H, W) area-downsampled to at most `side` on the longer side (unchanged when already that small)."""
    scale = side / max(images.shape[-2:])
    if scale >= 1:
        return images
    return F.adaptive_avg_pool2d(images, [max(1, round(n * scale)) for n in images.shape[-2:]])


def whole_frame_stats(ir: torch.Tensor, vis: torch.Tensor,
                      jitter=((1.0, 1.0), (1.0, 1.0)), extra=None) -> tuple[float, ...]:
    """The whole (1, H, W) frame's statistics, intensity-jittered by ((gain, gamma) per modality): (shift, mean ir,
    mean vis), the shift being what moves max(ir, vis) to the brighter source's mean: max(mean ir, mean vis) -
    mean(max(ir, vis)). Read from the frame area-downsampled to at most FRAME_STATS_SIDE a side, for speed: the
    sources' means survive that (up to the jitter's gamma), the max's does not quite (averaging first lowers it),
    so the shift is a little smaller than at full resolution (by 0.2-1.3 levels of 255 on 15 RoadScene and M3SVD
    training frames whose full-resolution shifts were -0.2 to -11.8 levels). `extra`: a function of the two
    downsampled, jittered (1, h, w) frames -> a float, appended (the teacher's frame offset, teacher.py)."""
    both = area_downsample(torch.stack([ir, vis]).float(), FRAME_STATS_SIDE)  # (2, 1, h, w)
    a, b = ((gain * img.clamp(0, 1) ** gamma) for img, (gain, gamma) in zip(both, jitter))
    stats = float(torch.maximum(a.mean(), b.mean()) - torch.maximum(a, b).mean()), float(a.mean()), float(b.mean())
    return stats + (float(extra(a, b)),) if extra is not None else stats


def random_crop(ir: torch.Tensor, vis: torch.Tensor, crop: int, rng: np.random.Generator, aug: Augment,
                frame_stats: bool = False, frame_extra=None):
    """Aligned (1, crop, crop) crops of a (1, H, W) pair, rescaled, flipped and intensity-jittered. With
    `frame_stats`, also the whole frame's `whole_frame_stats` under the same jitter (with `frame_extra`'s value
    appended; the draws are the same either way)."""
    frame = (ir, vis)
    side = crop
    if aug.rescale > 1:
        s = math.exp(rng.uniform(-math.log(aug.rescale), math.log(aug.rescale)))
        side = max(8, int(round(crop / s)))
    if side > crop:  # zooming out: at most the whole frame (a smaller source is padded, as without rescale)
        side = max(crop, min(side, max(ir.shape[-2:])))
    ir, vis = _pad_to(ir, side), _pad_to(vis, side)
    H, W = ir.shape[-2:]
    y, x = int(rng.integers(H - side + 1)), int(rng.integers(W - side + 1))
    ir, vis = ir[:, y:y + side, x:x + side], vis[:, y:y + side, x:x + side]
    if side != crop:
        both = torch.stack([ir, vis])  # (2, 1, side, side)
        both = F.interpolate(both, size=(crop, crop), mode="bilinear", align_corners=False,
                             antialias=side > crop).clamp(0, 1)
        ir, vis = both[0], both[1]
    flips = [d for d, p in zip((-1, -2), rng.random(2)) if p < 0.5]
    if flips:
        ir, vis = ir.flip(flips), vis.flip(flips)
    jitter = [(1.0, 1.0), (1.0, 1.0)]
    if aug.gamma > 0 or aug.gain > 0:
        jittered = []
        for k, img in enumerate((ir, vis)):
            gamma = math.exp(rng.uniform(-aug.gamma, aug.gamma)) if aug.gamma > 0 else 1.0
            gain = rng.uniform(1 - aug.gain, 1.0) if aug.gain > 0 else 1.0
            jitter[k] = (gain, gamma)
            jittered.append((gain * img.clamp(0, 1) ** gamma).contiguous())
        ir, vis = jittered
    if frame_stats:
        return ir, vis, whole_frame_stats(*frame, jitter, frame_extra)
    return ir, vis


class WeightedPairs:
    """Every training folder's images in memory, sampled folder by weight, then pair uniformly."""

    def __init__(self, folders: list[list[tuple[torch.Tensor, torch.Tensor]]], weights: list[float]):
        if len(folders) != len(weights) or not folders or any(not f for f in folders):
            raise InputError("every training folder needs at least one pair")
        self.folders = folders
        total = float(sum(weights))
        self.p = np.array([w / total for w in weights])

    def __len__(self) -> int:
        return sum(len(f) for f in self.folders)

    def draw(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        # One folder: the old single-folder draw (one integer), so runs of older versions repeat exactly.
        folder = self.folders[0] if len(self.folders) == 1 else self.folders[int(rng.choice(len(self.folders), p=self.p))]
        return folder[int(rng.integers(len(folder)))]
