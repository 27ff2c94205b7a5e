"""Fuse images with a loaded model: one pair (one output per prompt, an optional comparison sheet) or a
whole folder of pairs (streamed from disk, resumable, shardable, with a manifest).

The path an image takes: read (infrared as one channel, visible as BT.601 Y + Cr/Cb), fuse Y with the
infrared under the prompt, put Cr/Cb back, clip and quantise once, write atomically.

The model is any module with `encode_prompts(list[str]) -> (N, D)`, `forward(ir, vis, text)` on
(B, 1, H, W) tensors in [0, 1] returning (B, 1, H*upscale, W*upscale), and `config.upscale`; `meta` is
the dict `load_checkpoint` returns ("config", "provenance", "sha256").

Only the standard library is imported at the top, so api.py and cli.py can import the result types
without pulling in torch or OpenCV.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from swinfuse.errors import InputError, OutputError, ShapeError
from swinfuse.jsonable import to_jsonable
from swinfuse.memory import gpu_peak_mb, peak_rss_mb, reset_gpu_peak, sync


@dataclass
class FusedOutput:
    prompt: str
    path: Path
    shape: tuple[int, ...]
    bit_depth: int


@dataclass
class FuseResult:
    """Everything `swinfuse fuse` reports. latency_ms has load (reading the images), preprocess (sizes,
    tensors, prompt encoding), forward, write (colour, quantise, encode, write) and total."""

    ir_path: Path
    vis_path: Path
    ir_shape: tuple[int, ...]
    vis_shape: tuple[int, ...]
    prompts: list[str]
    outputs: list[FusedOutput]
    sheet: Path | None
    weights: Path | None
    weights_sha256: str | None
    params: int
    device: str
    upscale: int
    latency_ms: dict[str, float]
    peak_rss_mb: float
    peak_gpu_mb: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def weights_short_hash(self) -> str | None:
        return self.weights_sha256[:12] if self.weights_sha256 else None

    def to_dict(self) -> dict:
        return to_jsonable({**dataclasses.asdict(self), "weights_short_hash": self.weights_short_hash})


@dataclass
class PairRecord:
    """One pair of a batch. status is 'written', 'skipped' (output existed) or 'failed' (reason says why)."""

    rel: str
    ir: Path
    vis: Path
    output: Path
    status: str
    reason: str | None = None
    latency_ms: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    """Everything `swinfuse batch` reports: one record per pair of the shard, in sorted order, and the
    summary. pairs_found counts the whole folder; pairs_selected the shard (all of them without one)."""

    root: Path | None
    output_dir: Path
    prompt: str
    shard: str | None
    pairs_found: int
    pairs_selected: int
    written: int
    skipped: int
    failed: int
    unmatched_ir: list[Path]
    unmatched_vis: list[Path]
    duplicates: list[Path]
    mean_latency_ms: float | None
    throughput_pairs_per_s: float | None
    wall_s: float
    peak_rss_mb: float
    peak_gpu_mb: float | None
    manifest: Path
    records: list[PairRecord]
    metrics: dict | None = None  # with --metrics: per-pair records and their mean (swinfuse.metrics)

    def to_dict(self) -> dict:
        return to_jsonable(dataclasses.asdict(self))


# --- one pair, step by step ------------------------------------------------------------------------

def _size_text(array) -> str:
    return f"{array.shape[0]}×{array.shape[1]}"  # H×W, as the tables


def _match_size(ir, visible, ir_path: Path, vis_path: Path, resize: bool) -> tuple[Any, list[str]]:
    """Return the infrared at the visible's size (resized only when asked) and any note about it."""
    import cv2
    import numpy as np
    if ir.shape == visible.y.shape:
        return ir, []
    if not resize:
        raise InputError(f"sizes differ: infrared {ir_path} is {_size_text(ir)}, visible {vis_path} is "
                         f"{_size_text(visible.y)} (H×W); --resize resizes the infrared to the visible")
    h, w = visible.y.shape
    shrinking = ir.shape[0] * ir.shape[1] > h * w
    resized = cv2.resize(ir, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return np.clip(resized, 0.0, 1.0), [f"infrared resized from {_size_text(ir)} to {h}×{w}"]


@dataclass
class _LoadedPair:
    ir: Any  # (H, W) float32, at the visible's size
    visible: Any  # VisibleImage
    ir_shape: tuple[int, ...]  # as read, before any resize
    notes: list[str]


def _read_pair(ir_path: Path, vis_path: Path, resize: bool) -> _LoadedPair:
    """Read one pair and match the infrared's size to the visible's."""
    from swinfuse.data.io import read_infrared, read_visible
    ir = read_infrared(ir_path)
    visible = read_visible(vis_path)
    ir_shape = tuple(ir.shape)
    ir, notes = _match_size(ir, visible, ir_path, vis_path, resize)
    if visible.had_alpha:
        notes.append(f"alpha channel of {vis_path} dropped")
    return _LoadedPair(ir, visible, ir_shape, notes)


def _to_tensor(image, device):
    import torch
    return torch.from_numpy(image)[None, None].to(device)  # (H, W) -> (1, 1, H, W)


def _upscale(model) -> int:
    return int(getattr(getattr(model, "config", None), "upscale", 1))


def _fuse_y(model, ir_t, vis_t, text, upscale: int, tile: int | None = None, overlap: int | None = None,
            notes: list[str] | None = None):
    """Forward one prompt: ir_t, vis_t (1, 1, H, W) on the CPU, text (1, D) -> fused Y (H*upscale, W*upscale)
    float32. tile None: the whole frame; 0: whole unless it exceeds the memory budget; N: N-pixel tiles
    (swinfuse.tiling, which also retries smaller tiles on out-of-memory and adds its notes)."""
    _, _, h, w = ir_t.shape
    if tile is None:
        p = next(model.parameters())  # the model's device and precision
        out = model(ir_t.to(p.device, p.dtype), vis_t.to(p.device, p.dtype), text)  # (1, 1, H*up, W*up)
    else:
        from swinfuse.tiling import fuse_frame
        frame = fuse_frame(model, ir_t, vis_t, text, tile=tile, overlap=overlap)
        out = frame.image  # (1, 1, H*up, W*up) float32 on the CPU
        if notes is not None:
            notes.extend(n for n in frame.notes if n not in notes)
    expected = (1, 1, h * upscale, w * upscale)
    if tuple(out.shape) != expected:
        raise ShapeError(f"the model returned shape {tuple(out.shape)} for a {h}×{w} input, expected {expected}")
    return out[0, 0].float().clamp_(0.0, 1.0).cpu().numpy()


def _check_tiling(model, tile: int | None, overlap: int | None) -> None:
    """A tile or overlap that cannot blend is one error before any work, not one failure per pair."""
    if tile is not None:
        from swinfuse.tiling import check_tiling
        check_tiling(tile, overlap, model.config.window_size)


def _slug(prompt: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:limit].rstrip("-")
    return slug or "empty"


def _is_folder(output: Path) -> bool:
    """-o names a folder when it is one, or when it does not exist and has no extension (it is created)."""
    return output.is_dir() or (not output.suffix and not output.exists())


def output_paths(stem: str, prompts: list[str], output: Path | None) -> list[Path]:
    """Where each prompt's result goes. `output` is a file, or a folder that receives `<stem>_fused.png`
    (None: that name here). For several prompts each name gets `_p<k>-<slug>`, k counted from 1 and the slug
    taken from the prompt."""
    name = f"{stem}_fused.png"
    if output is None:
        base = Path(name)
    else:
        base = Path(output) / name if _is_folder(Path(output)) else Path(output)
    if len(prompts) == 1:
        return [base]
    return [base.with_name(f"{base.stem}_p{k}-{_slug(p)}{base.suffix}") for k, p in enumerate(prompts, 1)]


def _check_output(path: Path, bit_depth: int | None) -> None:
    """Reject an output path that cannot be written as asked, before any work is done."""
    from swinfuse.data.io import READ_EXTENSIONS, output_bit_depth
    if path.is_dir():
        raise OutputError(f"{path}: is an existing directory, expected an output file path")
    if path.suffix.lower() not in READ_EXTENSIONS:
        raise OutputError(f"{path}: unsupported output format {path.suffix or '(no extension)'!r} "
                          "(use .png, .jpg, .bmp or .tif)")
    output_bit_depth(path, bit_depth, 8)  # an explicit 16-bit JPEG fails here


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def _check_not_a_source(path: Path, sources: tuple[Path, ...]) -> None:
    if any(_same_file(path, source) for source in sources):
        raise OutputError(f"{path}: output would overwrite an input image")


def _caption(tile, text: str):
    """Stack a caption strip above a (H, W, 3) uint8 tile; long text is cut to the tile's width."""
    import cv2
    import numpy as np
    h, w = tile.shape[:2]
    scale = max(0.35, min(1.0, w / 640))
    strip_h = int(28 * scale) + 8
    font = cv2.FONT_HERSHEY_SIMPLEX
    text = text.encode("ascii", "replace").decode()  # Hershey fonts draw ASCII only
    while len(text) > 3 and cv2.getTextSize(text, font, scale, 1)[0][0] > w - 8:
        text = text[:-4] + "..."
    strip = np.full((strip_h, w, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, strip_h - 8), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, tile])


