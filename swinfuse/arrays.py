"""Fuse images held in memory: two numpy arrays or two tensors and a prompt in, one image out, no files.

Colour in, colour out, as the CLI does: the visible image is split into BT.601 Y, Cr, Cb, the network fuses
Y with the infrared, and Cr/Cb are put back; a gray visible gives a gray result.

- numpy: (H, W) gray or (H, W, 3) colour, channel-last, uint8, uint16 or float in [0, 1]; the result has the
  visible's dtype and layout. Colour channels are RGB unless `channel_order="bgr"` (cv2's order).
- torch: (H, W), (1, H, W) or (3, H, W), channel-first, float in [0, 1] (or uint8); the result is a float
  tensor in [0, 1] with the visible's layout (times the model's upscale), on the CPU.

How the images are fused (device, precision, tiles, resize, gray, bit depth) takes the same options as the
`fuse` command: a swinfuse.FuseOptions.
"""

from __future__ import annotations

from pathlib import Path

from swinfuse.errors import InputError

from swinfuse.fusing.options import FuseOptions

_MODELS: dict[tuple, tuple[object, dict]] = {}


def _unit_numpy(image, role: str):
    """numpy array -> (float32 array in [0, 1], bit depth it came in: 8, 16 or 0 for float)."""
    import numpy as np

    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0, 8
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0, 16
    if np.issubdtype(a.dtype, np.floating):
        if a.size and not np.isfinite(a).all():
            raise InputError(f"{role} array holds NaN or infinite values")
        return np.clip(a.astype(np.float32), 0.0, 1.0), 0
    raise InputError(f"{role} array has dtype {a.dtype}: expected uint8, uint16 or float in [0, 1]")


def _channel_last(image, role: str, is_tensor: bool):
    """-> (array (H, W) or (H, W, 3) float32, layout tag to restore)."""
    import numpy as np

    if is_tensor:
        import torch

        t = image.detach().cpu()
        a = (t.float() / 255.0 if t.dtype == torch.uint8 else t.float()).numpy()
        if a.ndim == 3 and a.shape[0] in (1, 3):
            return (a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)), f"chw{a.shape[0]}"
        if a.ndim == 2:
            return a, "hw"
        raise InputError(f"{role} tensor has shape {tuple(t.shape)}: expected (H, W), (1, H, W) or (3, H, W)")
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3):
        return a, "hw" if a.ndim == 2 else "hwc"
    raise InputError(f"{role} array has shape {a.shape}: expected (H, W) or (H, W, 3)")


def _model(weights, options):
    """The checkpoint for these options (device, precision, compile), loaded once per combination and kept;
    torch's threads set as the options say."""
    from swinfuse import api

    options, dev, dtype = api._speed(options)
    path = Path(weights) if weights is not None else api.default_weights_path()
    key = (str(path.resolve()), options.device, options.precision, options.compile)
    if key not in _MODELS:
        _MODELS[key] = api._fusing_model(path, dev, dtype, options)
    return _MODELS[key][0]


def fuse(ir, vis, prompt: str = "", *, model=None, weights: str | Path | None = None, channel_order: str = "rgb",
         options: FuseOptions = FuseOptions()):
    """Fuse an infrared and a visible image held in memory; returns the fused image (see the module doc).

    `model`: a loaded SwinFuse (else the checkpoint `weights`, else the shipped default, loaded once and
    kept for later calls). options: a swinfuse.FuseOptions, as for `swinfuse.fuse_pair`: device, precision, compile and threads say how the checkpoint runs (a `model` given
    runs as it is); tile and tile_overlap as on the command line (default: tiles only for a frame beyond the
    memory budget); resize: an infrared of another size is resized to the visible; gray: the fused Y only;
    bit_depth 8 or 16: a numpy result as uint8 or uint16 whatever the visible's dtype (a tensor result stays
    float)."""
    import numpy as np
    import torch

    from swinfuse.data.io import VisibleImage, bgr_to_ycrcb, compose_output
    from swinfuse.data.loading import match_size
    from swinfuse.fusing.forward import fuse_y, model_upscale
    if options.bit_depth not in (None, 8, 16):
        raise InputError(f"bit_depth must be 8 or 16, got {options.bit_depth}")
    if channel_order not in ("rgb", "bgr"):
        raise InputError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    is_tensor = isinstance(vis, torch.Tensor)
    if isinstance(ir, torch.Tensor) != is_tensor:
        raise InputError("infrared and visible must both be numpy arrays or both be tensors")
    ir_a, _ = _channel_last(ir, "infrared", is_tensor)
    vis_a, layout = _channel_last(vis, "visible", is_tensor)
    ir_a, _ = _unit_numpy(ir_a, "infrared")
    vis_a, depth = _unit_numpy(vis_a, "visible")
    if ir_a.ndim == 3:  # a colour infrared (false colour or 3-channel gray): its luminance
        ir_a = bgr_to_ycrcb(ir_a if channel_order == "bgr" else ir_a[:, :, ::-1])[:, :, 0]
    if vis_a.ndim == 3:
        bgr = vis_a if channel_order == "bgr" else vis_a[:, :, ::-1]
        ycrcb = bgr_to_ycrcb(np.ascontiguousarray(bgr))
        visible = VisibleImage(*(np.ascontiguousarray(ycrcb[:, :, c]) for c in range(3)), bit_depth=16,
                               had_alpha=False)
    else:
        visible = VisibleImage(vis_a, None, None, bit_depth=16, had_alpha=False)
    if ir_a.shape != vis_a.shape[:2]:
        if not options.resize:
            raise InputError(f"sizes differ: infrared is {ir_a.shape[0]}×{ir_a.shape[1]}, visible "
                             f"{vis_a.shape[0]}×{vis_a.shape[1]} (H×W); resize=True resizes the infrared to the "
                             "visible")
        ir_a, _ = match_size(ir_a, visible, Path("infrared"), Path("visible"), True)
    if model is None:
        net = _model(weights, options)  # threads set there, with the other speed options
    else:
        from swinfuse.devices import set_threads

        net = model
        set_threads(options.threads)
    with torch.inference_mode():
        text = net.encode_prompts([prompt])  # (1, D), on the model's device
        ir_t, vis_t = (torch.from_numpy(np.ascontiguousarray(x))[None, None] for x in (ir_a, visible.y))
        y = fuse_y(net, ir_t, vis_t, text, model_upscale(net), options.tile, options.tile_overlap)
    fused = compose_output(y, visible, options.gray).astype(np.float32) / 65535.0  # (H, W) or (H, W, 3) BGR
    if fused.ndim == 3 and channel_order == "rgb":
        fused = np.ascontiguousarray(fused[:, :, ::-1])
    if is_tensor:
        t = torch.from_numpy(np.ascontiguousarray(fused))
        if t.ndim == 3:
            return t.permute(2, 0, 1).contiguous()
        return t[None] if layout.startswith("chw") else t
    depth = options.bit_depth or depth
    if depth == 8:
        return np.rint(fused * 255).astype(np.uint8)
    if depth == 16:
        return np.rint(fused * 65535).astype(np.uint16)
    return fused
