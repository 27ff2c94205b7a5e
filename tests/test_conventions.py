"""How the named conventions relate on a non-trivial image (the reference code itself is checked by
tools/compare_evaluator.py, which needs CDDFuse's evaluator; these tests need nothing but swinfuse)."""

import math

import numpy as np
import pytest

from swinfuse.metrics import METRIC_NAMES, compute_metrics, mutual_information, ssim, vif


def ndsmooth(x):
    return (x + np.roll(x, 1, 0) + np.roll(x, 1, 1)) / 3  # some structure, so SSIM is far from 0 and 1


@pytest.fixture(scope="module")
def triple():
    rng = np.random.default_rng(14)
    ir = np.round(rng.uniform(0, 255, (48, 56))).astype(np.float32)
    vis = np.round(ndsmooth(rng.uniform(0, 255, (48, 56)))).astype(np.float32)
    fused = np.round((ir + vis) / 2).astype(np.float32)
    return fused, ir, vis


def test_cddfuse_255_changes_only_ssim(triple):
    cdd, c255 = compute_metrics(*triple, "cddfuse"), compute_metrics(*triple, "cddfuse-255")
    assert [m for m in METRIC_NAMES if cdd[m] != c255[m]] == ["SSIM"]
    f, a, b = triple
    assert c255["SSIM"] == pytest.approx(ssim(f, a, data_range=255) + ssim(f, b, data_range=255))


def test_mean_bits_is_the_mean_of_the_per_source_terms_in_bits(triple):
    """mean-bits = the mean of the per-source MI (in bits), VIF and SSIM (range 255); the rest as cddfuse.
    The same relation compare_evaluator.py checks against CDDFuse's code."""
    f, a, b = triple
    cdd, c255, mb = (compute_metrics(*triple, c) for c in ("cddfuse", "cddfuse-255", "mean-bits"))
    mi_nats = mutual_information(f, a) + mutual_information(f, b)
    assert cdd["MI"] == pytest.approx(mi_nats)
    assert mb["MI"] == pytest.approx(mi_nats / (2 * math.log(2)))
    assert mb["VIF"] == pytest.approx((vif(a, f) + vif(b, f)) / 2) and mb["VIF"] == pytest.approx(cdd["VIF"] / 2)
    assert mb["SSIM"] == pytest.approx(c255["SSIM"] / 2)
    assert 0.05 < mb["SSIM"] < 0.95  # a case where the range and the halving both matter
    for same in ("EN", "SD", "SF", "AG", "SCD", "Qabf", "Nabf"):
        assert mb[same] == cdd[same]
