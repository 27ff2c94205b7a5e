"""Fuse a frame too large for memory in overlapping tiles, blended with smooth weights so no seam shows.

Window attention makes the cost linear in pixels, so a frame can be cut into tiles and each fused on its
own: tiles are a multiple of the window, neighbours overlap, and each tile's output is weighted by a
separable ramp (sin^2, Hann-like) that falls towards its inner edges, where it saw the least context
(the outermost quarter of the overlap is all but dropped: 3 to 20 dB better than a plain ramp on a
random tiny model), then the weighted sum is divided by the summed weights. Tiles are streamed: only the current tile's
tensors go to the model's device; the frame and the accumulators stay on the CPU.

Without an explicit tile size the frame is fused whole when its estimated memory fits a budget taken
from free memory (psutil's available RAM; on CUDA `torch.cuda.mem_get_info`), in tiles otherwise. On a
CPU the budget is also capped (CPU_WHOLE_FRAME_BYTES): there, 1024-px tiles are faster than one large
forward as well as lighter, so a 4K frame is tiled by default however much memory is free. An
out-of-memory error empties the CUDA cache and retries with tiles half the size, and says so in a note.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

BUDGET_FRACTION = 0.5  # of free memory: the rest is left to the OS, the reader/writer threads, other jobs
MAX_AUTO_TILE = 1024  # cost is linear in pixels, so larger tiles gain nothing but memory
# On a CPU no whole-frame forward is planned above this estimate (about 2.3 Mpx for the default preset, so
# 1920x1080 stays whole): larger frames go in MAX_AUTO_TILE tiles, which are faster there, not only lighter
# (benchmarks/RESULTS.md, 3840x2160 on two threads: 28.0 s and 1.5 GB in tiles, 31.5 s and 5.3 GB whole).
CPU_WHOLE_FRAME_BYTES = 2 << 30
HEAD_FEATURES = 64  # NUM_FEAT of the upsampling heads, at the output resolution
# Overlap, in windows, below which tiles may show seams. Tiled against whole-frame PSNR, window-aligned tiles:
# the shipped model (window 8, a 128x192 crop of an example pair) loses up to 20 grey levels of 255 with one
# window of overlap (42-49 dB), 4 with two (57-64 dB), under 1 with four (72-92 dB); a random model of the
# same depths (window 4, 40x56) needs four windows to stay above 45 dB (two: 29 dB, three: 42 dB).
MIN_OVERLAP_WINDOWS = 4


@dataclass
class TiledFrame:
    """A fused frame and how it was made: tile side (0: whole frame), overlap, tile count, notes."""

    image: torch.Tensor  # (B, C, H*up, W*up) float32 on the CPU
    tile: int
    overlap: int
    tiles: int
    notes: list[str] = field(default_factory=list)


def _round_to(n: int, multiple: int) -> int:
    return max(multiple, (n // multiple) * multiple)


def _axis(n: int, tile: int, overlap: int, window: int) -> list[tuple[int, int]]:
    """(start, size) of the tiles along one axis of n pixels. Every start is a multiple of the window, so a
    tile's windows (and shifted windows) are the whole frame's and it differs from the whole-frame forward only
    near its edges, where the blend gives it no weight; tiles starting between windows differed everywhere.
    Neighbours overlap by `overlap` rounded up to the window; as few tiles as fit in `tile`, spaced evenly
    (a 3840 x 2160 frame in 1024-pixel tiles covers 6 % more pixels than the frame, not 52 %), the last one
    ending with the frame (the model pads it as it pads the whole frame)."""
    if n <= tile:
        return [(0, n)]
    overlap = math.ceil(overlap / window) * window
    step = (tile - overlap) // window * window  # the longest spacing that keeps tiles within `tile`
    count = math.ceil((n - overlap) / step)
    step = math.ceil((n - overlap) / count / window) * window  # balanced: the same count, evenly spaced
    starts = [i * step for i in range(count)]
    return [(s, min(s + step + overlap, n) - s if i < count - 1 else n - s) for i, s in enumerate(starts)]


def plan_tiles(H: int, W: int, tile: int, overlap: int, window: int) -> list[tuple[int, int, int, int]]:
    """Boxes (top, left, height, width) covering an H x W frame with tiles of at most tile x tile that start
    on window multiples and overlap their neighbours by at least `overlap`. The tile is rounded down to a
    multiple of `window` and must leave a window between overlaps (check_tiling says so in words)."""
    tile = _round_to(tile, window)
    if not 0 <= math.ceil(overlap / window) * window <= tile - window:
        raise ValueError(f"tile overlap must be in [0, {tile - window}] for {tile}-pixel tiles, got {overlap}")
    rows, cols = _axis(H, tile, overlap, window), _axis(W, tile, overlap, window)
    return [(top, left, h, w) for top, h in rows for left, w in cols]


def _ramp(n: int, overlap: int, rise: bool, fall: bool) -> torch.Tensor:
    """(n,) weights over one tile axis, 1 inside, falling towards each side that has a neighbour: the
    outer quarter of the overlap (what saw the least context) gets ~0, the rest a sin^2 ramp."""
    w = torch.ones(n, dtype=torch.float64)
    o = min(overlap, n // 2)
    if o > 0:
        margin = o // 4
        edge = torch.full((o,), 1e-4, dtype=torch.float64)  # > 0: every pixel keeps some weight
        r = o - margin
        edge[margin:] = torch.sin(0.5 * math.pi * (torch.arange(r, dtype=torch.float64) + 0.5) / r) ** 2
        if rise:
            w[:o] = edge
        if fall:
            w[n - o:] = edge.flip(0)
    return w


def tile_weights(box, H: int, W: int, overlap: int, up: int = 1) -> torch.Tensor:
    """(h*up, w*up) blending weights of one tile: ramps only on the sides that are inside the frame."""
    top, left, h, w = box
    wy = _ramp(h * up, overlap * up, top > 0, top + h < H)
    wx = _ramp(w * up, overlap * up, left > 0, left + w < W)
    return (wy[:, None] * wx[None, :]).float()  # (h*up, w*up)


def _model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def frame_gate(model, ir: torch.Tensor, vis: torch.Tensor, text, tile: int) -> torch.Tensor | None:
    """The prompt gate for a whole frame that is fused in tiles (None for a model without one): read once from
    the frame's centre crop of at most tile x tile pixels, at full resolution (the gate reads noise, stripes and
    blur from pixel-level detail), and given to every tile, so no tile applies a prompt another one does not."""
    if getattr(model, "gate", None) is None:
        return None
    device, dtype = _model_device_dtype(model)
    H, W = ir.shape[-2:]
    h, w = min(tile, H), min(tile, W)
    top, left = (H - h) // 2, (W - w) // 2
    crop = (..., slice(top, top + h), slice(left, left + w))
    return model.prompt_gate(ir[crop].to(device=device, dtype=dtype), vis[crop].to(device=device, dtype=dtype), text)


def fuse_tiled(model, ir: torch.Tensor, vis: torch.Tensor, text: torch.Tensor, tile: int, overlap: int,
               on_tile=None) -> torch.Tensor:
    """ir, vis: (B, 1, H, W) in [0, 1] on any device; text: (B|1, D) -> (B, 1, H*up, W*up) float32 on the CPU.

    Each tile goes to the model's device (and dtype) alone; its output comes back to the CPU, weighted, and
    is added to the frame. on_tile(k, n) is called after each tile."""
    device, dtype = _model_device_dtype(model)
    cfg = model.config
    up, ws = cfg.upscale, cfg.pad_multiple
    B, C, H, W = ir.shape
    boxes = plan_tiles(H, W, tile, overlap, ws)
    text = text.to(device=device, dtype=dtype) if isinstance(text, torch.Tensor) else text
    gate = frame_gate(model, ir, vis, text, tile)
    kwargs = {} if gate is None else {"gate": gate}
    if getattr(cfg, "output", "direct") == "mixed-base":  # every tile reads the whole frame's means
        from swinfuse.model.network import frame_means
        kwargs["frame"] = frame_means(ir.float(), vis.float()).to(device=device, dtype=dtype)
    acc = torch.zeros(B, C, H * up, W * up)  # (B, C, H*up, W*up), on the CPU
    wsum = torch.zeros(H * up, W * up)
    for k, box in enumerate(boxes):
        top, left, h, w = box
        crop = (..., slice(top, top + h), slice(left, left + w))
        tile_ir, tile_vis = ir[crop].to(device=device, dtype=dtype), vis[crop].to(device=device, dtype=dtype)
        out = model(tile_ir, tile_vis, text, **kwargs)
        weight = tile_weights(box, H, W, overlap, up)  # (h*up, w*up)
        region = (..., slice(top * up, (top + h) * up), slice(left * up, (left + w) * up))
        acc[region] += out.float().cpu() * weight
        wsum[region] += weight
        del out  # the next tile's activations may reuse this memory
        if on_tile:
            on_tile(k + 1, len(boxes))
    return acc / wsum


# --- how big a frame fits ----------------------------------------------------------------------------

def bytes_per_pixel(config, dtype: torch.dtype = torch.float32) -> float:
    """Peak memory of one image's forward per input pixel, estimated from the config.

    Measured on the default preset (embed_dim 16, mlp_ratio 2) in float32, with the blocks run band by band:
    about 0.6 kB of peak RSS per pixel at 1024x1024 and 0.9 kB at 512x512 (allocator slack), i.e. 10 to 14
    values per pixel per channel: the block's input and output maps, the two streams kept for the fusion's
    residuals, the convs' outputs. The estimate, embed_dim * (10 + 2 * mlp_ratio) values, gives 0.9 kB.
    Upsampling heads add their 64 features at the output resolution."""
    size = torch.empty((), dtype=dtype).element_size()
    values = config.embed_dim * (10 + 2 * config.mlp_ratio) / config.patch_size ** 2
    if config.patch_size > 1:  # the full-resolution path: both shallow features, the detail and the head
        values += 6 * config.detail_width
    if config.upsampler in ("pixelshuffle", "nearest+conv"):
        values += 2 * HEAD_FEATURES * config.upscale ** 2
    return size * values


def memory_budget(device) -> int:
    """Bytes a forward may use: a fraction of free device memory (CUDA) or available RAM (CPU), and on a CPU
    at most CPU_WHOLE_FRAME_BYTES (past it, tiles are faster as well as lighter)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(BUDGET_FRACTION * free)
    import psutil
    return min(int(BUDGET_FRACTION * psutil.virtual_memory().available), CPU_WHOLE_FRAME_BYTES)


