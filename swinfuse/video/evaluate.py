"""`swinfuse evaluate --video`: the temporal measures (swinfuse.metrics.temporal) of a fused video, or a folder of
fused frames, against the sources it was made from. Read as `swinfuse video` reads them, so the same
--start and --ir-offset line the fused frames up with their pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from swinfuse.errors import InputError
from swinfuse.video.matching import parse_offset, plan_pairs
from swinfuse.video.results import VideoEvaluation
from swinfuse.video.sources import decode_pairs, open_source, split_pair


def evaluate_video(*, fused: str | Path, ir: str | Path, vis: str | Path, start: int = 0,
                   ir_offset: str | int | None = None, match_rate: bool = False, resize: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> VideoEvaluation:
    """Flicker and warping error of `fused` (a video or a folder of frames, frame k made from pair start + k)
    and of its sources. The sources may run longer than the fused frames (a part was fused), not shorter."""
    from swinfuse.data.io import visible_from_array
    from swinfuse.metrics.temporal import TemporalMeter

    fused_src = open_source(fused, "fused", 0)
    ir_src, vis_src = open_source(ir, "infrared", 0), open_source(vis, "visible", 0)
    plan = plan_pairs(ir_count=ir_src.count, vis_count=vis_src.count, ir_fps=ir_src.fps, vis_fps=vis_src.fps,
                      offset=parse_offset(ir_offset, ir_src.fps), trim=True, match_rate=match_rate, start=start,
                      frames=fused_src.count, ir_name=f"infrared {ir_src.path}", vis_name=f"visible {vis_src.path}")
    if plan.count < fused_src.count:
        raise InputError(f"{fused_src.describe()} has {fused_src.count} frames, the sources pair into {plan.count} "
                         f"from --start {start}")
    (h, w), (fh, fw) = vis_src.size, fused_src.size
    if fh % h or fw % w or fh // h != fw // w:
        raise InputError(f"{fused_src.describe()}: frames are {fh}×{fw}, the visible's {h}×{w} (H×W); expected the "
                         "same size or a whole multiple of it")
    meter = TemporalMeter()
    notes = [n for n in plan.notes if not n.startswith("trimmed")]
    pairs = decode_pairs(ir_src, vis_src, plan)
    for k, (fused_frame, pair) in enumerate(zip(fused_src.frames(range(fused_src.count)), pairs)):
        _, ir_y, visible, pair_notes = split_pair(pair, ir_src.path, vis_src.path, resize)
        notes.extend(n for n in pair_notes if n not in notes)
        meter.update(visible_from_array(*fused_frame).y, ir_y, visible.y)
        if progress:
            progress(k + 1, fused_src.count)
    return VideoEvaluation(fused=fused_src.path, ir=ir_src.path, vis=vis_src.path, frames=meter.frames,
                           start=plan.vis_first, ir_offset=plan.offset, temporal=meter.stats().to_dict(), notes=notes)