def _make_sheet(ir, visible, fused_ys: list, prompts: list[str], gray: bool):
    """infrared | visible | one fused result per prompt, each captioned, as one 8-bit BGR image."""
    import cv2
    import numpy as np
    from swinfuse.data.io import compose_output, quantize
    h, w = fused_ys[0].shape

    def bgr(image):
        image = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC) if image.shape[:2] != (h, w) else image
    tiles = [_caption(bgr(quantize(ir, 8)), "infrared"),
             _caption(bgr(compose_output(visible.y, visible, bit_depth=8)), "visible")]
    for k, (y, prompt) in enumerate(zip(fused_ys, prompts), 1):
        tiles.append(_caption(bgr(compose_output(y, visible, gray, 8)), f"p{k}: {prompt or '(empty prompt)'}"))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    return np.hstack([part for tile in tiles for part in (tile, gap)][:-1])


@dataclass
class OpenedPair:
    """What fuse_pair prepares before it needs the model: checked output paths and the pair, read."""

    ir_path: Path
    vis_path: Path
    prompts: list[str]
    paths: list[Path]
    sheet: Path | None
    pair: _LoadedPair
    load_ms: float


def open_pair(*, ir_path: str | Path, vis_path: str | Path, prompts: list[str], output: str | Path | None,
              resize: bool = False, bit_depth: int | None = None, sheet: str | Path | None = None) -> OpenedPair:
    """Check every output path (writable format, never a source image) and read the pair. Model-free, so a
    caller can do it before loading the weights: a bad path or image then costs no model load."""
    ir_path, vis_path = Path(ir_path), Path(vis_path)
    prompts = list(prompts) or [""]
    paths = output_paths(vis_path.stem, prompts, Path(output) if output is not None else None)
    sheet = Path(sheet) if sheet else None
    # Output problems are found before any work, so a bad -o costs nothing and writes nothing.
    for path in paths:
        _check_output(path, bit_depth)
        _check_not_a_source(path, (ir_path, vis_path))
    if sheet:
        _check_output(sheet, None)
        _check_not_a_source(sheet, (ir_path, vis_path))
    start = time.perf_counter()
    pair = _read_pair(ir_path, vis_path, resize)
    return OpenedPair(ir_path, vis_path, prompts, paths, sheet, pair, (time.perf_counter() - start) * 1e3)


