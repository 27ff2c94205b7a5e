"""Gradients and edges: SF and AG of the fused image alone; Qabf (Xydeas-Petrovic edge preservation, with
CDDFuse's Sobel and constants) and Nabf (Kumar's modified fusion artifacts) against both sources (see
swinfuse.metrics)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def spatial_frequency(img: np.ndarray) -> float:
    """SF: sqrt(mean squared horizontal difference + mean squared vertical difference)."""
    x = img.astype(np.float64)
    return float(np.sqrt(np.mean(np.diff(x, axis=1) ** 2) + np.mean(np.diff(x, axis=0) ** 2)))


def average_gradient(img: np.ndarray) -> float:
    """AG: mean of sqrt((gx^2 + gy^2) / 2); np.gradient matches the evaluator's central/one-sided differences."""
    gy, gx = np.gradient(img.astype(np.float64))
    return float(np.mean(np.sqrt((gx ** 2 + gy ** 2) / 2)))


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
