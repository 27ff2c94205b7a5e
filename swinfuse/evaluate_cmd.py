"""`swinfuse evaluate FUSED SOURCES`: the field's fusion metrics per image and their mean.

The numbers follow the CDDFuse evaluator (Zhaozixiang1228/MMIF-CDDFuse, utils/Evaluator.py); the
metrics themselves live in `swinfuse.metrics`. numpy and cv2 are imported inside the functions, so
registering the command keeps `swinfuse --help` instant.

    swinfuse evaluate runs/fused ../data/roadscene              # sources laid out as ir/ + vis/
    swinfuse evaluate out.png --ir-dir IR --vis-dir VIS --json
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

CONVENTIONS = ("Images are read as the CDDFuse evaluator reads them (cv2, BGR->gray, rounded) and scored as "
               "gray float values on 0..255. MI, VIF and SSIM are summed over the two sources (infrared and "
               "visible), so SSIM of a perfect copy of both is 2. EN in bits, MI in nats (sklearn), SSIM as "
               "scikit-image 0.19 computes it for float images (data_range 2, 7x7 window), Qabf with "
               "CDDFuse's Sobel and constants, Nabf as Kumar's modified fusion-artifacts measure.")


@dataclass
class EvaluateReport:
    fused: Path
    ir_dir: Path
    vis_dir: Path
    metrics: list[str]
    images: list[dict]  # {'name', 'EN', ..., 'Nabf'} per matched image, sorted by name
    mean: dict[str, float]
    unmatched: list[str] = field(default_factory=list)  # fused images without an ir/vis pair of that stem
    missing: list[str] = field(default_factory=list)  # source pairs without a fused image (folder input)
    failed: list[dict] = field(default_factory=list)  # {'name', 'error'}: unreadable, size mismatch, ...
    conventions: str = CONVENTIONS


def _fused_images(fused: Path) -> dict[str, Path]:
    from swinfuse.errors import InputError
    from swinfuse.metrics import IMAGE_EXTENSIONS

    if not fused.exists():
        raise InputError(f"{fused}: no such file or folder")
    if fused.is_file():
        return {fused.stem: fused}
    images = {p.stem: p for p in sorted(fused.iterdir())
              if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")}
    if not images:
        raise InputError(f"{fused}: no images found (looked for {', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    return images


def _write_csv(path: Path, report: EvaluateReport) -> None:
    """Per-image rows, then a 'mean' row; written atomically, so never half a file."""
    import csv
    import io

    from swinfuse.data.io import write_bytes_atomic

    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["image", *report.metrics])
    for row in [*report.images, {"name": "mean", **report.mean}]:
        writer.writerow([row["name"], *(f"{row[m]:.6f}" for m in report.metrics)])
    write_bytes_atomic(path, text.getvalue().encode())


def evaluate_images(*, fused: str | Path, sources: str | Path | None = None, ir_dir: str | Path | None = None,
                    vis_dir: str | Path | None = None, workers: int = 0, csv: str | Path | None = None,
                    on_done: Callable[[int, int, dict], None] | None = None) -> EvaluateReport:
    """Score a fused image, or a folder of them, against the source pairs of the same file stem.

    sources is a folder in one of the pair layouts (ir/+vis/, ir/+vi/, Infrared/+Visible/, IR/+VI_Y/, any
    case); or give ir_dir and vis_dir. workers: metric processes (0: one per CPU, 1: this process).
    on_done(done, total, record) follows progress. Raises InputError when nothing can be scored.
    """
    from swinfuse.data.pairs import find_pairs
    from swinfuse.errors import InputError
    from swinfuse.metrics import METRIC_NAMES, evaluate_triples, mean_record

    fused = Path(fused)
    images = _fused_images(fused)
    pair_set = find_pairs(sources, ir_dir=ir_dir, vis_dir=vis_dir)
    pairs = {pair.stem: pair for pair in pair_set.pairs}
    names = sorted(images.keys() & pairs.keys())
    if not names:
        where = sources if sources is not None else f"{pair_set.ir_dir} and {pair_set.vis_dir}"
        raise InputError(f"{fused}: no fused image has the name of a source pair in {where}")
    jobs = [(n, images[n], pairs[n].ir, pairs[n].vis) for n in names]

    done = 0

    def count(record: dict) -> None:
        nonlocal done
        done += 1
        if on_done:
            on_done(done, len(jobs), record)

    records = evaluate_triples(jobs, workers=workers, on_done=count)
    good = [r for r in records if "error" not in r]
    failed = [r for r in records if "error" in r]
    if not good:  # one image, or every image, unusable: say why in one line
        more = f" (and {len(failed) - 1} more failed)" if len(failed) > 1 else ""
        raise InputError(f"{failed[0]['name']}: {failed[0]['error']}{more}")
    report = EvaluateReport(
        fused=fused, ir_dir=pair_set.ir_dir, vis_dir=pair_set.vis_dir, metrics=list(METRIC_NAMES),
        images=good, mean=mean_record(good), unmatched=sorted(images.keys() - pairs.keys()),
        missing=sorted(pairs.keys() - images.keys()) if fused.is_dir() else [], failed=failed)
    if csv is not None:
        _write_csv(Path(csv), report)
    return report


def _json_ready(value):
    """NaN (Qabf of an image pair without edges) is not JSON: it becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def _tables(report: EvaluateReport):
    """The per-image table, split into column groups where the console is too narrow for all ten metrics."""
    from swinfuse.render import wide_tables

    def values(record: dict) -> list[str]:
        return [f"{record[m]:.4f}" for m in report.metrics]

    return wide_tables(f"swinfuse evaluate: {report.fused}", "image", list(report.metrics),
                       [(row["name"], values(row)) for row in report.images],
                       footer=[(f"mean ({len(report.images)})", values(report.mean))])


