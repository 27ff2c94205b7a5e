"""One forward of the model for fusing: (1, 1, H, W) infrared and visible Y in, fused Y out, whole or in tiles
(swinfuse.tiling). Shared by the single pair (swinfuse.fusing.pair) and the batch (swinfuse.fusing.batch)."""

from __future__ import annotations

from swinfuse.errors import ShapeError


def to_tensor(image, device):
    import torch
    return torch.from_numpy(image)[None, None].to(device)  # (H, W) -> (1, 1, H, W)


def run_device(model, device: str):
    """The device a pipeline runs on: the one asked (the api resolves 'auto' before it loads the model), or for
    'auto' the model's own."""
    import torch

    return next(model.parameters()).device if str(device) == "auto" else torch.device(device)


def model_upscale(model) -> int:
    return int(getattr(getattr(model, "config", None), "upscale", 1))


def _lowered(y, e: float):
    """y lowered by e, with a toe: levels from 2e up move down by e, the darker ones to y^2 / 4e (0 stays 0;
    continuous with a continuous slope at 2e). Strictly increasing, so no two levels merge and none clips."""
    import numpy as np

    return np.where(y >= 2 * e, y - e, y * y / (4 * e))


def cap_tone(y, ir_t, vis_t):
    """FuseOptions.tone 'cap': a fused Y (float32 in [0, 1], numpy, changed in place) whose mean is above the
    brighter source's mean is lowered to it (_lowered, its amount found by bisection). A plain shift would clip
    the darkest levels to black, which on dark scenes costs entropy and MI; a gamma would keep white white, so
    a washed-out fusion would stay washed out. Over the whole frame, after the tiles are blended: the network
    sees windows and tiles, never the frame's means."""
    ceiling = max(float(ir_t.mean()), float(vis_t.mean()))  # float tensors or arrays in [0, 1]
    excess = float(y.mean(dtype="float64")) - ceiling
    if excess <= 0:
        return y
    step = max(1, int((y.size / 65536) ** 0.5))  # the lowered mean from ~65k pixels; the amount then applies to all
    sample = y[::step, ::step].astype("float64")
    lo, hi = excess, 1.0  # the toe lowers less than the amount, so the amount is at least the excess
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _lowered(sample, mid).mean() > ceiling else (lo, mid)
    y[...] = _lowered(y, hi)
    return y


def fuse_y(model, ir_t, vis_t, text, upscale: int, tile: int | None = None, overlap: int | None = None,
           notes: list[str] | None = None, on_tile=None, *, tone: str = "cap"):
    """Forward one prompt: ir_t, vis_t (1, 1, H, W) on the CPU, text (1, D) -> fused Y (H*upscale, W*upscale)
    float32. tile None: the whole frame; 0: whole unless it exceeds the memory budget; N: N-pixel tiles
    (swinfuse.tiling, which also retries smaller tiles on out-of-memory and adds its notes; on_tile(done, total)
    after each tile). tone: 'cap' (cap_tone) or 'off'."""
    _, _, h, w = ir_t.shape
    if tile is None:
        p = next(model.parameters())  # the model's device and precision
        out = model(ir_t.to(p.device, p.dtype), vis_t.to(p.device, p.dtype), text)  # (1, 1, H*up, W*up)
    else:
        from swinfuse.tiling import fuse_frame
        frame = fuse_frame(model, ir_t, vis_t, text, tile=tile, overlap=overlap, on_tile=on_tile)
        out = frame.image  # (1, 1, H*up, W*up) float32 on the CPU
        if notes is not None:
            notes.extend(n for n in frame.notes if n not in notes)
    expected = (1, 1, h * upscale, w * upscale)
    if tuple(out.shape) != expected:
        raise ShapeError(f"the model returned shape {tuple(out.shape)} for a {h}×{w} input, expected {expected}")
    y = out[0, 0].float().clamp_(0.0, 1.0).cpu().numpy()
    return cap_tone(y, ir_t, vis_t) if tone == "cap" else y


def check_tiling(model, tile: int | None, overlap: int | None) -> None:
    """A tile or overlap that cannot blend is one error before any work, not one failure per pair."""
    if tile is not None:
        from swinfuse import tiling
        tiling.check_tiling(tile, overlap, model.config.pad_multiple)
