"""Structure against the sources: VIF (pixel domain, four scales) and SSIM (scikit-image 0.19's) against
one source, SCD (sum of the correlations of differences) against both, as the CDDFuse evaluator computes them
(see swinfuse.metrics)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


# VIF's four-scale pyramid: 17-tap window at scale 1, then filter-and-halve with 9, 5, 3 taps. The last
# scale still has a window to fill only when each side is at least 41 px (the reference crashes below).
MIN_SIDE = 41


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


def scd(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """SCD: corr(F - B, A) + corr(F - A, B)."""
    f, a, b = (x.astype(np.float64) for x in (f, a, b))

    def corr(x, y):
        x, y = x - x.mean(), y - y.mean()
        with np.errstate(divide="ignore", invalid="ignore"):  # F == B makes F - B flat: NaN, as the reference
            return (x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum())

    return float(corr(a, f - b) + corr(b, f - a))
