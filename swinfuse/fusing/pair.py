"""One infrared/visible pair, fused once per prompt: open_pair checks the outputs and reads the pair (no model
needed), fuse_pair runs the model on what open_pair returned, writes each prompt's output (and a comparison
sheet when asked) and returns a FuseResult with the time each step took."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from swinfuse.data.loading import LoadedPair, read_pair
from swinfuse.data.outputs import check_not_a_source, check_output, output_paths
from swinfuse.errors import OutputError
from swinfuse.fusing.forward import check_tiling, fuse_y, model_upscale, run_device, to_tensor
from swinfuse.fusing.options import FuseOptions
from swinfuse.fusing.results import FusedOutput, FuseResult
from swinfuse.memory import gpu_peak_mb, peak_rss_mb, reset_gpu_peak, sync


@dataclass
class OpenedPair:
    """What fuse_pair prepares before it needs the model: checked output paths and the pair, read."""

    ir_path: Path
    vis_path: Path
    prompts: list[str]
    paths: list[Path]
    sheet: Path | None
    pair: LoadedPair
    load_ms: float


def open_pair(*, ir_path: str | Path, vis_path: str | Path, prompts: list[str], output: str | Path | None,
              sheet: str | Path | None = None, options: FuseOptions = FuseOptions()) -> OpenedPair:
    """Check every output path (writable format, never a source image) and read the pair. Model-free, so a
    caller can do it before loading the weights: a bad path or image then costs no model load. No prompt means
    one empty prompt ("no instruction"). Of the options it reads resize, bit_depth and max_pixels."""
    resize, bit_depth = options.resize, options.bit_depth
    ir_path, vis_path = Path(ir_path), Path(vis_path)
    prompts = list(prompts) or [""]
    paths = output_paths(vis_path.stem, prompts, Path(output) if output is not None else None)
    sheet = Path(sheet) if sheet else None
    # Output problems are found before any work, so a bad -o costs nothing and writes nothing.
    for path in paths:
        check_output(path, bit_depth)
        check_not_a_source(path, (ir_path, vis_path))
    if sheet:
        check_output(sheet, None)
        check_not_a_source(sheet, (ir_path, vis_path))
        if any(sheet.resolve() == path.resolve() for path in paths):
            raise OutputError(f"{sheet}: the sheet would overwrite the fused image; give --sheet another path")
    start = time.perf_counter()
    pair = read_pair(ir_path, vis_path, resize, options.max_pixels)
    return OpenedPair(ir_path, vis_path, prompts, paths, sheet, pair, (time.perf_counter() - start) * 1e3)


def fuse_pair(opened: OpenedPair, *, model, meta: dict, weights: str | Path | None = None,
              options: FuseOptions = FuseOptions(), on_tile=None) -> FuseResult:
    """Fuse the pair open_pair read once per prompt and write the results to the paths it checked (see
    output_paths), with the comparison sheet when it was asked for.

    weights is the checkpoint path, for the report only (default: meta["path"], which load_checkpoint sets).
    Of the options (the same open_pair read) this reads gray (the fused Y only), bit_depth (8 or 16 instead of
    the visible's), tile and tile_overlap (see swinfuse.fusing.forward.fuse_y) and device (the model's, for
    'auto'); the model is used in the precision it has. on_tile(done, total) follows a tiled forward, tile by
    tile.
    """
    import torch

    from swinfuse.data.io import compose_output, output_bit_depth, write_image_atomic
    from swinfuse.data.sheet import make_sheet

    gray, bit_depth, tile, tile_overlap = options.gray, options.bit_depth, options.tile, options.tile_overlap
    device = run_device(model, options.device)
    weights = weights or meta.get("path")
    ir_path, vis_path, prompts, paths, sheet = opened.ir_path, opened.vis_path, opened.prompts, opened.paths, opened.sheet
    pair = opened.pair
    ir, visible, notes = pair.ir, pair.visible, pair.notes
    check_tiling(model, tile, tile_overlap)
    upscale = model_upscale(model)
    reset_gpu_peak(device)
    loaded = time.perf_counter()

    depths = [output_bit_depth(p, bit_depth, visible.bit_depth) for p in paths]
    if visible.bit_depth == 16 and bit_depth is None and 8 in depths:
        notes.append("16-bit visible written as 8-bit where the output format stores 8-bit only")
    with torch.inference_mode():
        text = model.encode_prompts(prompts).to(device)  # (N, D)
        ir_t, vis_t = to_tensor(ir, "cpu"), to_tensor(visible.y, "cpu")  # fuse_y moves them (or tiles)
        sync(device)
        prepared = time.perf_counter()
        fused_ys = [fuse_y(model, ir_t, vis_t, text[k:k + 1], upscale, tile, tile_overlap, notes, on_tile,
                           tone=options.tone)
                    for k in range(len(prompts))]
    forwarded = time.perf_counter()

    outputs = []
    for path, depth, prompt, y in zip(paths, depths, prompts, fused_ys):
        array = compose_output(y, visible, gray, depth, options.stretch)
        write_image_atomic(path, array)
        outputs.append(FusedOutput(prompt, path, tuple(array.shape), depth))
    if sheet:
        write_image_atomic(sheet, make_sheet(ir, visible, fused_ys, prompts, gray, options.stretch))
    written = time.perf_counter()

    return FuseResult(
        ir_path=ir_path, vis_path=vis_path,
        ir_shape=pair.ir_shape, vis_shape=visible.y.shape + ((3,) if visible.is_color else ()),
        prompts=prompts, outputs=outputs, sheet=sheet,
        weights=Path(weights) if weights else None, weights_sha256=meta.get("sha256"),
        params=sum(p.numel() for p in model.parameters()), device=str(device), upscale=upscale,
        latency_ms={"load": opened.load_ms, "preprocess": (prepared - loaded) * 1e3,
                    "forward": (forwarded - prepared) * 1e3, "write": (written - forwarded) * 1e3,
                    "total": opened.load_ms + (written - loaded) * 1e3},
        peak_rss_mb=peak_rss_mb(), peak_gpu_mb=gpu_peak_mb(device), notes=notes,
    )
