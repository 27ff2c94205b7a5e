"""All the metrics of one fused image (compute_metrics), read from files as the CDDFuse evaluator reads them
(read_gray), and of many images or methods, in worker processes (evaluate_images, evaluate_triples,
evaluate_folder), with their mean (mean_record)."""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from swinfuse.errors import InputError
from swinfuse.metrics.conventions import METRIC_NAMES, Convention, get_convention
from swinfuse.metrics.gradient import average_gradient, nabf, qabf, spatial_frequency
from swinfuse.metrics.information import entropy, mutual_information, std_dev
from swinfuse.metrics.structure import MIN_SIDE, scd, ssim, vif


def read_gray(path: str | Path) -> np.ndarray:
    """Read an image as the evaluator's `image_read_cv2(path, 'GRAY')` does: (H, W) float32 on 0..255.

    cv2.imread's default flag gives 3 channels of 8 bits (16-bit files are scaled down by cv2 itself);
    BGR->gray is computed in float32 and rounded.
    """
    image = cv2.imread(str(path))
    if image is None:
        raise InputError(f"{path}: cannot read this image")
    return np.round(cv2.cvtColor(image.astype(np.float32), cv2.COLOR_BGR2GRAY))


def _as_gray(image: np.ndarray, name: str) -> np.ndarray:
    """(H, W) or (H, W, 1|3 BGR) array on 0..255 -> (H, W) float32, converted as `read_gray` does."""
    image = np.asarray(image)
    if image.dtype == np.uint16:
        raise InputError(f"{name} is a 16-bit array: scale it to 0..255 first (read_gray does that for files)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return np.round(cv2.cvtColor(image.astype(np.float32), cv2.COLOR_BGR2GRAY))
    if image.ndim != 2:
        raise InputError(f"{name} has shape {image.shape}; expected a gray (H, W) or BGR (H, W, 3) image")
    return image.astype(np.float32)


def compute_metrics(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray,
                    convention: str | Convention | None = None) -> dict[str, float]:
    """All METRIC_NAMES for one fused image and its sources; MI, VIF and SSIM are summed over ir and vis
    (or averaged, and MI in bits, as the convention says; default: cddfuse).

    Arrays are (H, W) gray (or (H, W, 3) BGR) on 0..255 of any dtype but uint16; they become float32
    gray as the evaluator's reader makes them. Sizes must match and each side be at least MIN_SIDE.
    """
    conv = get_convention(convention)
    f, a, b = _as_gray(fused, "fused"), _as_gray(ir, "infrared"), _as_gray(vis, "visible")
    for name, x in (("infrared", a), ("visible", b)):
        if x.shape != f.shape:
            raise InputError(f"fused image is {f.shape[0]}×{f.shape[1]} but {name} is {x.shape[0]}×{x.shape[1]} "
                             "(H×W); they must match")
    if min(f.shape) < MIN_SIDE:
        raise InputError(f"image is {f.shape[0]}×{f.shape[1]} (H×W); VIF's four scales need at least "
                         f"{MIN_SIDE}×{MIN_SIDE} pixels")
    both = (lambda x, y: x + y) if conv.combine == "sum" else (lambda x, y: (x + y) / 2)
    bits = conv.mi_unit == "bits"
    return {
        "EN": entropy(f),
        "SD": std_dev(f),
        "SF": spatial_frequency(f),
        "AG": average_gradient(f),
        "MI": both(mutual_information(f, a, bits=bits), mutual_information(f, b, bits=bits)),
        "SCD": scd(f, a, b),
        "VIF": both(vif(a, f), vif(b, f)),
        "Qabf": qabf(f, a, b),
        "SSIM": both(ssim(f, a, data_range=conv.ssim_data_range), ssim(f, b, data_range=conv.ssim_data_range)),
        "Nabf": nabf(f, a, b),
    }


def evaluate_files(name: str, fused: str | Path, ir: str | Path, vis: str | Path,
                   convention: str | Convention | None = None) -> dict:
    """One record {'name': name, 'EN': ..., ...} from three image files (read as the evaluator reads)."""
    return {"name": name, **compute_metrics(read_gray(fused), read_gray(ir), read_gray(vis), convention)}


def _evaluate_image(job: tuple) -> dict:
    """Worker body for one image: (name, ir, vis, ((method, fused), ...), convention name) ->
    {'name', 'records': {method: record}}. The sources are read once for every method; a record that failed
    carries 'error' instead of metrics, so one bad image does not stop the others."""
    name, ir, vis, fused, convention = job
    try:
        a, b = read_gray(ir), read_gray(vis)
    except InputError as exc:
        return {"name": name, "records": {method: {"name": name, "error": str(exc)} for method, _ in fused}}
    records = {}
    for method, path in fused:
        try:
            records[method] = {"name": name, **compute_metrics(read_gray(path), a, b, convention)}
        except InputError as exc:
            records[method] = {"name": name, "error": str(exc)}
    return {"name": name, "records": records}


def evaluate_images(jobs: Sequence[tuple], *, convention: str | Convention | None = None, workers: int = 0,
                    on_done: Callable[[dict], None] | None = None) -> list[dict]:
    """Score many methods on many images: jobs are (name, ir, vis, ((method, fused), ...)); returns
    {'name', 'records': {method: record}} per job, in input order, computed in `workers` processes (0: one
    per CPU, at most one per image; 1: this process). Each image's sources are read once for all methods.
    on_done is called with each result as it arrives."""
    conv = get_convention(convention).name  # a name travels to the workers, and unknown names fail here
    jobs = [(str(n), str(ir), str(vis), tuple((str(m), str(p)) for m, p in fused), conv)
            for n, ir, vis, fused in jobs]
    workers = min(workers or os.cpu_count() or 1, max(len(jobs), 1))
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(_evaluate_image(job))
            if on_done:
                on_done(results[-1])
        return results
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(_evaluate_image, jobs):  # map keeps the input order
            results.append(result)
            if on_done:
                on_done(result)
    return results


def evaluate_triples(jobs: Sequence[tuple[str, str | Path, str | Path, str | Path]], *, workers: int = 0,
                     on_done: Callable[[dict], None] | None = None,
                     convention: str | Convention | None = None) -> list[dict]:
    """Records for (name, fused, ir, vis) file triples, in input order, computed in `workers` processes.

    workers=0 uses one process per CPU (at most one per image); workers=1 stays in this process. A record
    that failed carries 'error' instead of metrics. on_done is called as each record arrives.
    """
    image_jobs = [(name, ir, vis, (("", fused),)) for name, fused, ir, vis in jobs]
    done = (lambda result: on_done(result["records"][""])) if on_done else None
    return [r["records"][""] for r in evaluate_images(image_jobs, convention=convention, workers=workers,
                                                      on_done=done)]


def mean_record(records: Iterable[dict]) -> dict[str, float]:
    """Mean of each metric over the records that have metrics (failed ones are skipped)."""
    good = [r for r in records if "error" not in r]
    return {k: float(np.mean([r[k] for r in good])) if good else math.nan for k in METRIC_NAMES}


def evaluate_folder(fused_dir: str | Path, ir_dir: str | Path, vis_dir: str | Path, *,
                    workers: int = 0) -> tuple[list[dict], dict[str, float]]:
    """(per-image records, mean) for every fused image whose stem has an ir and a vis image of that stem."""
    from swinfuse.data.pairs import index_images

    folders = {"fused": Path(fused_dir), "infrared": Path(ir_dir), "visible": Path(vis_dir)}
    index = {kind: index_images(folder)[0] for kind, folder in folders.items()}
    stems = sorted(index["fused"].keys() & index["infrared"].keys() & index["visible"].keys())
    if not stems:
        raise InputError(f"{folders['fused']}: no image shares its name with an image in both "
                         f"{folders['infrared']} and {folders['visible']}")
    jobs = [(s, index["fused"][s], index["infrared"][s], index["visible"][s]) for s in stems]
    records = evaluate_triples(jobs, workers=workers)
    return records, mean_record(records)
