"""Information and intensity: EN (entropy in bits) and SD of the fused image alone, MI against one source
(nats as sklearn's mutual_info_score, or bits), as the CDDFuse evaluator computes them (see swinfuse.metrics)."""

from __future__ import annotations

import math

import numpy as np


def entropy(img: np.ndarray) -> float:
    """EN: entropy in bits of the histogram of the rounded gray levels 0..255."""
    levels = np.clip(np.round(img), 0, 255).astype(np.uint8).ravel()
    p = np.bincount(levels, minlength=256) / levels.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def std_dev(img: np.ndarray) -> float:
    """SD: population standard deviation of the gray values."""
    return float(np.std(img, dtype=np.float64))


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
