"""`swinfuse fuse` (one pair, one output per prompt) and `swinfuse batch` (every pair of a folder, streamed),
each with one option per FuseOptions field (how each image is made and how fast)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from swinfuse import api
from swinfuse.cli import render
from swinfuse.cli.options import JsonOpt, WeightsOpt, check_prompts, fuse_options, with_fuse_options
from swinfuse.errors import InputError


@with_fuse_options(after="sheet")
def fuse(
    ir: Annotated[Path, typer.Argument(help="Infrared image.")],
    vis: Annotated[Path, typer.Argument(help="Visible image (colour or gray).")],
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help=(
        "What to fix, e.g. 'the visible image is in low light'. Repeat for one output per prompt. "
        "An empty prompt means no instruction."), callback=check_prompts)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=(
        "Output file, or folder (an existing one, or a path without an extension) that receives "
        "<stem>_fused.png (default: here). With several prompts each name gets _p<k>-<prompt>.")) ] = None,
    sheet: Annotated[Optional[Path], typer.Option(help="Also write infrared | visible | fused-per-prompt, captioned.")] = None,
    weights: WeightsOpt = None,
    json_out: JsonOpt = False,
    **options,
):
    """Fuse one infrared/visible pair under a prompt and write the result."""
    # A tiled frame (a large one) shows its tiles; the bar appears at the first tile, so a whole frame shows none.
    with render.progress_bar("tiles", transient=True) as update:
        result = api.fuse_pair(ir=ir, vis=vis, prompts=prompt or [], output=output, weights=weights, sheet=sheet,
                               options=fuse_options(options), progress=update)
    for note in result.notes:
        render.stderr.print(f"note: {note}")
    render.show_result(result, render.fuse_tables, json_out)


BATCH_FORMATS = ("png", "jpg", "tif")


def _check_ext(value: str) -> str:
    value = value.lower().lstrip(".")
    if value not in BATCH_FORMATS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(BATCH_FORMATS)}")
    return value


def _check_shard(value: Optional[str]) -> Optional[str]:
    if value is not None:
        try:
            api.parse_shard(value)
        except InputError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value


@with_fuse_options(after="shard")
def batch(
    root: Annotated[Optional[Path], typer.Argument(help="Folder with ir/+vis/, ir/+vi/, Infrared/+Visible/ or IR/+VI_Y/.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")] = Path("fused"),
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", metavar="TEXT", help=(
        "The prompt for every pair (empty: no instruction). Repeat for one output set per prompt, each name "
        "with _p<k>-<prompt> as fuse names them; the model loads once."), callback=check_prompts)] = None,
    ir_dir: Annotated[Optional[Path], typer.Option(help="Infrared folder (instead of a layout under ROOT).")] = None,
    vis_dir: Annotated[Optional[Path], typer.Option(help="Visible folder (instead of a layout under ROOT).")] = None,
    recursive: Annotated[bool, typer.Option(help="Descend into subfolders, mirroring the tree.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Redo pairs whose output exists (default: skip, so reruns resume).")] = False,
    shard: Annotated[Optional[str], typer.Option(help="i/n: process the i-th (1-based) of n slices of the sorted pairs.",
                                                 callback=_check_shard)] = None,
    ext: Annotated[str, typer.Option(metavar="png|jpg|tif", callback=_check_ext, help=(
        "Format of the outputs, <stem>.<ext> (jpg: 8-bit).")) ] = "png",
    metrics: Annotated[bool, typer.Option(help="Score every output with the field's metrics (as `swinfuse evaluate`) "
                                               "and add them to the report.")] = False,
    weights: WeightsOpt = None,
    json_out: JsonOpt = False,
    **options,
):
    """Fuse every pair of a folder, streamed from disk, with a progress bar; failures are listed, the run goes on.
    Exit code 0 when every pair is written or skipped, 1 when any failed."""
    if root is None and (ir_dir is None or vis_dir is None):
        raise typer.BadParameter("give the folder of pairs (or --ir-dir and --vis-dir)", param_hint="'ROOT'")
    # The bar starts once the pairs are found and the weights loaded, so an early error stays one line.
    prompts = list(prompt or [""])
    reports = []
    for k, text in enumerate(prompts, 1):
        started = time.perf_counter()
        try:
            label = "fusing" if len(prompts) == 1 else f"fusing p{k}"
            with render.progress_bar(label, "{task.fields[rate]}", transient=json_out) as update:
                def progress(done: int, total: int, record) -> None:
                    elapsed = time.perf_counter() - started
                    update(done, total, rate=f"{done / elapsed:.2f} pairs/s" if done else "")

                reports.append(api.fuse_batch(
                    root=root, output_dir=output, prompt=text, weights=weights, ir_dir=ir_dir, vis_dir=vis_dir,
                    recursive=recursive, overwrite=overwrite, shard=shard, progress=progress, metrics=metrics,
                    ext=ext, suffix=api.prompt_suffix(k, text) if len(prompts) > 1 else "",
                    options=fuse_options(options)))
        except KeyboardInterrupt as exc:
            # Ctrl-C: one line on what is on disk (the manifest was written for it) and how to go on.
            typer.echo(render.batch_interrupted_line(getattr(exc, "report", None)), err=True)
            raise typer.Exit(code=130) from None
        if not json_out:
            render.show_result(reports[-1], render.batch_tables, False)
    if json_out:  # one object for one prompt (as before), a list for several
        render.emit_json([render.to_jsonable(r.to_dict()) for r in reports] if len(reports) > 1
                         else render.to_jsonable(reports[0].to_dict()))
    if any(r.failed for r in reports):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command()(fuse)
    app.command()(batch)
