"""Fusion metrics on hand-computable cases and on fused == source, where the answer is known.

Images are 48x64: VIF's four-scale pyramid needs at least 41 px a side (metrics.MIN_SIDE).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from swinfuse import metrics
from swinfuse.errors import InputError

H, W = 48, 64


def _textured(seed: int) -> np.ndarray:
    """Smooth random texture with edges, integer gray levels as read from a file."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (H, W)), (0, 0), 2.0) * 3 - 250
    img[:, W // 2:] += 40  # a step edge
    return np.clip(np.round(img), 0, 255).astype(np.float32)


def test_entropy_of_constant_and_two_level_images():
    assert metrics.entropy(np.full((H, W), 77.0)) == 0.0
    half = np.zeros((H, W))
    half[:, W // 2:] = 200
    assert metrics.entropy(half) == pytest.approx(1.0)


def test_sd_of_known_array():
    assert metrics.std_dev(np.array([[0.0, 0.0], [4.0, 4.0]])) == pytest.approx(2.0)


def test_sf_and_ag_are_zero_on_constant_and_known_on_stripes():
    flat = np.full((H, W), 30.0)
    assert metrics.spatial_frequency(flat) == 0.0
    assert metrics.average_gradient(flat) == 0.0
    stripes = np.tile([0.0, 10.0], (H, W // 2))  # columns alternate 0, 10
    assert metrics.spatial_frequency(stripes) == pytest.approx(10.0)  # every row difference is 10
    # central differences vanish inside; only the two one-sided border columns see 10
    assert metrics.average_gradient(stripes) == pytest.approx(2 * (10 / math.sqrt(2)) / W)


def test_mutual_information_of_an_image_with_itself_is_its_entropy_in_nats():
    x = _textured(0)
    assert metrics.mutual_information(x, x) == pytest.approx(metrics.entropy(x) * math.log(2))
    assert metrics.mutual_information(x, np.full_like(x, 5)) == 0.0


def test_scd_of_the_sum_of_the_sources_is_two():
    a, b = _textured(1), _textured(2)
    assert metrics.scd(a + b, a, b) == pytest.approx(2.0)


def test_fused_equal_to_both_sources():
    x = _textured(3)
    m = metrics.compute_metrics(x, x, x)
    assert list(m) == list(metrics.METRIC_NAMES)
    assert m["SSIM"] == pytest.approx(2.0, abs=1e-5)  # summed over the two sources
    assert m["VIF"] == pytest.approx(2.0, abs=1e-6)
    assert math.isnan(m["SCD"])  # F - A and F - B are flat: 0/0, as in the reference
    assert m["Nabf"] == 0.0  # no edge is stronger than the sources'
    # Qabf's ceiling with CDDFuse's constants: orientation term Ta / (1 + e^{-22 (1 - 0.8)}) = 0.9759,
    # strength term between 0.9988 and 0.9994 (equal strengths keep gF >= 1 there)
    assert 0.9748 < m["Qabf"] < 0.9760


def test_copying_a_source_beats_noise():
    ir, vis = _textured(4), _textured(5)
    noise = np.random.default_rng(6).integers(0, 256, (H, W)).astype(np.float32)
    copy, rand = metrics.compute_metrics(ir, ir, vis), metrics.compute_metrics(noise, ir, vis)
    for name in ("MI", "VIF", "Qabf", "SSIM"):
        assert copy[name] > rand[name], name
    assert copy["Nabf"] < rand["Nabf"]


def test_bgr_and_integer_inputs_are_converted_as_the_reader_does(tmp_path):
    x, y = _textured(7), _textured(8)
    bgr = np.dstack([x, np.roll(x, 3, axis=1), x[::-1]]).astype(np.uint8)
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), bgr)
    gray = metrics.read_gray(path)
    assert gray.dtype == np.float32 and gray.shape == (H, W)
    assert metrics.compute_metrics(bgr, x, y) == metrics.compute_metrics(gray, x, y)
    z = _textured(9)
    assert metrics.compute_metrics(x.astype(np.uint8), y, z) == metrics.compute_metrics(x, y, z)


def test_size_mismatch_names_both_sizes():
    with pytest.raises(InputError, match=r"fused image is 48×64 but visible is 48×60 \(H×W\)"):
        metrics.compute_metrics(np.zeros((H, W)), np.zeros((H, W)), np.zeros((H, 60)))


def test_too_small_and_sixteen_bit_inputs_are_refused():
    small = np.zeros((24, 32))
    with pytest.raises(InputError, match="at least 41×41"):
        metrics.compute_metrics(small, small, small)
    with pytest.raises(InputError, match="16-bit"):
        big = np.zeros((H, W), np.uint16)
        metrics.compute_metrics(big, big, big)


def _write_triples(root, stems):
    for kind in ("fused", "ir", "vis"):
        (root / kind).mkdir()
    for i, stem in enumerate(stems):
        ir, vis = _textured(10 + i), _textured(20 + i)
        cv2.imwrite(str(root / "ir" / f"{stem}.png"), ir.astype(np.uint8))
        cv2.imwrite(str(root / "vis" / f"{stem}.jpg"), vis.astype(np.uint8))
        cv2.imwrite(str(root / "fused" / f"{stem}.png"), np.maximum(ir, vis).astype(np.uint8))


def test_evaluate_folder_gives_records_and_their_mean(tmp_path):
    _write_triples(tmp_path, ["a", "b"])
    (tmp_path / "fused" / "orphan.png").write_bytes(b"")  # no sources: not evaluated
    records, mean = metrics.evaluate_folder(tmp_path / "fused", tmp_path / "ir", tmp_path / "vis", workers=2)
    assert [r["name"] for r in records] == ["a", "b"]
    for name in metrics.METRIC_NAMES:
        assert mean[name] == pytest.approx((records[0][name] + records[1][name]) / 2)
    serial, _ = metrics.evaluate_folder(tmp_path / "fused", tmp_path / "ir", tmp_path / "vis", workers=1)
    assert serial == records  # the process pool changes nothing


def test_evaluate_folder_missing_folder(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        metrics.evaluate_folder(tmp_path / "nope", tmp_path, tmp_path)
