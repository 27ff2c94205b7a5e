"""The field's fusion metrics, computed as the CDDFuse evaluator computes them.

Reference: `utils/Evaluator.py` and `test_IVF.py` of Zhaozixiang1228/MMIF-CDDFuse (the most used Python
evaluator; scikit-image 0.19 and scikit-learn as pinned in its requirements). This is our own vectorised
numpy/scipy implementation of the same numbers (`benchmarks/compare_evaluator.py` checks them to 1e-3):

- images are gray float32 values on 0..255: read with cv2 (3 channels), BGR->gray, rounded;
- EN: Shannon entropy in bits of the 256-level histogram; SD: population standard deviation;
  SF: sqrt(mean row diff^2 + mean column diff^2); AG: mean of sqrt((gx^2 + gy^2) / 2) with np.gradient's
  differences (central inside, one-sided at the borders);
- MI: mutual information in nats (sklearn's mutual_info_score over the distinct gray values),
  summed over the two sources; SCD: sum of the correlations of differences;
- VIF: pixel-domain VIF (four scales, MATLAB-style Gaussian windows, sigma_n^2 = 2), summed over the sources;
- Qabf: Xydeas-Petrovic edge preservation with CDDFuse's Sobel convolution (zero padding) and constants,
  including its quirk that G = gF where gA == gF;
- SSIM: scikit-image 0.19 `structural_similarity` on float32 images with no data_range, which means
  data_range = 2 (the float dtype range -1..1), a 7x7 uniform window and sample covariance; summed over
  the two sources;
- Nabf: not in the CDDFuse evaluator; B. K. Shreyamsha Kumar's modified fusion-artifacts measure as in his
  MATLAB `objective_fusion_perform_fn.m` (the NABF output), on the same 0..255 scale.

Those are the `cddfuse` convention, the default. CONVENTIONS holds the others: evaluators disagree on MI's
unit (nats or bits), on summing or averaging MI, VIF and SSIM over the two sources, and on SSIM's data range.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
from scipy import ndimage

from swinfuse.errors import InputError

METRIC_NAMES = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "Nabf")

# Direction of each metric: +1 higher is better, -1 lower is better (Nabf counts artifacts).
DIRECTIONS = {name: (-1 if name == "Nabf" else 1) for name in METRIC_NAMES}


@dataclass(frozen=True)
class Convention:
    """How an evaluator reports the metrics that depend on a convention; every other metric is the same.

    mi_unit: 'nats' (natural log, sklearn's mutual_info_score) or 'bits' (log2).
    combine: 'sum' or 'mean' of MI, VIF and SSIM over the two sources (infrared, visible).
    ssim_data_range: L in SSIM's C1 = (0.01 L)^2, C2 = (0.03 L)^2; 2 is scikit-image 0.19's implicit range
    for float images (-1..1), 255 the range of the 0..255 values actually scored.
    """

    name: str
    mi_unit: str
    combine: str
    ssim_data_range: float
    description: str


CONVENTIONS = {c.name: c for c in (
    Convention("cddfuse", "nats", "sum", 2.0,  # the text `evaluate --json` has always carried
               "Images are read as the CDDFuse evaluator reads them (cv2, BGR->gray, rounded) and scored as "
               "gray float values on 0..255. MI, VIF and SSIM are summed over the two sources (infrared and "
               "visible), so SSIM of a perfect copy of both is 2. EN in bits, MI in nats (sklearn), SSIM as "
               "scikit-image 0.19 computes it for float images (data_range 2, 7x7 window), Qabf with "
               "CDDFuse's Sobel and constants, Nabf as Kumar's modified fusion-artifacts measure."),
    Convention("cddfuse-255", "nats", "sum", 255.0,
               "As cddfuse, but SSIM with data_range=255, the range of the 0..255 values scored: what the same "
               "evaluator gives when data_range=255 is passed, as newer scikit-image requires for float images. "
               "Only SSIM changes (slightly, in flat regions)."),
    Convention("mean-bits", "bits", "mean", 255.0,
               "Descriptive, not one evaluator's: MI in bits (log2, as Tang's MATLAB Evaluation-for-Image-Fusion "
               "computes it), MI, VIF and SSIM the mean of the two sources (half the cddfuse sums; SSIM of a "
               "perfect copy is 1), SSIM with data range 255."),
)}
DEFAULT_CONVENTION = "cddfuse"


def get_convention(convention: "str | Convention | None") -> Convention:
    """A Convention from its name (None: the default); InputError naming the known ones otherwise."""
    if isinstance(convention, Convention):
        return convention
    name = convention or DEFAULT_CONVENTION
    if name not in CONVENTIONS:
        raise InputError(f"unknown convention {name!r}; choose one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


# VIF's four-scale pyramid: 17-tap window at scale 1, then filter-and-halve with 9, 5, 3 taps. The last
# scale still has a window to fill only when each side is at least 41 px (the reference crashes below).
MIN_SIDE = 41


# ---------------------------------------------------------------- reading and conversion


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


# ---------------------------------------------------------------- metrics of the fused image alone


def entropy(img: np.ndarray) -> float:
    """EN: entropy in bits of the histogram of the rounded gray levels 0..255."""
    levels = np.clip(np.round(img), 0, 255).astype(np.uint8).ravel()
    p = np.bincount(levels, minlength=256) / levels.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def std_dev(img: np.ndarray) -> float:
    """SD: population standard deviation of the gray values."""
    return float(np.std(img, dtype=np.float64))


def spatial_frequency(img: np.ndarray) -> float:
    """SF: sqrt(mean squared horizontal difference + mean squared vertical difference)."""
    x = img.astype(np.float64)
    return float(np.sqrt(np.mean(np.diff(x, axis=1) ** 2) + np.mean(np.diff(x, axis=0) ** 2)))


def average_gradient(img: np.ndarray) -> float:
    """AG: mean of sqrt((gx^2 + gy^2) / 2); np.gradient matches the evaluator's central/one-sided differences."""
    gy, gx = np.gradient(img.astype(np.float64))
    return float(np.mean(np.sqrt((gx ** 2 + gy ** 2) / 2)))


# ---------------------------------------------------------------- metrics against one source


def mutual_information(a: np.ndarray, b: np.ndarray, *, bits: bool = False) -> float:
    """Mutual information between the distinct values of a and b: in nats (sklearn's mutual_info_score), or
    in bits (the same divided by ln 2)."""
    _, ia = np.unique(a.ravel(), return_inverse=True)
    _, ib = np.unique(b.ravel(), return_inverse=True)
    ia, ib = ia.ravel().astype(np.int64), ib.ravel().astype(np.int64)
    na, nb = int(ia.max()) + 1, int(ib.max()) + 1
    if na == 1 or nb == 1:  # a constant image shares no information (sklearn returns 0 too)
        return 0.0
    # Sparse joint histogram: only occupied cells, so float images with many values stay cheap.
    cells, joint = np.unique(ia * nb + ib, return_counts=True)
    n = ia.size
    pa = np.bincount(ia, minlength=na)[cells // nb] / n
    pb = np.bincount(ib, minlength=nb)[cells % nb] / n
    pab = joint / n
    nats = float(max((pab * (np.log(pab) - np.log(pa) - np.log(pb))).sum(), 0.0))
    return nats / math.log(2) if bits else nats


def _gauss_1d(n: int) -> np.ndarray:
    """1-D factor of the evaluator's MATLAB-style n x n Gaussian window (sd = n / 5), normalised.

    The 2-D window exp(-(x^2+y^2)/2sd^2) is the outer product of this with itself; its tiny-value cut-off
    (below eps * max) never triggers for these sizes, so the separable form is the same window.
    """
    x = np.arange(n) - (n - 1) / 2
    g = np.exp(-(x * x) / (2 * (n / 5.0) ** 2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(H, W) -> (H-n+1, W-n+1): separable 'valid' filtering with the symmetric 1-D window g (n taps)."""
    r = len(g) // 2
    out = ndimage.correlate1d(img, g, axis=0, mode="constant")[r:img.shape[0] - r]
    return ndimage.correlate1d(out, g, axis=1, mode="constant")[:, r:img.shape[1] - r]


def vif(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel-domain VIF of `dist` against `ref` (the evaluator's compare_viff): four scales, sigma_n^2 = 2."""
    sigma_nsq, eps = 2.0, 1e-10
    ref, dist = ref.astype(np.float64), dist.astype(np.float64)
    num = den = 0.0
    for scale in range(1, 5):
        g = _gauss_1d(2 ** (5 - scale) + 1)  # 17, 9, 5, 3 taps
        if scale > 1:  # low-pass with this scale's window, then keep every second pixel
            ref, dist = _filter_valid(ref, g)[::2, ::2], _filter_valid(dist, g)[::2, ::2]
        mu1, mu2 = _filter_valid(ref, g), _filter_valid(dist, g)
        s1 = np.maximum(_filter_valid(ref * ref, g) - mu1 * mu1, 0)
        s2 = np.maximum(_filter_valid(dist * dist, g) - mu2 * mu2, 0)
        s12 = _filter_valid(ref * dist, g) - mu1 * mu2
        # The reference's masked assignments, in its order: flat reference, flat distorted, negative gain.
        gain = s12 / (s1 + eps)
        sv = s2 - gain * s12
        flat1, flat2 = s1 < eps, s2 < eps
        gain = np.where(flat1 | flat2, 0.0, gain)
        sv = np.where(flat2, 0.0, np.where(flat1, s2, sv))
        s1 = np.where(flat1, 0.0, s1)
        sv = np.where(gain < 0, s2, sv)
        gain = np.maximum(gain, 0.0)
        sv = np.maximum(sv, eps)
        num += np.log10(1 + gain * gain * s1 / (sv + sigma_nsq)).sum()
        den += np.log10(1 + s1 / sigma_nsq).sum()
    if den == 0:  # 0/0 for a flat reference: the evaluator turns its NaN into 1
        return 1.0 if num == 0 else math.inf
    return float(num / den)


def ssim(a: np.ndarray, b: np.ndarray, *, data_range: float = 2.0) -> float:
    """SSIM as skimage 0.19's structural_similarity(a, b, data_range=data_range) on float32 images.

    With no data_range its float default range is -1..1, so data_range = 2 (the default here) and C1, C2 are
    tiny next to 0..255 values. The arithmetic stays in float32, as there: in flat regions the result depends
    on float32 rounding.
    """
    a, b = a.astype(np.float32), b.astype(np.float32)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    cov_norm = 49 / 48  # sample covariance over the 7x7 window

    def mean7(x):
        return ndimage.uniform_filter(x, size=7)  # mode 'reflect', as skimage

    ux, uy = mean7(a), mean7(b)
    vx = cov_norm * (mean7(a * a) - ux * ux)
    vy = cov_norm * (mean7(b * b) - uy * uy)
    vxy = cov_norm * (mean7(a * b) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return float(s[3:-3, 3:-3].mean(dtype=np.float64))  # borders cropped by the window radius


# ---------------------------------------------------------------- metrics against both sources


def scd(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SCD: corr(F - B, A) + corr(F - A, B)."""
    f, a, b = (x.astype(np.float64) for x in (f, a, b))

    def corr(x, y):
        x, y = x - x.mean(), y - y.mean()
        with np.errstate(divide="ignore", invalid="ignore"):  # F == B makes F - B flat: NaN, as the reference
            return (x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum())

    return float(corr(a, f - b) + corr(b, f - a))


_SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)


def _qabf_edges(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge strength and angle as the evaluator's Qabf_getArray: true convolution, zero padding."""
    sx = ndimage.convolve(img, _SOBEL_X, mode="constant")
    sy = ndimage.convolve(img, _SOBEL_Y, mode="constant")
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(sx == 0, np.pi / 2, np.arctan(sy / sx))
    return np.sqrt(sx * sx + sy * sy), angle


def _qabf_preservation(g_src, a_src, g_f, a_f) -> np.ndarray:
    """Per-pixel edge preservation Q^{SF} with the evaluator's constants."""
    with np.errstate(divide="ignore", invalid="ignore"):
        # Where the strengths are equal the reference keeps gF itself, not 1: kept for equal numbers.
        ratio = np.where(g_src > g_f, g_f / g_src, np.where(g_src < g_f, g_src / g_f, g_f))
    ang = 1 - np.abs(a_src - a_f) / (np.pi / 2)
    q_g = 0.9994 / (1 + np.exp(-15 * (ratio - 0.5)))
    q_a = 0.9879 / (1 + np.exp(-22 * (ang - 0.8)))
    return q_g * q_a


def qabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Qabf: edge preservation from A and B into F, weighted by the source edge strengths."""
    (ga, aa), (gb, ab), (gf, af) = (_qabf_edges(x.astype(np.float64)) for x in (a, b, f))
    q = _qabf_preservation(ga, aa, gf, af) * ga + _qabf_preservation(gb, ab, gf, af) * gb
    den = (ga + gb).sum()
    return float(q.sum() / den) if den else math.nan  # no edge in either source: undefined


def _kumar_sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kumar's sobel_fn: /8-scaled Sobel correlation over a mirror extension (edge pixel not repeated).

    Returns strength and angle; the angle is 0 where both components vanish, else atan(gv / gh).
    """
    x = np.pad(img, 1, mode="reflect")
    gv = ndimage.correlate(x, _SOBEL_X / 8, mode="constant")[1:-1, 1:-1]
    gh = ndimage.correlate(x, -_SOBEL_Y / 8, mode="constant")[1:-1, 1:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where((gv == 0) & (gh == 0), 0.0, np.arctan(gv / gh))  # gh == 0 -> +-pi/2
    return np.sqrt(gh * gh + gv * gv), angle


def nabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Nabf: Kumar's modified fusion artifacts, the share of weighted edge loss at pixels where F's edge
    is stronger than both sources' (0 = no artifacts)."""
    (ga, aa), (gb, ab), (gf, af) = (_kumar_sobel(x.astype(np.float64)) for x in (a, b, f))

    def preservation(g, ang):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where((g == 0) | (gf == 0), 0.0, np.minimum(g, gf) / np.maximum(g, gf))
        orient = np.abs(np.abs(ang - af) - np.pi / 2) * 2 / np.pi
        q_g = 0.9999 / (1 + np.exp(-19 * (ratio - 0.5)))
        q_a = 0.9995 / (1 + np.exp(-22 * (orient - 0.5)))
        return np.sqrt(q_g * q_a)

    wa = np.where(ga >= 2, ga ** 1.5, 0.001)  # Td = 2, Lg = 1.5, wt_min = 0.001
    wb = np.where(gb >= 2, gb ** 1.5, 0.001)
    artifact = (gf > ga) & (gf > gb)
    loss = (1 - preservation(ga, aa)) * wa + (1 - preservation(gb, ab)) * wb
    return float((loss * artifact).sum() / (wa + wb).sum())


# ---------------------------------------------------------------- all metrics, one image or a folder


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