def fuse_pair(*, ir_path: str | Path, vis_path: str | Path, prompts: list[str], output: str | Path | None,
              model, meta: dict, device, resize: bool = False, gray: bool = False, bit_depth: int | None = None,
              sheet: str | Path | None = None, weights: str | Path | None = None, tile: int | None = None,
              tile_overlap: int | None = None, opened: OpenedPair | None = None) -> FuseResult:
    """Fuse one infrared/visible pair once per prompt and write the results (see output_paths).

    No prompt means one empty prompt ("no instruction"). gray writes the fused Y only; bit_depth 8 or 16
    overrides the visible's depth; sheet writes a captioned side-by-side comparison there; weights is the
    checkpoint path, for the report only (default: meta["path"], which load_checkpoint sets). tile and
    tile_overlap: see _fuse_y (None: the whole frame). opened: what open_pair returned for these same
    arguments, when the caller checked and read the pair before loading the model.
    """
    import torch
    from swinfuse.data.io import compose_output, output_bit_depth, write_image_atomic

    device = torch.device(device)
    weights = weights or meta.get("path")
    if opened is None:
        opened = open_pair(ir_path=ir_path, vis_path=vis_path, prompts=prompts, output=output, resize=resize,
                           bit_depth=bit_depth, sheet=sheet)
    ir_path, vis_path, prompts, paths, sheet = opened.ir_path, opened.vis_path, opened.prompts, opened.paths, opened.sheet
    pair = opened.pair
    ir, visible, notes = pair.ir, pair.visible, pair.notes
    _check_tiling(model, tile, tile_overlap)
    upscale = _upscale(model)
    reset_gpu_peak(device)
    loaded = time.perf_counter()

    depths = [output_bit_depth(p, bit_depth, visible.bit_depth) for p in paths]
    if visible.bit_depth == 16 and bit_depth is None and 8 in depths:
        notes.append("16-bit visible written as 8-bit where the output format stores 8-bit only")
    with torch.inference_mode():
        text = model.encode_prompts(prompts).to(device)  # (N, D)
        ir_t, vis_t = _to_tensor(ir, "cpu"), _to_tensor(visible.y, "cpu")  # _fuse_y moves them (or tiles)
        sync(device)
        prepared = time.perf_counter()
        fused_ys = [_fuse_y(model, ir_t, vis_t, text[k:k + 1], upscale, tile, tile_overlap, notes)
                    for k in range(len(prompts))]
    forwarded = time.perf_counter()

    outputs = []
    for path, depth, prompt, y in zip(paths, depths, prompts, fused_ys):
        array = compose_output(y, visible, gray, depth)
        write_image_atomic(path, array)
        outputs.append(FusedOutput(prompt, path, tuple(array.shape), depth))
    if sheet:
        write_image_atomic(sheet, _make_sheet(ir, visible, fused_ys, prompts, gray))
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


