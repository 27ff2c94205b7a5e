"""A teacher for training: a published fusion network whose output on the clean sources is one more target.

Only SeAFusion (Tang, Yuan, Ma, Information Fusion 2022) for now, from the checkpoint that
github.com/Linfeng-Tang/VIF-Benchmark publishes with its code. Nothing of either lives in this package: the
user names a checkout of VIF-Benchmark (`--teacher seafusion:ROOT`), the network class is imported from that
checkout's `SeAFusion/FusionNet.py` at run time under a private module name, and its weights are read with
`torch.load(..., weights_only=True)` (a plain state dict of tensors: nothing in the file can run) and
`load_state_dict(strict=True)`. The network takes the visible Y first and the infrared second, both in
[0, 1], and ends in tanh(x) / 2 + 0.5, so its output lies in [0, 1] (tools/seafusion_peer.py gives the
details of how VIF-Benchmark runs it).

The target is the teacher's output shifted so that its mean is the brighter source's mean (as
`intensity_target="max-matched"` does for the max): SeAFusion's raw output is 11-12 levels brighter than
the brighter source on m3svd_val and m3fd_val, and the tone is one of the things a student should not learn
from it. The shift keeps the output's structure, so what the student learns is how the teacher mixes the
sources, not how bright it renders them.

Where the shift is measured matters (`shift`). 'crop': on the training crop itself, so every crop's target has
its own brighter source's mean and the teacher's large-scale shading across a frame is lost. Scored as fusions
over whole frames (SeAFusion's output shifted per 64-pixel tile against once per frame), SCD falls from 1.604
to 1.288 on m3fd_val and from 1.201 to 0.966 on RoadScene's validation split, MI from 2.14 to 1.90 there.
'frame': one shift per frame, the teacher's offset from the brighter source measured on the whole frame
(area-downsampled to at most FRAME_SIDE a side, under the crop's intensity jitter; within 0.0-2.1 levels of
the full-resolution offset on 11 m3svd_val and m3fd_val frames whose offsets were 5-23 levels).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from swinfuse.errors import InputError
from swinfuse.training.sampling import area_downsample

KINDS = ("seafusion",)
SHIFTS = ("crop", "frame")
FRAME_SIDE = 64  # the teacher's frame offset is read from the frame downsampled to at most this side
FUSIONNET = Path("SeAFusion") / "FusionNet.py"
CHECKPOINT = Path("Checkpoint") / "SeAFusion" / "SeAFusion.pth"


def locate_seafusion(root: str | Path) -> tuple[Path, Path]:
    """(FusionNet.py, SeAFusion.pth) under a VIF-Benchmark checkout (or its SeAFusion/ folder)."""
    root = Path(root).expanduser()
    for base in (root, root.parent):  # the checkout's root, or its SeAFusion/ folder
        net, ckpt = base / FUSIONNET, base / CHECKPOINT
        if net.is_file() and ckpt.is_file():
            return net, ckpt
    raise InputError(f"{root}: expected {FUSIONNET} and {CHECKPOINT} under it (a checkout of "
                     "github.com/Linfeng-Tang/VIF-Benchmark; the checkpoint is a 682 kB file, not a Git LFS pointer)")


def load_seafusion(root: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, str]:
    """SeAFusion's network with VIF-Benchmark's weights, in eval mode, frozen -> (network, checkpoint sha256).
    Call it as `net(vis_y, ir)`."""
    net_file, checkpoint = locate_seafusion(root)
    data = checkpoint.read_bytes()
    if data.startswith(b"version https://git-lfs"):
        raise InputError(f"{checkpoint} is a Git LFS pointer, not the weights")
    spec = importlib.util.spec_from_file_location("_vif_benchmark_seafusion_fusionnet", net_file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # its folder also has utils.py/datasets.py: never put it on sys.path
        net = module.FusionNet(output=1)
        net.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    except Exception as exc:  # their code, their file: whatever fails, say where in one line
        raise InputError(f"could not load SeAFusion from {net_file} and {checkpoint}: "
                         f"{type(exc).__name__}: {exc}") from None
    net.to(device).eval().requires_grad_(False)
    return net, hashlib.sha256(data).hexdigest()


@dataclass
class Teacher:
    """A frozen network -> targets for (B, 1, H, W) clean sources in [0, 1]."""

    kind: str
    root: str
    net: nn.Module
    sha256: str
    shift: str = "crop"  # where the target's shift to the brighter source's mean is measured (SHIFTS)

    @classmethod
    def parse(cls, spec: str, device: str | torch.device = "cpu", shift: str = "crop") -> Teacher:
        """'seafusion:ROOT' -> the loaded teacher; one-line errors for anything else."""
        kind, sep, root = spec.partition(":")
        if not sep or kind not in KINDS or not root:
            raise InputError(f"--teacher takes KIND:PATH with KIND one of {', '.join(KINDS)} "
                             f"(e.g. seafusion:ref/VIF-Benchmark), got {spec!r}")
        if shift not in SHIFTS:
            raise InputError(f"--teacher-shift must be one of {', '.join(SHIFTS)}, got {shift!r}")
        net, sha = load_seafusion(root, device)
        return cls(kind=kind, root=root, net=net, sha256=sha, shift=shift)

    @torch.no_grad()
    def frame_offset(self, ir: torch.Tensor, vis: torch.Tensor) -> float:
        """The teacher's mean on a whole (1, H, W) frame minus the brighter source's mean, read at most
        FRAME_SIDE a side (what shift 'frame' subtracts; the frame extra of sampling.whole_frame_stats)."""
        both = area_downsample(torch.stack([ir, vis]).float(), FRAME_SIDE)  # (2, 1, h, w)
        both = both.to(next(self.net.parameters()).device)
        out = self.net(both[1:2], both[0:1]).clamp(0, 1)
        return float(out.mean() - torch.maximum(both[0].mean(), both[1].mean()))

    @torch.no_grad()
    def target(self, ir: torch.Tensor, vis: torch.Tensor, size: tuple[int, int] | None = None,
               offset: torch.Tensor | None = None) -> torch.Tensor:
        """The teacher's fusion of the clean sources in [0, 1], shifted to the brighter source's mean: by the
        crop's own means, or, where `offset` (B,) is given and not NaN, by that frame offset (frame_offset);
        at `size` (a model that upscales), resized bicubically as the loss resizes the sources."""
        out = self.net(vis.float(), ir.float()).clamp(0, 1)  # visible first, as VIF-Benchmark calls it
        brighter = torch.maximum(ir.mean((1, 2, 3), keepdim=True), vis.mean((1, 2, 3), keepdim=True))
        shift = brighter - out.mean((1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
        if offset is not None:
            offset = offset.to(shift).view(-1, 1, 1, 1)
            shift = torch.where(torch.isnan(offset), shift, -offset)
        out = (out + shift).clamp(0, 1)
        if size is not None and tuple(size) != tuple(out.shape[-2:]):
            out = F.interpolate(out, size=tuple(size), mode="bicubic", align_corners=False).clamp(0, 1)
        return out

    def record(self, weight: float) -> dict:
        """What the checkpoint's provenance says about the teacher."""
        return {"kind": self.kind, "root": self.root, "resolved": str(Path(self.root).expanduser().resolve()),
                "checkpoint_sha256": self.sha256, "weight": weight,
                "target": "output on the clean sources, shifted to the brighter source's mean, measured per "
                          + ("training crop" if self.shift == "crop" else "whole frame"),
                "shift": self.shift}
