"""SeAFusion (Tang, Yuan, Ma, Information Fusion 2022) as a learned peer, from VIF-Benchmark's published checkpoint.

Nothing of SeAFusion or VIF-Benchmark lives in this repository. The user passes the root of a checkout of
github.com/Linfeng-Tang/VIF-Benchmark (or a folder holding at least `SeAFusion/FusionNet.py` and
`Checkpoint/SeAFusion/SeAFusion.pth` from it); the network class is imported from that file at run time, and
its weights are read with `torch.load(..., weights_only=True)` (the file is a plain state dict of tensors, so
torch's restricted unpickler loads it and no code from the file can run), then `load_state_dict(strict=True)`.

What VIF-Benchmark does for SeAFusion (its `SeAFusion/SeAFusion.py` `main`, `SeAFusion/datasets.py`
`Fusion_dataset.imread`, `SeAFusion/utils.py` `RGB2YCrCb`, `YCbCr2RGB`, `tensor2img`, `save_img_single`),
restated here as facts; the code below is ours:

- reading: the visible file with PIL `.convert('RGB')`, the infrared with PIL `.convert('L')`, both through
  torchvision's `to_tensor` (uint8 / 255, no other scaling or normalisation);
- visible Y = 0.299 R + 0.587 G + 0.114 B clamped to [0, 1]; Cr = 0.713 (R - Y) + 0.5, Cb = 0.564 (B - Y) + 0.5,
  clamped (BT.601, the same numbers as OpenCV's YCrCb and `swinfuse.data.io.read_visible`);
- the network: `FusionNet(output=1)` called as `fusionmodel(vi_Y, img_ir)` (visible first), whole image at
  once, no padding (every layer is a 3x3 or 1x1 convolution with padding), under `torch.no_grad()`; its last
  layer is tanh(x) / 2 + 0.5, so the raw output lies in [0, 1]. The script never calls `.eval()`; it makes no
  difference (the BatchNorm layers exist in the state dict but their forward skips them, and there is no
  dropout);
- post-processing: the fused Y gets the visible's Cr and Cb back (`YCbCr2RGB`: R = Y + 1.403 (Cr - 0.5),
  G = Y - 0.714 (Cr - 0.5) - 0.344 (Cb - 0.5), B = Y + 1.773 (Cb - 0.5), clamped to [0, 1]); then
  `save_img_single` -> `tensor2img(is_norm=True)` stretches the whole 3 x H x W RGB image with one global
  min-max to [0, 1], multiplies by 255 and casts with `.astype(np.uint8)` (truncation, not rounding), and PIL
  writes the PNG. A gray visible gives Cr = Cb = 0.5, so the RGB is Y three times and the stretch is Y's own.

`SeAFusionPeer.fuse(ir, y, cr, cb)` returns (raw, stretched), both (H, W) float32 in [0, 1]:
raw = the network's output (what `is_norm=False` would keep, before 8-bit quantisation);
stretched = the gray (BT.601 luma) of the 8-bit RGB image VIF-Benchmark writes, divided by 255: with Cr/Cb
given it is computed through the RGB reconstruction, the global RGB min-max and the truncation exactly as above;
without them (gray visible) it is the min-max of Y, truncated to 8 bits.

    python tools/seafusion_peer.py --seafusion-root /work/ref/VIF-Benchmark IR VIS -o /tmp/sea.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: the package beside it


class SeAFusionPeer:
    """SeAFusion on the CPU (or `device`), loaded from a VIF-Benchmark root."""

    def __init__(self, root: str | Path, device: str = "cpu"):
        import torch

        from swinfuse.training.teacher import load_seafusion, locate_seafusion

        self.net_file, self.checkpoint = locate_seafusion(root)
        self.net, self.sha256 = load_seafusion(root, device)
        self.device = torch.device(device)
        self.params = sum(p.numel() for p in self.net.parameters())

    def raw(self, ir: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(H, W) float in [0, 1] twice -> the network's (H, W) float32 output in [0, 1]."""
        import torch

        vis_t = torch.from_numpy(np.clip(np.asarray(y, np.float32), 0, 1))[None, None].to(self.device)
        ir_t = torch.from_numpy(np.asarray(ir, np.float32))[None, None].to(self.device)
        with torch.inference_mode():
            out = self.net(vis_t, ir_t)  # visible first, as VIF-Benchmark calls it
        return out[0, 0].float().cpu().numpy()

    def fuse(self, ir: np.ndarray, y: np.ndarray, cr: np.ndarray | None = None,
             cb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(raw, stretched) (H, W) float32 in [0, 1]; see the module's docstring."""
        raw = self.raw(ir, y)
        return raw, stretch_like_vif_benchmark(raw, cr, cb)


def stretch_like_vif_benchmark(fused_y: np.ndarray, cr: np.ndarray | None = None,
                               cb: np.ndarray | None = None) -> np.ndarray:
    """VIF-Benchmark's SeAFusion post-processing, then the gray an evaluator reads back from the PNG, / 255."""
    y = np.asarray(fused_y, np.float64)
    if cr is None or cb is None:
        rgb = y[..., None]
    else:
        dcr, dcb = np.clip(np.asarray(cr, np.float64), 0, 1) - 0.5, np.clip(np.asarray(cb, np.float64), 0, 1) - 0.5
        rgb = np.clip(np.stack([y + 1.403 * dcr, y - 0.714 * dcr - 0.344 * dcb, y + 1.773 * dcb], -1), 0, 1)
    lo, hi = rgb.min(), rgb.max()
    u8 = ((rgb - lo) / (hi - lo) * 255.0).astype(np.uint8) if hi > lo else np.zeros_like(rgb, np.uint8)
    gray = u8[..., 0] if u8.shape[-1] == 1 else u8 @ np.array([0.299, 0.587, 0.114])
    return (gray / 255.0).astype(np.float32)


def main(argv=None) -> int:
    import argparse

    import cv2
    import torch

    from swinfuse.data.io import read_infrared, read_visible

    ap = argparse.ArgumentParser(description="Fuse one pair with SeAFusion (VIF-Benchmark's checkpoint); writes "
                                             "infrared | visible Y | raw | stretched side by side.")
    ap.add_argument("ir")
    ap.add_argument("vis")
    ap.add_argument("--seafusion-root", required=True)
    ap.add_argument("-o", "--out", default="seafusion.png")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    peer = SeAFusionPeer(args.seafusion_root)
    ir, vis = read_infrared(args.ir), read_visible(args.vis)
    raw, stretched = peer.fuse(ir, vis.y, vis.cr, vis.cb)
    print(f"SeAFusion {peer.params} params, checkpoint sha256:{peer.sha256[:12]}; raw range "
          f"{raw.min():.3f}..{raw.max():.3f} mean {raw.mean():.3f}; stretched mean {stretched.mean():.3f}")
    row = np.hstack([ir, vis.y, raw, stretched])
    cv2.imwrite(args.out, np.clip(np.rint(row * 255), 0, 255).astype(np.uint8))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