# --- a folder of pairs -----------------------------------------------------------------------------

def _versions() -> dict[str, str]:
    import platform

    import cv2
    import numpy
    import torch

    from swinfuse import __version__
    return {"swinfuse": __version__, "torch": torch.__version__, "opencv": cv2.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def _write_manifest(path: Path, report: BatchReport, meta: dict, weights, settings: dict) -> None:
    """A small JSON record of what produced the outputs beside them, so runs can be traced and compared."""
    from datetime import datetime, timezone

    from swinfuse.data.io import write_bytes_atomic
    config = meta.get("config")
    manifest = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "weights": {"path": weights or meta.get("path"), "sha256": meta.get("sha256")},
        "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config,
        "provenance": meta.get("provenance"),
        "prompt": report.prompt,
        "settings": settings,
        "summary": {k: getattr(report, k) for k in ("pairs_found", "pairs_selected", "written", "skipped",
                                                     "failed", "mean_latency_ms", "throughput_pairs_per_s")},
        "failed": [{"rel": r.rel, "reason": r.reason} for r in report.records if r.status == "failed"],
    }
    write_bytes_atomic(path, (json.dumps(to_jsonable(manifest), indent=2, allow_nan=False) + "\n").encode())


def _check_not_an_input_folder(output_dir: Path, *inputs: Path) -> None:
    """Refuse an output folder that is an input folder or inside one, before anything is written there: its
    outputs would replace sources of the same name, or be taken for sources by the next run."""
    out = output_dir.resolve()
    for folder in inputs:
        folder = folder.resolve()
        if out == folder or folder in out.parents:
            raise OutputError(f"{output_dir}: is {'' if out == folder else 'inside '}the input folder {folder}; "
                              "choose another -o")


