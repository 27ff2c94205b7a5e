"""Fuse an infrared and a visible video into one, streamed: decoding, the forward and encoding overlap.

Three threads, as `batch` overlaps reading and writing (swinfuse.data.stream): a reader decodes both sources
and splits the visible into Y and Cr/Cb (prefetch, a bounded queue), the caller's thread runs the model on
each pair (the prompt encoded once), and a writer (AsyncWriter, a bounded queue) puts the chroma back,
measures flicker and warping error and encodes. At most a few frames are in flight, so memory does not grow
with the length of the video. Each frame is fused as `fuse` fuses an image (swinfuse.fusing.forward: whole or
in tiles; swinfuse.data.io: colour, gray, bit depth).

open_video checks everything that needs no model (inputs, rates, lengths, output); fuse_video runs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from swinfuse.data.loading import check_sizes
from swinfuse.data.outputs import check_not_an_input_folder, same_file
from swinfuse.errors import ConfigError, InputError, OutputError
from swinfuse.fusing.forward import check_tiling, fuse_y, model_upscale, run_device, to_tensor
from swinfuse.fusing.options import FuseOptions
from swinfuse.memory import gpu_peak_mb, peak_rss_mb, reset_gpu_peak
from swinfuse.video import sinks
from swinfuse.video.matching import PairPlan, parse_offset, plan_pairs
from swinfuse.video.results import VideoInterrupted, VideoReport
from swinfuse.video.sources import FrameSource, decode_pairs, open_source, split_pair

DEFAULT_FPS = 30.0  # for a visible folder of frames when neither --fps nor an infrared video gives a rate


@dataclass
class OpenedVideo:
    """What open_video checked and planned before any model is loaded."""

    ir: FrameSource
    vis: FrameSource
    plan: PairPlan
    output: Path
    kind: str  # 'video' or 'frames'
    codec: str | None
    fps_out: float
    notes: list[str] = field(default_factory=list)


def open_video(*, ir: str | Path, vis: str | Path, output: str | Path, options: FuseOptions = FuseOptions(),
               start: int = 0, frames: int | None = None, ir_offset: str | int | None = None, trim: bool = False,
               match_rate: bool = False, fps: float | None = None, codec: str | None = None,
               overwrite: bool = False) -> OpenedVideo:
    """Open both inputs (video files or folders of numbered frames), check the output, and plan the pairs
    (swinfuse.video.matching: rates, lengths, --ir-offset, --trim, --match-rate, --start, --frames). Model-free,
    so a bad input or output costs no model load. Of the options it reads resize, bit_depth and max_pixels."""
    if options.stretch:
        raise ConfigError("stretch maps each image to its own range, which flickers from frame to frame; video "
                          "does not take it")
    output = Path(output)
    kind = sinks.check_output(output, overwrite, codec, options.bit_depth)
    ir_src = open_source(ir, "infrared", options.max_pixels)
    vis_src = open_source(vis, "visible", options.max_pixels)
    for source in (ir_src, vis_src):
        if same_file(output, source.path):
            raise OutputError(f"{output}: output would overwrite an input")
        if not source.is_video:
            check_not_an_input_folder(output, source.path)
    check_sizes(ir_src.size, vis_src.size, ir_src.path, vis_src.path, options.resize)
    plan = plan_pairs(ir_count=ir_src.count, vis_count=vis_src.count, ir_fps=ir_src.fps, vis_fps=vis_src.fps,
                      offset=parse_offset(ir_offset, ir_src.fps), trim=trim, match_rate=match_rate, start=start,
                      frames=frames, ir_name=f"infrared {ir_src.path}", vis_name=f"visible {vis_src.path}")
    notes = list(plan.notes)
    if fps is not None and vis_src.fps is not None:
        raise ConfigError(f"--fps sets the rate of a visible folder of frames; the visible video {vis_src.path} "
                          f"keeps its own ({vis_src.fps:g} fps)")
    if fps is not None and fps <= 0:
        raise ConfigError(f"--fps must be > 0, got {fps:g}")
    fps_out = vis_src.fps or fps or ir_src.fps or DEFAULT_FPS
    if vis_src.fps is None and fps is None:
        notes.append(f"the visible frames have no frame rate: {fps_out:g} fps taken from "
                     f"{'the infrared video' if ir_src.fps else 'the default'} (--fps sets it)")
    return OpenedVideo(ir_src, vis_src, plan, output, kind, (codec or sinks.CODECS.get(output.suffix.lower()))
                       if kind == "video" else None, fps_out, notes)


class _FrameWriter:
    """The writer thread's work for one fused frame (AsyncWriter's write(path, job)): optional temporal
    smoothing, the visible's chroma back, the temporal measures, then the sink."""

    def __init__(self, sink, meter, smoother, gray: bool, bit_depth: int | None, kind: str):
        self.sink, self.meter, self.smoother = sink, meter, smoother
        self.gray, self.bit_depth, self.kind = gray, bit_depth, kind

    def __call__(self, _path, job) -> None:
        from swinfuse.data.io import compose_output, output_bit_depth

        y, ir, visible = job
        if self.smoother is not None:
            y = self.smoother(y, ir, visible.y)
        if self.meter is not None:
            self.meter.update(y, ir, visible.y)
        depth = 8 if self.kind == "video" else output_bit_depth(Path("f.png"), self.bit_depth, visible.bit_depth)
        self.sink.write(compose_output(y, visible, self.gray, depth))


