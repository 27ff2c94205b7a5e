"""`swinfuse evaluate`: parse the command line, call `api.evaluate`, render the report.

    swinfuse evaluate runs/fused ../data/roadscene                  # one method; sources as ir/ + vis/
    swinfuse evaluate out.png --ir-dir IR --vis-dir VIS --json
    swinfuse evaluate ../data/roadscene --method ours=runs/fused --method SeAFusion=peer/ --format latex --rank
    swinfuse evaluate --video fused.mp4 ../data/video/0117_1605          # flicker, warping error; CLIP/ir.mp4 + vis.mp4
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from swinfuse import api
from swinfuse.cli import render
from swinfuse.cli.options import JsonOpt

FORMATS = ("table", "markdown", "latex", "csv", "json")

# What each name of api.conventions() means, for --help (a test checks that every name appears here).
CONVENTION_HELP = (
    "cddfuse (default): CDDFuse's utils/Evaluator.py (Zhaozixiang1228/MMIF-CDDFuse) with scikit-image 0.19: MI "
    "in nats; MI, VIF and SSIM summed over the two sources; SSIM with scikit-image 0.19's implicit range 2 for "
    "float images. cddfuse-255: the same with SSIM data_range=255 (what newer scikit-image needs passed). "
    "mean-bits (descriptive, no single evaluator): MI in bits (log2, as Tang's MATLAB Evaluation-for-Image-Fusion), "
    "MI, VIF and SSIM the mean of the two sources, SSIM data range 255.")


def _parse_method(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name.strip() or not folder.strip():
        raise typer.BadParameter(f"expected NAME=FOLDER, got {text!r}", param_hint="'--method'")
    return name.strip(), Path(folder.strip())


def evaluate(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        show_default=False, metavar="FUSED... SOURCES",
        help="FUSED SOURCES: a fused image or folder (named like the sources) and the folder of source pairs "
             "(ir/+vis/, ir/+vi/, Infrared/+Visible/ or IR/+VI_Y/, any case). Several FUSED folders compare "
             "methods, each named by its folder; with --method NAME=FOLDER give SOURCES alone. With --ir-dir "
             "and --vis-dir every path is a FUSED one.")] = None,
    method: Annotated[Optional[list[str]], typer.Option(
        "--method", "-m", help="NAME=FOLDER: a method's fused images, one row in the comparison. Repeatable.")] = None,
    ir_dir: Annotated[Optional[Path], typer.Option(help="Infrared source folder (instead of SOURCES).")] = None,
    vis_dir: Annotated[Optional[Path], typer.Option(help="Visible source folder (instead of SOURCES).")] = None,
    convention: Annotated[str, typer.Option(help="Metric conventions, named: " + CONVENTION_HELP)] = "cddfuse",
    output_format: Annotated[str, typer.Option(
        "--format", help="table | markdown | latex | csv | json. Markdown and LaTeX are the tables papers print: "
                         "mean ± std per metric, its direction (↑/↓), the best in bold.")] = "table",
    rank: Annotated[bool, typer.Option("--rank", help="Add each method's mean rank over the metrics.")] = False,
    all_images: Annotated[bool, typer.Option(
        "--all-images", help="Score each method on all of its images, not only those every method has.")] = False,
    workers: Annotated[int, typer.Option(min=0, help="Processes computing metrics (0: one per CPU; 1: no pool).")] = 0,
    csv: Annotated[Optional[Path], typer.Option(help="Also write the per-image rows and each mean to this CSV file.")] = None,
    video: Annotated[bool, typer.Option(
        "--video", help="FUSED is a video or a folder of frames (in order), SOURCES a clip folder holding ir.mp4 + "
                        "vis.mp4 or ir/ + vis/ (or --ir-dir/--vis-dir, videos or frame folders): report flicker and "
                        "warping error of FUSED and of the sources, as `swinfuse video` does.")] = False,
    start: Annotated[int, typer.Option(min=0, help="With --video: the --start FUSED was made with.")] = 0,
    ir_offset: Annotated[Optional[str], typer.Option(help="With --video: the --ir-offset FUSED was made with.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Score fused images with the field's metrics: EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM (higher is
    better) and Nabf (lower is better); one method per image and their mean, several side by side.

    Default conventions are those of the CDDFuse evaluator (Zhaozixiang1228/MMIF-CDDFuse, utils/Evaluator.py):
    images are gray float values on a 0..255 scale, read with cv2 (BGR to gray, rounded); MI, VIF and SSIM are
    summed over the two sources (infrared and visible), so an SSIM near 2 is a perfect copy of both. EN in
    bits, MI in nats; SSIM as scikit-image 0.19 computes it for float images (data_range 2, 7x7 window); Qabf
    with CDDFuse's Sobel and constants; Nabf as Kumar's modified fusion-artifacts measure. --convention
    switches to another. Fused images are matched to source pairs by file name stem; unmatched names are
    listed. Several methods are scored on the images they all have (each image's sources read once for all).

    --video: how steady a fused video is from frame to frame, against its sources (see `swinfuse video`).
    """
    if video:
        return _evaluate_video(paths or [], method, ir_dir, vis_dir, output_format, json_out, start, ir_offset)
    if output_format not in FORMATS:
        raise typer.BadParameter(f"{output_format!r} is not one of {', '.join(FORMATS)}", param_hint="'--format'")
    if convention not in api.conventions():
        raise typer.BadParameter(f"{convention!r} is not one of {', '.join(api.conventions())}",
                                 param_hint="'--convention'")
    if json_out:
        if output_format not in ("table", "json"):
            raise typer.BadParameter("--json is --format json; give one of them", param_hint="'--json'")
        output_format = "json"
    paths = list(paths or [])
    methods = [_parse_method(m) for m in method or []]
    sources = None
    if ir_dir is None and vis_dir is None:
        if not paths:
            raise typer.BadParameter("give SOURCES (or --ir-dir and --vis-dir)", param_hint="'SOURCES'")
        sources = paths.pop()
        if not paths and not methods:
            raise typer.BadParameter("give FUSED SOURCES, or SOURCES with --method NAME=FOLDER",
                                     param_hint="'FUSED'")
    elif not paths and not methods:
        raise typer.BadParameter("give a FUSED image or folder, or --method NAME=FOLDER", param_hint="'FUSED'")
    methods = [(p.name or str(p), p) for p in paths] + methods

    # The bar starts with the first finished image, so input errors are the only thing on stderr.
    with render.progress_bar("evaluating", transient=True) as update:
        report = api.evaluate(methods=methods, sources=sources, ir_dir=ir_dir, vis_dir=vis_dir,
                              convention=convention, all_images=all_images, rank=rank, workers=workers, csv=csv,
                              on_done=update)
    render.show_evaluation(report, output_format, csv)
    if report.failed:
        raise typer.Exit(code=1)