def evaluate_command(
    fused: Annotated[Path, typer.Argument(help="A fused image, or a folder of fused images named like the sources.")],
    sources: Annotated[Optional[Path], typer.Argument(
        help="Folder of source pairs: ir/+vis/, ir/+vi/, Infrared/+Visible/ or IR/+VI_Y/ (any case). "
             "Not needed with --ir-dir and --vis-dir.")] = None,
    ir_dir: Annotated[Optional[Path], typer.Option(help="Infrared source folder (instead of SOURCES).")] = None,
    vis_dir: Annotated[Optional[Path], typer.Option(help="Visible source folder (instead of SOURCES).")] = None,
    workers: Annotated[int, typer.Option(help="Processes computing metrics (0: one per CPU; 1: no pool).")] = 0,
    csv: Annotated[Optional[Path], typer.Option(help="Also write per-image rows and the mean to this CSV file.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout (nothing else there).")] = False,
) -> None:
    """Score fused images with the field's metrics: EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM (higher is
    better) and Nabf (lower is better), per image and their mean.

    Conventions of the CDDFuse evaluator (Zhaozixiang1228/MMIF-CDDFuse, utils/Evaluator.py): images are gray
    float values on a 0..255 scale, read with cv2 (BGR to gray, rounded); MI, VIF and SSIM are summed over
    the two sources (infrared and visible), so an SSIM near 2 is a perfect copy of both. EN in bits, MI in
    nats; SSIM as scikit-image 0.19 computes it for float images (data_range 2, 7x7 window); Qabf with
    CDDFuse's Sobel and constants; Nabf as Kumar's modified fusion-artifacts measure. Fused images are
    matched to source pairs by file name stem; unmatched names are listed.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rich.markup import escape

    from swinfuse import render
    from swinfuse.errors import SwinfuseError

    # The bar starts with the first finished image, so input errors are the only thing on stderr.
    bar = Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=render.stderr, transient=True)
    task = bar.add_task("evaluate", total=None)

    def progress(done: int, total: int, _record: dict) -> None:
        if done == 1:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        report = evaluate_images(fused=fused, sources=sources, ir_dir=ir_dir, vis_dir=vis_dir, workers=workers,
                                 csv=csv, on_done=progress)
    except SwinfuseError as exc:  # the main CLI does the same; kept here so the command stands alone too
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    finally:
        if bar.live.is_started:
            bar.stop()

    if json_out:
        import json

        from dataclasses import asdict

        print(json.dumps(_json_ready({k: str(v) if isinstance(v, Path) else v for k, v in asdict(report).items()}),
                         indent=2))
    else:
        for table in _tables(report):
            render.stdout.print(table)
    for kind, names in (("fused images without a source pair", report.unmatched),
                        ("source pairs without a fused image", report.missing)):
        if names:
            shown = escape(", ".join(names[:10]))
            render.stderr.print(f"{len(names)} {kind}: {shown}{' ...' if len(names) > 10 else ''}")
    for record in report.failed:
        render.stderr.print(f"[red]failed[/red] {escape(record['name'])}: {escape(record['error'])}")
    if csv is not None:
        render.stderr.print(f"wrote {escape(str(csv))}")
    if report.failed:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add `evaluate` to a Typer app (the main CLI calls this)."""
    app.command("evaluate")(evaluate_command)