def fuse_batch(*, root: str | Path | None, output_dir: str | Path, prompt: str, model, meta: dict, device,
               ir_dir: str | Path | None = None, vis_dir: str | Path | None = None, recursive: bool = False,
               overwrite: bool = False, shard: str | tuple[int, int] | None = None, resize: bool = False,
               gray: bool = False, bit_depth: int | None = None, ext: str = ".png",
               weights: str | Path | None = None, tile: int | None = None, tile_overlap: int | None = None,
               progress: Callable[[int, int, PairRecord | None], None] | None = None) -> BatchReport:
    """Fuse every pair under `root` (or ir_dir/vis_dir) into output_dir/<rel><ext>, streaming from disk.

    Existing outputs are skipped unless overwrite, so a killed run resumes where it stopped. A pair that
    fails (unreadable, sizes differ, model error) is recorded with its one-line reason, leaves no file,
    and the run goes on. shard 'i/n' (1-based) or (i, n) takes the i-th of n slices of the sorted pairs.
    progress(done, total, record) is called once with record None before the first pair, then after
    each pair. A manifest.json (manifest-shard-i-of-n.json for a shard, so concurrent shards writing to
    one folder don't overwrite each other's) is written beside the outputs.
    """
    import torch
    from swinfuse.data.io import compose_output, output_bit_depth, stale_temporaries
    from swinfuse.data.pairs import find_pairs, parse_shard
    from swinfuse.data.pairs import shard as take_shard
    from swinfuse.data.stream import AsyncWriter, error_line, prefetch

    device = torch.device(device)
    output_dir = Path(output_dir)
    ext = ext if ext.startswith(".") else f".{ext}"
    _check_output(output_dir / f"<stem>{ext}", bit_depth)
    _check_tiling(model, tile, tile_overlap)
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"{output_dir}: is a file, expected an output folder")
    shard = parse_shard(shard) if isinstance(shard, str) else shard
    found = find_pairs(root, ir_dir=ir_dir, vis_dir=vis_dir, recursive=recursive)
    _check_not_an_input_folder(output_dir, found.ir_dir, found.vis_dir)
    selected = take_shard(found.pairs, *shard) if shard else found.pairs
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{output_dir}: cannot create the output folder ({e.strerror or e})") from None

    # A run killed by SIGKILL leaves its half-written temporaries (hidden, never taken for outputs): this run
    # owns these outputs, so it removes them.
    for stale in stale_temporaries(output_dir / f"{pair.rel}{ext}" for pair in selected):
        stale.unlink(missing_ok=True)
    upscale = _upscale(model)
    reset_gpu_peak(device)
    total = len(selected)
    records: list[PairRecord | None] = [None] * total
    done = 0

    def finish(index: int, record: PairRecord) -> None:
        nonlocal done
        records[index] = record
        done += 1
        if progress:
            progress(done, total, record)

    if progress:
        progress(0, total, None)
    todo = []
    for index, pair in enumerate(selected):
        out = output_dir / f"{pair.rel}{ext}"
        record = PairRecord(pair.rel, pair.ir, pair.vis, out, "skipped", "output exists")
        if _same_file(out, pair.ir) or _same_file(out, pair.vis):
            record.status, record.reason = "failed", f"{out}: output would overwrite an input image"
        if record.status == "failed" or (out.exists() and not overwrite):
            finish(index, record)
        else:
            todo.append((index, pair, out))

    start = time.perf_counter()
    with torch.inference_mode():
        text = model.encode_prompts([prompt]).to(device)  # (1, D), once for the whole batch
    in_flight: dict[int, tuple[PairRecord, float]] = {}

    def finish_write(result) -> None:
        record, elapsed_ms = in_flight.pop(result.tag)
        record.status, record.reason = ("failed", result.error) if result.error else ("written", None)
        record.latency_ms = elapsed_ms + result.write_ms
        finish(result.tag, record)

    with AsyncWriter() as writer:
        for loaded in prefetch(todo, lambda job: _read_pair(job[1].ir, job[1].vis, resize)):
            index, pair, out = loaded.item
            record = PairRecord(pair.rel, pair.ir, pair.vis, out, "failed", loaded.error, loaded.load_ms)
            if loaded.error:
                finish(index, record)
                continue
            began = time.perf_counter()
            try:
                visible = loaded.value.visible
                depth = output_bit_depth(out, bit_depth, visible.bit_depth)
                with torch.inference_mode():
                    y = _fuse_y(model, _to_tensor(loaded.value.ir, "cpu"), _to_tensor(visible.y, "cpu"),
                                text, upscale, tile, tile_overlap, loaded.value.notes)
                array = compose_output(y, visible, gray, depth)
            except Exception as e:  # one pair's failure is recorded, the batch goes on
                record.reason = error_line(e)
                finish(index, record)
                continue
            record.notes = loaded.value.notes
            in_flight[index] = (record, loaded.load_ms + (time.perf_counter() - began) * 1e3)
            writer.submit(out, array, tag=index)
            for result in writer.drain():
                finish_write(result)
        for result in writer.close():
            finish_write(result)
    wall = time.perf_counter() - start

    written = [r for r in records if r.status == "written"]
    name = f"manifest-shard-{shard[0]}-of-{shard[1]}.json" if shard else "manifest.json"
    report = BatchReport(
        root=Path(root) if root is not None else None, output_dir=output_dir, prompt=prompt,
        shard=f"{shard[0]}/{shard[1]}" if shard else None,
        pairs_found=len(found.pairs), pairs_selected=total, written=len(written),
        skipped=sum(r.status == "skipped" for r in records), failed=sum(r.status == "failed" for r in records),
        unmatched_ir=found.unmatched_ir, unmatched_vis=found.unmatched_vis, duplicates=found.duplicates,
        mean_latency_ms=sum(r.latency_ms for r in written) / len(written) if written else None,
        throughput_pairs_per_s=len(written) / wall if written and wall > 0 else None,
        wall_s=wall, peak_rss_mb=peak_rss_mb(), peak_gpu_mb=gpu_peak_mb(device),
        manifest=output_dir / name, records=records,
    )
    settings = {"root": root, "ir_dir": ir_dir, "vis_dir": vis_dir, "recursive": recursive,
                "overwrite": overwrite, "shard": report.shard, "resize": resize, "gray": gray,
                "bit_depth": bit_depth, "ext": ext, "device": str(device), "tile": tile, "tile_overlap": tile_overlap}
    _write_manifest(report.manifest, report, meta, weights, settings)
    return report
