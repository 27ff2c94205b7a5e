"""Classical infrared-visible fusion baselines: mean(Y, IR), max(Y, IR) and a Laplacian pyramid.

They are the bar of issue 5: a learned model should beat mean(Y, IR) everywhere. max(Y, IR) copies source
pixels, so it scores high on MI, VIF and Qabf while losing contrast and detail (SD, SF, AG).

    python tools/baselines.py --ir-dir DATA/ir --vis-dir DATA/vis --out-dir runs/baselines

writes OUT/{mean,max,laplacian}/<stem>.png (gray, the visible image's BT.601 Y fused with the infrared)
and prints the mean of every metric per baseline (swinfuse.metrics, CDDFuse's conventions).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np


def fuse_mean(y: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """(H, W) float 0..255 twice -> (H, W) float64: the pixel average."""
    return (np.asarray(y, np.float64) + np.asarray(ir, np.float64)) / 2


def fuse_max(y: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """(H, W) float 0..255 twice -> (H, W) float64: the brighter source at every pixel."""
    return np.maximum(np.asarray(y, np.float64), np.asarray(ir, np.float64))


def _laplacian_pyramid(img: np.ndarray, levels: int) -> list[np.ndarray]:
    """(H, W) -> [detail_0 (H, W), ..., detail_{L-1}, base]; detail_i = G_i - up(G_{i+1})."""
    pyramid, current = [], img
    for _ in range(levels):
        down = cv2.pyrDown(current)
        up = cv2.pyrUp(down, dstsize=(current.shape[1], current.shape[0]))  # odd sizes round-trip exactly
        pyramid.append(current - up)
        current = down
    pyramid.append(current)
    return pyramid


def fuse_laplacian(y: np.ndarray, ir: np.ndarray, levels: int = 4) -> np.ndarray:
    """(H, W) float 0..255 twice -> (H, W) float64 clipped to 0..255.

    Detail levels keep the coefficient of larger magnitude (the stronger edge); the base is averaged so
    neither source's overall brightness wins. Levels stop early for small images.
    """
    y, ir = np.asarray(y, np.float64), np.asarray(ir, np.float64)
    levels = max(0, min(levels, int(np.log2(max(min(y.shape), 1)))))
    py, pi = _laplacian_pyramid(y, levels), _laplacian_pyramid(ir, levels)
    fused = [np.where(np.abs(a) >= np.abs(b), a, b) for a, b in zip(py[:-1], pi[:-1])]
    current = (py[-1] + pi[-1]) / 2
    for detail in reversed(fused):
        current = cv2.pyrUp(current, dstsize=(detail.shape[1], detail.shape[0])) + detail
    return np.clip(current, 0, 255)


BASELINES = {"mean": fuse_mean, "max": fuse_max, "laplacian": fuse_laplacian}


def _read_y(path: Path) -> np.ndarray:
    """Visible image -> its BT.601 Y (cv2's YCrCb) as float 0..255; infrared gray the same way."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb)[:, :, 0].astype(np.float64)


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    from swinfuse.data.pairs import find_pairs
    from swinfuse.errors import InputError
    from swinfuse.metrics import METRIC_NAMES, evaluate_triples, mean_record

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ir-dir", type=Path, required=True)
    parser.add_argument("--vis-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--levels", type=int, default=4, help="Laplacian pyramid levels")
    parser.add_argument("--workers", type=int, default=0, help="metric processes (0: one per CPU)")
    args = parser.parse_args(argv)

    try:
        found = find_pairs(ir_dir=args.ir_dir, vis_dir=args.vis_dir)
    except InputError as e:
        raise SystemExit(str(e)) from None
    unmatched = sorted(p.stem for p in found.unmatched_ir + found.unmatched_vis)
    if unmatched:
        print(f"unmatched (skipped): {', '.join(unmatched)}", file=sys.stderr)

    jobs = {name: [] for name in BASELINES}
    for pair in found.pairs:
        stem = pair.stem
        y, ir = _read_y(pair.vis), _read_y(pair.ir)
        for name, fuse in BASELINES.items():
            out = args.out_dir / name / f"{stem}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            fused = fuse(y, ir, args.levels) if name == "laplacian" else fuse(y, ir)
            cv2.imwrite(str(out), np.clip(np.round(fused), 0, 255).astype(np.uint8))
            # metrics against the sources as the evaluator sees them (gray of the files)
            jobs[name].append((stem, out, pair.ir, pair.vis))

    print(f"{len(found.pairs)} pairs; metrics with CDDFuse's evaluator conventions (MI, VIF, SSIM summed over sources)")
    print("baseline   " + " ".join(f"{m:>7}" for m in METRIC_NAMES))
    for name, triples in jobs.items():
        records = evaluate_triples(triples, workers=args.workers)
        for failed in (r for r in records if "error" in r):
            print(f"{name} {failed['name']}: {failed['error']}", file=sys.stderr)
        mean = mean_record(records)
        print(f"{name:<10} " + " ".join(f"{mean[m]:7.3f}" for m in METRIC_NAMES))


if __name__ == "__main__":
    main()