def _evaluate_video(paths: list[Path], method, ir_dir, vis_dir, output_format: str, json_out: bool, start: int,
                    ir_offset: str | None) -> None:
    """`evaluate --video FUSED [SOURCES]`: flicker and warping error, a table or JSON."""
    if method:
        raise typer.BadParameter("--video scores one fused video; give FUSED and SOURCES", param_hint="'--method'")
    if output_format not in ("table", "json"):
        raise typer.BadParameter("--video prints a table or JSON", param_hint="'--format'")
    expected = 1 if ir_dir is not None or vis_dir is not None else 2
    if len(paths) != expected:
        raise typer.BadParameter("--video takes FUSED and SOURCES (a clip folder), or FUSED with --ir-dir and "
                                 "--vis-dir", param_hint="'FUSED SOURCES'")
    with render.progress_bar("evaluating", transient=True) as update:
        evaluation = api.evaluate_video(fused=paths[0], sources=paths[1] if expected == 2 else None, ir=ir_dir,
                                        vis=vis_dir, start=start, ir_offset=ir_offset, progress=update)
    for note in evaluation.notes:
        render.stderr.print(f"note: {note}")
    render.show_result(evaluation, render.video_evaluation_tables, json_out or output_format == "json")


def register(app: typer.Typer) -> None:
    app.command()(evaluate)
