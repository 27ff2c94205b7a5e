"""Check swinfuse.metrics against the evaluators its conventions follow (a script, not a test).

    git --git-dir=<mirror of Zhaozixiang1228/MMIF-CDDFuse> archive HEAD utils test_img | tar -x -C /tmp/cddfuse
    python tools/compare_evaluator.py --cddfuse /tmp/cddfuse [--extra-pairs ../shared/data/roadscene]
        [--convention cddfuse|cddfuse-255|mean-bits|all] [--per-set N (0: every pair)]

Their `utils/Evaluator.py` is imported at run time from that path (their code never enters this repo); it
needs scikit-image and scikit-learn. Run it with the versions CDDFuse pins, or close ones: scikit-image
0.19 (newer releases refuse SSIM of float images without data_range, which is the very convention the
numbers depend on) and a numpy < 2 that goes with it, e.g. a separate venv with scikit-image==0.19.3,
"numpy<2", scikit-learn, scipy and opencv-python-headless (this repo is put on sys.path; swinfuse.metrics
needs nothing more). For the fused images the three baselines of `baselines.py` are run on pairs from their
`test_img/` (TNO, RoadScene) and from --extra-pairs; the fused images are written as 8-bit PNG and read back
by both sides, as test_IVF.py does.

What each convention is checked against (the reference is computed once per image):
- cddfuse: their Evaluator as it is.
- cddfuse-255: their Evaluator, with the one name their module calls for SSIM (`ssim`, scikit-image's
  structural_similarity, called without data_range) rebound for that call to the same scikit-image function
  with data_range=255 (`functools.partial`); nothing else of theirs is touched.
- mean-bits: no published evaluator matches it as a whole (the ones we read sum MI, or compute SSIM with
  MATLAB's Gaussian window), so each ingredient is checked against the code that defines it: MI against
  their Evaluator.MI (sklearn's mutual_info_score in nats, summed over the two sources) divided by 2 ln 2,
  i.e. the mean of the per-source values converted to bits; VIF against half of their Evaluator.VIFF (the
  mean of their compare_viff over the two sources); SSIM against half of the cddfuse-255 SSIM above; every
  other metric against the cddfuse reference, which no convention changes.

Nabf is not in their evaluator; it is checked against a literal transcription of B. K. Shreyamsha Kumar's
MATLAB `objective_fusion_perform_fn.m` below (element-wise, loop-free only where MATLAB's loops are).
Prints the max absolute difference per convention and metric; the goal is every one below 1e-3.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from baselines import BASELINES, _read_y  # noqa: E402
from swinfuse import metrics  # noqa: E402
from swinfuse.data.pairs import find_pairs  # noqa: E402


def load_evaluator(cddfuse: Path):
    spec = importlib.util.spec_from_file_location("cddfuse_evaluator", cddfuse / "utils" / "Evaluator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kumar_nabf_reference(f, a, b):
    """Kumar's MATLAB NABF, statement by statement (per_extn_im_fn + sobel_fn + the NABF loop)."""

    def per_extn(x):  # wsize 3: row/column 2 (MATLAB 1-based) mirrored outwards, corners included
        p, q = x.shape
        out = np.zeros((p + 2, q + 2))
        out[1:p + 1, 1:q + 1] = x
        out[0, :] = out[2, :]
        out[p + 1, :] = out[p - 1, :]
        out[:, 0] = out[:, 2]
        out[:, q + 1] = out[:, q - 1]
        return out

    def sobel_fn(x):
        vtemp = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
        htemp = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]) / 8
        ext = per_extn(x)
        p, q = x.shape
        gv, gh = np.zeros((p, q)), np.zeros((p, q))
        for di in range(3):  # sum(sum(window .* template)) for every pixel at once
            for dj in range(3):
                gv += ext[di:di + p, dj:dj + q] * vtemp[di, dj]
                gh += ext[di:di + p, dj:dj + q] * htemp[di, dj]
        return gv, gh

    f, a, b = (np.asarray(x, np.float64) for x in (f, a, b))
    gvA, ghA = sobel_fn(a); gA = np.sqrt(ghA ** 2 + gvA ** 2)
    gvB, ghB = sobel_fn(b); gB = np.sqrt(ghB ** 2 + gvB ** 2)
    gvF, ghF = sobel_fn(f); gF = np.sqrt(ghF ** 2 + gvF ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        gAF = np.where((gA == 0) | (gF == 0), 0, np.where(gA > gF, gF / gA, gA / gF))
        gBF = np.where((gB == 0) | (gF == 0), 0, np.where(gB > gF, gF / gB, gB / gF))
        aA = np.where((gvA == 0) & (ghA == 0), 0, np.arctan(gvA / ghA))
        aB = np.where((gvB == 0) & (ghB == 0), 0, np.arctan(gvB / ghB))
        aF = np.where((gvF == 0) & (ghF == 0), 0, np.arctan(gvF / ghF))
    aAF = np.abs(np.abs(aA - aF) - np.pi / 2) * 2 / np.pi
    aBF = np.abs(np.abs(aB - aF) - np.pi / 2) * 2 / np.pi
    QAF = np.sqrt(0.9999 / (1 + np.exp(-19 * (gAF - 0.5))) * 0.9995 / (1 + np.exp(-22 * (aAF - 0.5))))
    QBF = np.sqrt(0.9999 / (1 + np.exp(-19 * (gBF - 0.5))) * 0.9995 / (1 + np.exp(-22 * (aBF - 0.5))))
    wtA = np.full(a.shape, 0.001); wtA[gA >= 2] = gA[gA >= 2] ** 1.5
    wtB = np.full(b.shape, 0.001); wtB[gB >= 2] = gB[gB >= 2] ** 1.5
    na = ((gF > gA) & (gF > gB)).astype(float)
    return np.sum(na * ((1 - QAF) * wtA + (1 - QBF) * wtB)) / np.sum(wtA + wtB)


@contextmanager
def ssim_data_range(ev, data_range: float):
    """Their Evaluator.SSIM with data_range passed: inside, the module-level name it calls (`ssim`, scikit-image's
    structural_similarity) is that same function with data_range fixed; restored on leaving."""
    original = ev.ssim
    ev.ssim = functools.partial(original, data_range=data_range)
    try:
        yield
    finally:
        ev.ssim = original


def reference_metrics(ev, fi, ir, vi) -> dict[str, dict[str, float]]:
    """{convention: {metric: reference value}} for one fused image and its sources (see the module docstring)."""
    E = ev.Evaluator
    cdd = {"EN": E.EN(fi), "SD": E.SD(fi), "SF": E.SF(fi), "AG": E.AG(fi), "MI": E.MI(fi, ir, vi),
           "SCD": E.SCD(fi, ir, vi), "VIF": E.VIFF(fi, ir, vi), "Qabf": E.Qabf(fi, ir, vi),
           "SSIM": E.SSIM(fi, ir, vi), "Nabf": kumar_nabf_reference(fi, ir, vi)}
    with ssim_data_range(ev, 255):
        ssim_255 = E.SSIM(fi, ir, vi)
    return {
        "cddfuse": cdd,
        "cddfuse-255": {**cdd, "SSIM": ssim_255},
        "mean-bits": {**cdd, "MI": cdd["MI"] / (2 * math.log(2)), "VIF": cdd["VIF"] / 2, "SSIM": ssim_255 / 2},
    }


REFERENCES = {
    "cddfuse": "CDDFuse utils/Evaluator.py as it is",
    "cddfuse-255": "CDDFuse utils/Evaluator.py, its SSIM's skimage call given data_range=255",
    "mean-bits": "no single reference: CDDFuse's MI / (2 ln 2), VIFF / 2, SSIM(data_range=255) / 2, "
                 "the rest as cddfuse",
}


def pairs_in(ir_dir: Path, vis_dir: Path, count: int) -> list[tuple[str, Path, Path]]:
    pairs = find_pairs(ir_dir=ir_dir, vis_dir=vis_dir).pairs
    if count <= 0:
        return [(p.stem, p.ir, p.vis) for p in pairs]
    picked = pairs[:: max(1, len(pairs) // count)][:count]  # spread over the set, deterministic
    return [(p.stem, p.ir, p.vis) for p in picked]


def main() -> None:
    parser = argparse.ArgumentParser(description="max |ours - reference| per convention and metric")
    parser.add_argument("--cddfuse", type=Path, required=True, help="checkout/export of MMIF-CDDFuse")
    parser.add_argument("--extra-pairs", type=Path, default=None, help="a folder with ir/ and vis/ (or vi/)")
    parser.add_argument("--per-set", type=int, default=4, help="pairs taken from each set (0: all of them)")
    parser.add_argument("--convention", choices=(*metrics.CONVENTIONS, "all"), default="all")
    args = parser.parse_args()
    conventions = list(metrics.CONVENTIONS) if args.convention == "all" else [args.convention]

    ev = load_evaluator(args.cddfuse)
    sets = {name: pairs_in(args.cddfuse / "test_img" / name / "ir", args.cddfuse / "test_img" / name / "vi",
                           args.per_set) for name in ("TNO", "RoadScene")}
    if args.extra_pairs:
        vis_dir = next(d for d in (args.extra_pairs / "vis", args.extra_pairs / "vi") if d.is_dir())
        sets[args.extra_pairs.name] = pairs_in(args.extra_pairs / "ir", vis_dir, args.per_set)

    worst = {(c, m): 0.0 for c in conventions for m in metrics.METRIC_NAMES}
    where = {key: "" for key in worst}
    reader_diff = 0.0
    t_ours = t_ref = 0.0
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        for set_name, pairs in sets.items():
            for stem, ir_path, vis_path in pairs:
                y, ir_y = _read_y(vis_path), _read_y(ir_path)
                for base, fuse in BASELINES.items():
                    out = Path(tmp) / f"{set_name}_{stem}_{base}.png"
                    cv2.imwrite(str(out), np.clip(np.round(fuse(y, ir_y)), 0, 255).astype(np.uint8))
                    theirs = [ev.image_read_cv2(str(p), "GRAY") for p in (out, ir_path, vis_path)]
                    ours = [metrics.read_gray(p) for p in (out, ir_path, vis_path)]
                    reader_diff = max(reader_diff, *(float(np.abs(t - o).max()) for t, o in zip(theirs, ours)))
                    t0 = time.process_time()
                    ref = reference_metrics(ev, *theirs)
                    t1 = time.process_time()
                    got = {c: metrics.compute_metrics(*ours, convention=c) for c in conventions}
                    t2 = time.process_time()
                    t_ref, t_ours, count = t_ref + t1 - t0, t_ours + (t2 - t1) / len(conventions), count + 1
                    for c in conventions:
                        for m in metrics.METRIC_NAMES:
                            d = abs(float(got[c][m]) - float(ref[c][m]))
                            if d > worst[c, m] or not where[c, m]:
                                worst[c, m] = max(d, worst[c, m])
                                where[c, m] = f"{set_name}/{stem} {base} ({ref[c][m]:.4f})"

    import scipy
    import sklearn
    import skimage

    print(f"{count} fused images ({', '.join(f'{k}: {len(v)} pairs' for k, v in sets.items())} x "
          f"{len(BASELINES)} baselines); skimage {skimage.__version__}, sklearn {sklearn.__version__}, "
          f"scipy {scipy.__version__}, numpy {np.__version__}")
    print(f"reader: max |image_read_cv2 - read_gray| = {reader_diff:g}")
    for c in conventions:
        print(f"\n{c}: {REFERENCES[c]}")
        print(f"{'metric':<6} {'max abs diff':>13}  {'ok':<3} worst case (reference value)")
        for m in metrics.METRIC_NAMES:
            ref_name = " Kumar NABF (MATLAB transcription)" if m == "Nabf" else ""
            ok = "yes" if worst[c, m] < 1e-3 else "NO"
            print(f"{m:<6} {worst[c, m]:13.3e}  {ok:<3} {where[c, m]}{ref_name}")
    print(f"\nall within 1e-3: {'yes' if max(worst.values()) < 1e-3 else 'NO'} (max {max(worst.values()):.3e})")
    print(f"CPU time per image: ours {t_ours / count:.3f} s per convention, "
          f"reference {t_ref / count:.3f} s (all three)")


if __name__ == "__main__":
    main()