def auto_tile(H: int, W: int, B: int, config, device, dtype: torch.dtype = torch.float32,
              budget: int | None = None) -> int:
    """0 when a B x H x W frame fits the memory budget whole, else the tile side (a multiple of the window)."""
    budget = memory_budget(device) if budget is None else budget
    per_pixel = bytes_per_pixel(config, dtype) * B
    if per_pixel * H * W <= budget:
        return 0
    side = int(math.sqrt(budget / per_pixel))
    return _round_to(min(side, MAX_AUTO_TILE), config.pad_multiple)


def default_overlap(config) -> int:
    """Four windows, the least that blends (MIN_OVERLAP_WINDOWS): a shifted window and the convs around it see
    about two windows past a tile edge."""
    return MIN_OVERLAP_WINDOWS * config.pad_multiple


def min_tile(window: int) -> int:
    """The smallest tile that blends without seams: the minimum overlap and one window between overlaps."""
    return (MIN_OVERLAP_WINDOWS + 1) * window


def _ceil_to(n: int, multiple: int) -> int:
    return math.ceil(n / multiple) * multiple


def check_tiling(tile: int | None, overlap: int | None, window: int) -> None:
    """Refuse, in one line, a tile or overlap that cannot be blended without seams (see MIN_OVERLAP_WINDOWS)
    or an overlap that does not fit its tile. tile None: whole frame; 0: automatic; overlap None: default."""
    from swinfuse.errors import ConfigError

    if tile is not None and tile < 0:
        raise ConfigError(f"--tile must be >= 0 (0: automatic), got {tile}")
    smallest = min_tile(window)
    if tile and _round_to(tile, window) < smallest:
        raise ConfigError(f"--tile {tile} is too small to blend tiles without seams: the minimum is {smallest} "
                          f"(pixels: {MIN_OVERLAP_WINDOWS} windows of {window} to overlap and one between), or 0 "
                          "for automatic tiles")
    if overlap is None:
        return
    lowest = MIN_OVERLAP_WINDOWS * window
    if overlap < lowest:
        raise ConfigError(f"--tile-overlap {overlap} is too small to blend tiles without seams: the minimum is "
                          f"{lowest} (pixels: {MIN_OVERLAP_WINDOWS} windows of {window})")
    if tile and _ceil_to(overlap, window) > _round_to(tile, window) - window:
        most = _round_to(tile, window) - window
        raise ConfigError(f"--tile-overlap {overlap} does not fit --tile {tile}: at most {most} (one window of "
                          f"{window} less than the tile), or a larger tile")


