"""`swinfuse.api.evaluate`: score one or several methods' fused images against the same source pairs.

One method (`swinfuse evaluate FUSED SOURCES`) gives the per-image table and mean it always gave; several
(`swinfuse evaluate SOURCES --method NAME=FOLDER ...`) give one row per method: mean and standard deviation
of every metric, the number of images, the best value of each column, optionally each method's mean rank.
The metrics and conventions live in `swinfuse.metrics`; text forms for papers (Markdown, LaTeX, CSV) are
methods of the report. numpy and cv2 load inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

ARROWS = {1: "↑", -1: "↓"}
LATEX_ARROWS = {1: r"$\uparrow$", -1: r"$\downarrow$"}


@dataclass
class MethodResult:
    """One method: its per-image records (sorted by name), their mean and population standard deviation."""

    name: str
    fused: Path
    images: list[dict]
    mean: dict[str, float]
    std: dict[str, float]
    unmatched: list[str] = field(default_factory=list)  # fused images without an ir/vis pair of that stem
    missing: list[str] = field(default_factory=list)  # source pairs it has no fused image for (see report)
    failed: list[dict] = field(default_factory=list)  # {'name', 'error'}: unreadable, size mismatch, ...
    rank: float | None = None  # mean rank over the metrics (1 = best), with rank=True

    @property
    def count(self) -> int:
        return len(self.images)


@dataclass
class EvaluationReport:
    convention: str
    conventions: str  # the convention in words, with its source
    metrics: list[str]
    directions: dict[str, int]  # +1: higher is better, -1: lower is better
    ir_dir: Path
    vis_dir: Path
    methods: list[MethodResult]
    shared_only: bool  # scored on the images every method has (else each on all of its own)
    best: dict[str, list[str]]  # metric -> the method(s) with the best mean
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(m.failed for m in self.methods)

    # -- machine-readable forms --------------------------------------------------------------------
    def to_dict(self) -> dict:
        """One method: the schema `swinfuse evaluate FUSED SOURCES --json` always had (fused, ir_dir, vis_dir,
        metrics, images, mean, unmatched, missing, failed, conventions), plus convention and std. Several:
        the comparison (convention, metrics, directions, methods with count, mean, std, rank, images)."""
        if len(self.methods) == 1:
            m = self.methods[0]
            return {"fused": m.fused, "ir_dir": self.ir_dir, "vis_dir": self.vis_dir, "metrics": self.metrics,
                    "images": m.images, "mean": m.mean, "unmatched": m.unmatched, "missing": m.missing,
                    "failed": m.failed, "conventions": self.conventions, "convention": self.convention,
                    "std": m.std}
        return {"convention": self.convention, "conventions": self.conventions, "metrics": self.metrics,
                "directions": {k: "higher" if v > 0 else "lower" for k, v in self.directions.items()},
                "ir_dir": self.ir_dir, "vis_dir": self.vis_dir, "shared_only": self.shared_only,
                "best": self.best, "warnings": self.warnings,
                "methods": [{"name": m.name, "fused": m.fused, "count": m.count, "mean": m.mean, "std": m.std,
                             "rank": m.rank, "images": m.images, "unmatched": m.unmatched, "missing": m.missing,
                             "failed": m.failed} for m in self.methods]}

    def to_csv(self) -> str:
        """The comparison: method, images, then mean and std of each metric (and mean_rank when ranked)."""
        import csv
        import io

        ranked = any(m.rank is not None for m in self.methods)
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(["method", "images", *(f"{k}{s}" for k in self.metrics for s in ("", "_std")),
                         *(["mean_rank"] if ranked else [])])
        for m in self.methods:
            writer.writerow([m.name, m.count, *(_num(d[k], 6, "") for k in self.metrics for d in (m.mean, m.std)),
                             *([_num(m.rank, 3, "")] if ranked else [])])
        return text.getvalue()

    def per_image_csv(self) -> str:
        """Per-image rows then a 'mean' row (one method: image, metrics...; several: method, image, ...)."""
        import csv
        import io

        several = len(self.methods) > 1
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow([*(["method"] if several else []), "image", *self.metrics])
        for m in self.methods:
            for row in [*m.images, {"name": "mean", **m.mean}]:
                writer.writerow([*([m.name] if several else []), row["name"],
                                 *(f"{row[k]:.6f}" for k in self.metrics)])
        return text.getvalue()

    # -- the tables papers print -------------------------------------------------------------------
    def _cells(self, bold: Callable[[str], str], pm: str) -> tuple[list[str], list[list[str]]]:
        ranked = any(m.rank is not None for m in self.methods)
        rows = []
        best_rank = min((m.rank for m in self.methods if m.rank is not None), default=None)
        for m in self.methods:
            cells = [m.name, str(m.count)]
            for k in self.metrics:
                mean = _num(m.mean[k], 4)
                if mean == "-":  # undefined (e.g. SCD of a copy of one source): no spread to give
                    cells.append(mean)
                    continue
                cells.append(f"{bold(mean) if m.name in self.best[k] else mean}{pm}{_num(m.std[k], 4)}")
            if ranked:
                r = _num(m.rank, 2)
                cells.append(bold(r) if m.rank is not None and m.rank == best_rank else r)
            rows.append(cells)
        return (["rank"] if ranked else []), rows

    def heading(self, metric: str) -> str:
        """A metric's column heading with the arrow of its better direction: 'EN ↑', 'Nabf ↓'."""
        return f"{metric} {ARROWS[self.directions[metric]]}"

    def caption(self) -> str:
        n = sorted({m.count for m in self.methods})
        images = f"{n[0]} images" if len(n) == 1 else f"{n[0]}-{n[-1]} images"
        return (f"Mean ± standard deviation over {images}; ↑ higher is better, ↓ lower is better; best in bold. "
                f"Convention: {self.convention} ({self.conventions})")

    def to_markdown(self) -> str:
        extra, rows = self._cells(lambda s: f"**{s}**", " ± ")
        head = ["Method", "Images", *(self.heading(k) for k in self.metrics),
                *(["Mean rank ↓"] if extra else [])]
        lines = ["| " + " | ".join(head) + " |", "| :-- | " + " | ".join("--:" for _ in head[1:]) + " |"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines) + "\n\n" + self.caption() + "\n"

    def to_latex(self) -> str:
        extra, rows = self._cells(lambda s: rf"\textbf{{{s}}}", r" $\pm$ ")
        head = ["Method", "Images", *(f"{k} {LATEX_ARROWS[self.directions[k]]}" for k in self.metrics),
                *([r"Mean rank $\downarrow$"] if extra else [])]
        caption = self.caption().replace("±", r"$\pm$").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")
        lines = [f"% swinfuse evaluate: {caption}", rf"\begin{{tabular}}{{lr{'c' * (len(head) - 2)}}}", r"\toprule",
                 " & ".join(head) + r" \\", r"\midrule"]
        lines += [" & ".join([_latex_escape(row[0]), *row[1:]]) + r" \\" for row in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"


def _num(value: float | None, digits: int, undefined: str = "-") -> str:
    return undefined if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _latex_escape(text: str) -> str:
    out = []
    for ch in text:
        out.append({"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}.get(
            ch, "\\" + ch if ch in "&%$#_{}" else ch))
    return "".join(out)


def _fused_images(fused: Path) -> dict[str, Path]:
    from swinfuse.data.pairs import READ_EXTENSIONS, index_images
    from swinfuse.errors import InputError

    if not fused.exists():
        raise InputError(f"{fused}: no such file or folder")
    if fused.is_file():
        return {fused.stem: fused}
    images, _ = index_images(fused)
    if not images:
        raise InputError(f"{fused}: no images found (looked for {', '.join(e[1:] for e in READ_EXTENSIONS)})")
    return images


def _best(methods: list[MethodResult], metrics: Sequence[str], directions: dict[str, int]) -> dict[str, list[str]]:
    best = {}
    for k in metrics:
        values = [(directions[k] * m.mean[k], m.name) for m in methods if math.isfinite(m.mean[k])]
        top = max((v for v, _ in values), default=None)
        best[k] = [name for v, name in values if top is not None and v == top]
    return best


def _mean_ranks(methods: list[MethodResult], metrics: Sequence[str], directions: dict[str, int]) -> None:
    """Each method's mean over the metrics of its rank (1 = best; ties share the average rank; a metric
    a method has no finite mean for is left out of its average)."""
    ranks = {m.name: [] for m in methods}
    for k in metrics:
        scored = [(directions[k] * m.mean[k], m.name) for m in methods if math.isfinite(m.mean[k])]
        for value, name in scored:
            better = sum(v > value for v, _ in scored)
            ties = sum(v == value for v, _ in scored)
            ranks[name].append(better + (ties + 1) / 2)
    for m in methods:
        m.rank = sum(ranks[m.name]) / len(ranks[m.name]) if ranks[m.name] else None


def evaluate(*, methods: Sequence[tuple[str, str | Path]] | dict, sources: str | Path | None = None,
             ir_dir: str | Path | None = None, vis_dir: str | Path | None = None, convention: str | None = None,
             all_images: bool = False, rank: bool = False, workers: int = 0, csv: str | Path | None = None,
             on_done: Callable[[int, int], None] | None = None) -> EvaluationReport:
    """Score each method's fused images (a file or a folder, matched to the source pairs by file stem).

    methods: (name, fused) pairs or {name: fused}. sources: a folder in one of the pair layouts (ir/+vis/,
    ir/+vi/, Infrared/+Visible/, IR/+VI_Y/, any case), or give ir_dir and vis_dir. convention: a name of
    swinfuse.metrics.CONVENTIONS (default cddfuse). With several methods they are scored on the images all
    of them have (a warning names what each lacks) unless all_images. rank adds each method's mean rank.
    workers: metric processes (0: one per CPU, 1: this process); each image's sources are read once for all
    methods. csv: also write the per-image rows there. on_done(done, total) follows progress.
    Raises InputError when nothing can be scored.
    """
    import numpy as np

    from swinfuse.data.io import write_bytes_atomic
    from swinfuse.data.pairs import find_pairs
    from swinfuse.errors import InputError
    from swinfuse import metrics as M

    conv = M.get_convention(convention)
    methods = list(methods.items()) if isinstance(methods, dict) else [(str(n), f) for n, f in methods]
    if not methods:
        raise InputError("no method to score: give a fused folder or --method NAME=FOLDER")
    names = [n for n, _ in methods]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"two methods are named {dup[0]!r}; name them with --method NAME=FOLDER")
    images = {name: _fused_images(Path(fused)) for name, fused in methods}
    pair_set = find_pairs(sources, ir_dir=ir_dir, vis_dir=vis_dir)
    pairs = {pair.stem: pair for pair in pair_set.pairs}
    where = sources if sources is not None else f"{pair_set.ir_dir} and {pair_set.vis_dir}"
    matched = {name: images[name].keys() & pairs.keys() for name, _ in methods}
    for name, fused in methods:
        if not matched[name]:
            raise InputError(f"{fused}: no fused image has the name of a source pair in {where}")
    union = set().union(*matched.values())
    shared = set.intersection(*map(set, matched.values()))
    several = len(methods) > 1
    warnings = []
    if several:
        for name, _ in methods:
            lacking = sorted(union - matched[name])
            if lacking:
                shown = ", ".join(lacking[:10]) + (" ..." if len(lacking) > 10 else "")
                warnings.append(f"{name} lacks {len(lacking)} of the {len(union)} images: {shown}")
        if warnings and not all_images:
            if not shared:
                raise InputError("the methods have no image in common; use --all-images to score each on its own")
            warnings.append(f"scored on the {len(shared)} images all methods share (--all-images: each on all "
                            "of its own)")
    scored = sorted(union if (all_images or not several) else shared)
    jobs = [(s, pairs[s].ir, pairs[s].vis, tuple((n, images[n][s]) for n, _ in methods if s in matched[n]))
            for s in scored]

    done = 0

    def count(_result: dict) -> None:
        nonlocal done
        done += 1
        if on_done:
            on_done(done, len(jobs))

    results = M.evaluate_images(jobs, convention=conv, workers=workers, on_done=count)
    per_method = []
    for name, fused in methods:
        records = [r["records"][name] for r in results if name in r["records"]]
        good = [r for r in records if "error" not in r]
        failed = [r for r in records if "error" in r]
        if not good:  # one image, or every image, unusable: say why in one line
            more = f" (and {len(failed) - 1} more failed)" if len(failed) > 1 else ""
            raise InputError(f"{failed[0]['name']}: {failed[0]['error']}{more}")
        std = {k: float(np.std([r[k] for r in good])) for k in M.METRIC_NAMES}
        fused = Path(fused)
        missing = sorted((union if several else pairs.keys()) - matched[name]) if fused.is_dir() else []
        per_method.append(MethodResult(name=name, fused=fused, images=good, mean=M.mean_record(good), std=std,
                                       unmatched=sorted(images[name].keys() - pairs.keys()), missing=missing,
                                       failed=failed))
    if rank:
        _mean_ranks(per_method, M.METRIC_NAMES, M.DIRECTIONS)
    report = EvaluationReport(convention=conv.name, conventions=conv.description, metrics=list(M.METRIC_NAMES),
                              directions=dict(M.DIRECTIONS), ir_dir=pair_set.ir_dir, vis_dir=pair_set.vis_dir,
                              methods=per_method, shared_only=several and not all_images,
                              best=_best(per_method, M.METRIC_NAMES, M.DIRECTIONS), warnings=warnings)
    if csv is not None:
        write_bytes_atomic(Path(csv), report.per_image_csv().encode())
    return report
