"""`swinfuse video`: fuse an infrared and a visible video (or folders of numbered frames) into one, streamed,
with one option per FuseOptions field (how each frame is made and how fast), as `fuse` and `batch`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from swinfuse import api
from swinfuse.cli import render
from swinfuse.cli.options import JsonOpt, WeightsOpt, check_prompts, fuse_options, with_fuse_options


def _default_output(vis: Path) -> Path:
    return Path(f"{vis.stem if vis.suffix else vis.name}_fused.mp4")


@with_fuse_options(after="metrics", exclude=("stretch",))  # per-frame stretching would flicker
def video(
    ir: Annotated[Path, typer.Argument(help="Infrared video file, or folder of numbered frames.")],
    vis: Annotated[Path, typer.Argument(help="Visible video file (colour or gray), or folder of numbered frames.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=(
        "A video file (.mp4 and .mov: MPEG-4 Part 2; .avi: Motion-JPEG; .mkv: MPEG-4 Part 2; .webm: VP8), or a "
        "folder (a path without an extension) for PNG frames 000000.png, ... (default: <visible>_fused.mp4 "
        "here).")) ] = None,
    # A list, so that a second -p is refused instead of silently replacing the first.
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help=(
        "One prompt for every frame (empty: no instruction), encoded once."), callback=check_prompts)] = None,
    start: Annotated[int, typer.Option(min=0, help="First pair to fuse (0-based, after --ir-offset).")] = 0,
    frames: Annotated[Optional[int], typer.Option(min=1, help="Frames to fuse (default: to the end).")] = None,
    ir_offset: Annotated[Optional[str], typer.Option(help=(
        "Infrared frame shown with the visible's first frame: a frame count (12, -3) or a time (0.4s, -40ms); "
        "negative: the visible's first frames have no infrared and are left out.")) ] = None,
    trim: Annotated[bool, typer.Option(help="Fuse the frames both inputs have when their lengths differ "
                                            "(default: refused, naming both).")] = False,
    match_rate: Annotated[bool, typer.Option(help=(
        "When frame rates differ, pair each visible frame with the infrared frame nearest in time (default: "
        "refused, naming both)."))] = False,
    fps: Annotated[Optional[float], typer.Option(help="Frame rate of the output when the visible is a folder of "
                                                      "frames (default: the infrared video's, else 30).")] = None,
    codec: Annotated[Optional[str], typer.Option(help="Four-character code of the encoder, e.g. mp4v, MJPG, VP80, "
                                                      "FFV1 (lossless, .mkv/.avi) (default: by extension).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output (default: refused).")] = False,
    temporal_smoothing: Annotated[float, typer.Option(min=0.0, max=0.99, help=(
        "Steady the output: 0 (off) to 0.99; where neither source changed, keep this share of the previous "
        "output frame (0.8 cuts the shipped model's flicker by about a quarter; about 1 ms a 480x640 "
        "frame).")) ] = 0.0,
    metrics: Annotated[bool, typer.Option(help="Measure flicker and warping error of the output and the sources "
                                               "(about 50 ms a 480x640 frame, in the writer thread).")] = True,
    weights: WeightsOpt = None,
    json_out: JsonOpt = False,
    **options,
):
    """Fuse an aligned infrared/visible pair of videos (or frame folders) into a video, streamed: the visible's
    frame rate kept, flicker and warping error reported against the sources' own. Ctrl-C keeps the frames
    written as OUT.partial.mp4 (playable) and exits 130."""
    if prompt and len(prompt) > 1:
        raise typer.BadParameter(f"video takes one prompt, got {len(prompt)}", param_hint="'--prompt' / '-p'")
    started = time.perf_counter()
    try:
        with render.progress_bar("fusing", "{task.fields[rate]}", transient=json_out) as update:
            def progress(done: int, total: int) -> None:
                elapsed = time.perf_counter() - started
                update(done, total, rate=f"{done / elapsed:.2f} frames/s" if done else "")

            report = api.fuse_video(ir=ir, vis=vis, output=output or _default_output(vis),
                                    prompt=prompt[0] if prompt else "", weights=weights, start=start, frames=frames,
                                    ir_offset=ir_offset, trim=trim, match_rate=match_rate, fps=fps, codec=codec,
                                    overwrite=overwrite, metrics=metrics, temporal_smoothing=temporal_smoothing,
                                    progress=progress, options=fuse_options(options))
    except KeyboardInterrupt as exc:
        typer.echo(render.video_interrupted_line(getattr(exc, "report", None)), err=True)
        raise typer.Exit(code=130) from None
    for note in report.notes:
        render.stderr.print(f"note: {note}")
    render.show_result(report, render.video_tables, json_out)


def register(app: typer.Typer) -> None:
    app.command()(video)