def _overlap_for(overlap: int | None, config) -> int:
    """The overlap used: the asked one rounded up to the window, or the default."""
    return default_overlap(config) if overlap is None else _ceil_to(overlap, config.pad_multiple)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)  # the CPU allocator's words


def fuse_frame(model, ir: torch.Tensor, vis: torch.Tensor, text, *, tile: int | None = 0,
               overlap: int | None = None, budget: int | None = None, on_tile=None) -> TiledFrame:
    """Fuse a frame whole or in tiles. tile None: always whole; 0: automatic (tiles only beyond the memory
    budget); N: tiles of N pixels (rounded down to the window, at least min_tile). overlap None: the default
    (four windows). Tiled frames get a note with the tile and overlap used. Out of
    memory: retry with half-size tiles, down to min_tile."""
    from swinfuse.errors import DeviceError

    device, dtype = _model_device_dtype(model)
    cfg = model.config
    ws = cfg.pad_multiple
    B, _, H, W = ir.shape
    check_tiling(tile, overlap, ws)
    smallest = max(min_tile(ws), _ceil_to(overlap, ws) + ws if overlap is not None else 0)
    notes: list[str] = []
    if tile == 0:
        tile = auto_tile(H, W, B, cfg, device, dtype, budget)
        if tile:
            tile = max(tile, smallest)
            need = bytes_per_pixel(cfg, dtype) * B * H * W / 2**30
            notes.append(f"frame {H}×{W} (H×W) exceeds the memory budget for a whole-frame forward (about "
                         f"{need:.1f} GiB estimated); fused in {tile}×{tile} tiles")
    whole = not tile or (tile >= H and tile >= W)
    while True:
        try:
            if whole:
                out = model(ir.to(device=device, dtype=dtype), vis.to(device=device, dtype=dtype),
                            text.to(device=device, dtype=dtype) if isinstance(text, torch.Tensor) else text)
                return TiledFrame(out.float().cpu(), 0, 0, 1, notes)
            tile = _round_to(tile, ws)
            ov = _overlap_for(overlap, cfg)
            count = len(plan_tiles(H, W, tile, ov, ws))
            image = fuse_tiled(model, ir, vis, text, tile, ov, on_tile)
            notes.append(f"fused in {count} tiles of at most {tile}×{tile} pixels, overlapping by {ov}")
            return TiledFrame(image, tile, ov, count, notes)
        except Exception as exc:
            if not _is_oom(exc):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            current = max(H, W) if whole else tile
            smaller = max(_round_to(current // 2, ws), smallest)
            if smaller >= current:
                raise DeviceError(f"out of memory on {device} even with {current}×{current} tiles; "
                                  "free memory or use --device cpu") from None
            notes.append(f"out of memory on {device} with {'the whole frame' if whole else f'{current}px tiles'}: "
                         f"emptied the cache and retried with {smaller}×{smaller} tiles")
            whole, tile = False, smaller
