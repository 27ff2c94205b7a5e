"""Images held in memory, as `swinfuse.fuse` takes and returns them: numpy arrays or torch tensors in, the
fusing path's float32 planes out (infrared (H, W), visible as BT.601 Y + Cr/Cb), and the fused image back in
the caller's own layout and dtype.

- numpy: (H, W) gray or (H, W, 3) colour, channel-last, uint8, uint16 or float in [0, 1]; colour channels RGB
  unless channel_order="bgr" (cv2's order). The result has the visible's dtype and layout.
- torch: (H, W), (1, H, W) or (3, H, W), channel-first, float in [0, 1] (or uint8); the result is a float
  tensor in [0, 1] with the visible's layout, on the CPU.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swinfuse.data.io import VisibleImage, _split_alpha, bgr_to_ycrcb
from swinfuse.data.loading import match_size
from swinfuse.errors import InputError


@dataclass
class ArrayPair:
    """An in-memory pair read for fusing, and what it takes to hand the result back as the caller gave it."""

    ir: np.ndarray  # (H, W) float32 in [0, 1]
    visible: VisibleImage  # Y (and Cr, Cb for colour), float32 in [0, 1]
    layout: str  # the visible's: "hw", "hwc", "chw1" or "chw3"
    bit_depth: int  # the visible's: 8, 16, or 0 for float
    is_tensor: bool
    channel_order: str  # "rgb" or "bgr"


def _unit(image, role: str) -> tuple[np.ndarray, int]:
    """numpy array -> (float32 array in [0, 1], bit depth it came in: 8, 16 or 0 for float)."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0, 8
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0, 16
    if np.issubdtype(a.dtype, np.floating):
        if a.size and not np.isfinite(a).all():
            raise InputError(f"{role} array holds NaN or infinite values")
        low, high = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if low < 0.0 or high > 1.0:
            # A float image in 0..255 would otherwise clip to white: say what was found and what to pass.
            raise InputError(f"{role} array is float with values in [{low:g}, {high:g}]: float images must be in "
                             "[0, 1] (divide by 255, or pass uint8 / uint16)")
        return a.astype(np.float32), 0
    raise InputError(f"{role} array has dtype {a.dtype}: expected uint8, uint16 or float in [0, 1]")


def _drop_alpha(a: np.ndarray, role: str) -> np.ndarray:
    """(H, W, 4) -> (H, W, 3) and (H, W, 2) -> (H, W), with the note the command line gives, as a warning."""
    a, had_alpha = _split_alpha(a)
    if had_alpha:
        warnings.warn(f"alpha channel of the {role} dropped", stacklevel=4)
    return a


def _channel_last(image, role: str, is_tensor: bool) -> tuple[np.ndarray, str]:
    """-> (array (H, W) or (H, W, 3), layout tag to restore)."""
    if is_tensor:
        import torch

        t = image.detach().cpu()
        a = (t.float() / 255.0 if t.dtype == torch.uint8 else t.float()).numpy()
        if a.ndim == 3 and a.shape[0] in (2, 4):
            kept = _drop_alpha(np.moveaxis(a, 0, -1), role)  # (H, W, 4) -> (H, W, 3); (H, W, 2) -> (H, W)
            a = np.moveaxis(kept, -1, 0) if kept.ndim == 3 else kept[None]  # (3, H, W) or (1, H, W)
        if a.ndim == 3 and a.shape[0] in (1, 3):
            return (a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)), f"chw{a.shape[0]}"  # (H, W[, 3])
        if a.ndim == 2:
            return a, "hw"
        raise InputError(f"{role} tensor has shape {tuple(t.shape)}: expected (H, W), (1, H, W) or (3, H, W)")
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (1, 2, 4):
        a = _drop_alpha(a, role)  # (H, W, 1|2) -> (H, W), (H, W, 4) -> (H, W, 3)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3):
        return a, "hw" if a.ndim == 2 else "hwc"
    raise InputError(f"{role} array has shape {a.shape}: expected (H, W) or (H, W, 3)")


def read_arrays(ir, vis, *, channel_order: str = "rgb", resize: bool = False) -> ArrayPair:
    """Two numpy arrays or two tensors -> ArrayPair. A colour infrared (false colour, or gray in three channels)
    becomes its luminance; an infrared of another size is resized to the visible when resize, else refused
    naming both sizes."""
    import torch

    for role, x in (("infrared", ir), ("visible", vis)):
        if not isinstance(x, (np.ndarray, torch.Tensor)):
            what = "a path" if isinstance(x, (str, Path)) else f"{type(x).__name__}"
            raise InputError(f"the {role} image must be a numpy array or a torch tensor, got {what}; to fuse "
                             "image files use swinfuse.fuse_pair (or `swinfuse fuse`)")
    if channel_order not in ("rgb", "bgr"):
        raise InputError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    is_tensor = isinstance(vis, torch.Tensor)
    if isinstance(ir, torch.Tensor) != is_tensor:
        raise InputError("infrared and visible must both be numpy arrays or both be tensors")
    ir_a, _ = _channel_last(ir, "infrared", is_tensor)
    vis_a, layout = _channel_last(vis, "visible", is_tensor)
    ir_a, _ = _unit(ir_a, "infrared")
    vis_a, depth = _unit(vis_a, "visible")
    if ir_a.ndim == 3:
        ir_a = bgr_to_ycrcb(ir_a if channel_order == "bgr" else ir_a[:, :, ::-1])[:, :, 0]  # (H, W) luminance
    if vis_a.ndim == 3:
        bgr = vis_a if channel_order == "bgr" else vis_a[:, :, ::-1]
        ycrcb = bgr_to_ycrcb(np.ascontiguousarray(bgr))  # (H, W, 3)
        visible = VisibleImage(*(np.ascontiguousarray(ycrcb[:, :, c]) for c in range(3)), bit_depth=16,
                               had_alpha=False)
    else:
        visible = VisibleImage(vis_a, None, None, bit_depth=16, had_alpha=False)
    if ir_a.shape != vis_a.shape[:2]:
        if not resize:
            raise InputError(f"sizes differ: infrared is {ir_a.shape[0]}×{ir_a.shape[1]}, visible "
                             f"{vis_a.shape[0]}×{vis_a.shape[1]} (H×W); resize=True resizes the infrared to the "
                             "visible")
        ir_a, _ = match_size(ir_a, visible, Path("infrared"), Path("visible"), True)
    return ArrayPair(np.ascontiguousarray(ir_a), visible, layout, depth, is_tensor, channel_order)


def to_caller(fused: np.ndarray, pair: ArrayPair, bit_depth: int | None = None):
    """The fused image (compose_output's: (H, W) or (H, W, 3) BGR, uint16) in the layout the visible came in:
    a float tensor in [0, 1], or a numpy array of the visible's dtype (bit_depth 8 or 16: uint8 or uint16
    whatever that dtype)."""
    unit = fused.astype(np.float32) / 65535.0
    if unit.ndim == 3 and pair.channel_order == "rgb":
        unit = np.ascontiguousarray(unit[:, :, ::-1])  # BGR -> RGB
    if pair.is_tensor:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(unit))
        if t.ndim == 3:
            return t.permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)
        return t[None] if pair.layout.startswith("chw") else t  # (1, H, W) or (H, W)
    depth = bit_depth or pair.bit_depth
    if depth == 8:
        return np.rint(unit * 255).astype(np.uint8)
    if depth == 16:
        return np.rint(unit * 65535).astype(np.uint16)
    return unit