def fuse_video(opened: OpenedVideo, *, prompt: str = "", model, meta: dict, options: FuseOptions = FuseOptions(),
               weights: str | Path | None = None, metrics: bool = True, temporal_smoothing: float = 0.0,
               progress: Callable[[int, int], None] | None = None) -> VideoReport:
    """Fuse every planned pair of `opened` and write the output -> VideoReport.

    options: read as fusing.fuse_pair reads them (gray, bit_depth for PNG frames, tile, tile_overlap, resize,
    device; stretch is refused by open_video). metrics: measure flicker and warping error
    (swinfuse.metrics.temporal) of the output and the sources. temporal_smoothing: 0 (off) to <1, see
    swinfuse.video.smoothing. progress(done, total) after each frame written (and once with 0 first).
    Ctrl-C: the frames already fused are written, the output is closed and kept as a playable partial
    (sinks.partial_name) and VideoInterrupted carries the report. Any other error removes the output."""
    import torch

    from swinfuse.data.stream import AsyncWriter, prefetch
    from swinfuse.metrics.temporal import TemporalMeter
    from swinfuse.video.smoothing import make_smoother

    device = run_device(model, options.device)
    check_tiling(model, options.tile, options.tile_overlap)
    upscale = model_upscale(model)
    plan, total = opened.plan, opened.plan.count
    h, w = opened.vis.size
    notes = list(opened.notes)
    meter = TemporalMeter() if metrics else None
    smoother = make_smoother(temporal_smoothing)
    reset_gpu_peak(device)
    sinks.remove_stale(opened.output)
    with torch.inference_mode():
        text = model.encode_prompts([prompt]).to(device)  # (1, D): once for every frame
    sink = sinks.open_sink(opened.output, opened.kind, opened.fps_out, (h * upscale, w * upscale), opened.codec)
    size_out = sink.size
    if size_out != (h * upscale, w * upscale):
        notes.append(f"the encoder stores even sizes: frames are {size_out[0]}×{size_out[1]}, the last row or "
                     f"column of {h * upscale}×{w * upscale} dropped (PNG frames keep it)")
    decode_ms = forward_ms = write_ms = 0.0
    done = 0
    if progress:
        progress(0, total)

    def settle(results) -> None:
        nonlocal done, write_ms
        for result in results:
            if result.error:
                raise OutputError(f"{opened.output}: {result.error}")
            done += 1
            write_ms += result.write_ms
            if progress:
                progress(done, total)

    started = time.perf_counter()
    writer = AsyncWriter(depth=2, write=_FrameWriter(sink, meter, smoother, options.gray, options.bit_depth,
                                                     opened.kind))
    pairs = decode_pairs(opened.ir, opened.vis, plan, options.max_pixels)  # decoded in the reader thread
    frames = prefetch(pairs, lambda item: split_pair(item, opened.ir.path, opened.vis.path, options.resize), depth=2)
    interrupted = False
    try:
        try:
            for loaded in frames:
                if loaded.error:
                    raise InputError(loaded.error)
                k, ir, visible, frame_notes = loaded.value
                notes.extend(n for n in frame_notes if n not in notes)
                decode_ms += loaded.load_ms
                began = time.perf_counter()
                with torch.inference_mode():
                    y = fuse_y(model, to_tensor(ir, "cpu"), to_tensor(visible.y, "cpu"), text, upscale, options.tile,
                               options.tile_overlap, notes, tone=options.tone)  # (H*up, W*up) float32 in [0, 1]
                forward_ms += (time.perf_counter() - began) * 1e3
                writer.submit(opened.output, (y, ir, visible), tag=k)
                settle(writer.drain())
        finally:
            frames.close()  # stops the reader thread
            pending = writer.close()  # the frames handed over are written (or fail) before the output closes
        settle(pending)
    except KeyboardInterrupt:
        interrupted = True  # what was written is kept, playable, under a name that says so
    except BaseException:
        sink.abandon(keep=False)  # any other failure leaves no output behind
        raise
    wall = time.perf_counter() - started
    output, kept = (None, sink.abandon(keep=True)) if interrupted else (sink.finish(), None)
    report = VideoReport(
        ir=opened.ir.path, vis=opened.vis.path, output=output, kind=opened.kind, codec=opened.codec,
        frames=sink.written, planned=total, start=plan.vis_first, ir_offset=plan.offset,
        fps_in={"infrared": opened.ir.fps, "visible": opened.vis.fps}, fps_out=opened.fps_out,
        size_in=(h, w), size_out=size_out, prompt=prompt,
        weights=Path(weights or meta.get("path")) if (weights or meta.get("path")) else None,
        weights_sha256=meta.get("sha256"), device=str(device),
        latency_ms={k: v / sink.written if sink.written else None
                    for k, v in (("decode", decode_ms), ("forward", forward_ms), ("write", write_ms))},
        wall_s=wall, throughput_fps=sink.written / wall if sink.written and wall > 0 else None,
        peak_rss_mb=peak_rss_mb(), peak_gpu_mb=gpu_peak_mb(device),
        temporal=meter.stats().to_dict() if meter is not None else None, temporal_smoothing=temporal_smoothing,
        interrupted=interrupted, partial=kept, notes=notes)
    if interrupted:
        raise VideoInterrupted(report)
    return report
