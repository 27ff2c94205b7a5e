"""A batch killed with SIGKILL and rerun ends with every output complete and readable."""

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest


@pytest.mark.slow
def test_sigkill_then_rerun_completes_every_output(tiny_checkpoint, tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    rng = np.random.default_rng(0)
    for sub in ("ir", "vis"):
        (root / sub).mkdir(parents=True)
    n = 40
    for i in range(n):
        cv2.imwrite(str(root / "ir" / f"p{i:03d}.png"), rng.integers(0, 255, (48, 64), dtype=np.uint8))
        cv2.imwrite(str(root / "vis" / f"p{i:03d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    cmd = [sys.executable, "-m", "swinfuse", "batch", str(root), "-o", str(out), "--weights",
           str(tiny_checkpoint), "--device", "cpu", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.png"))) < 3:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written_before = len(list(out.glob("*.png")))
    assert 0 < written_before < n, "the kill should land mid-run"

    rerun = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    outputs = sorted(out.glob("*.png"))
    assert len(outputs) == n
    assert not list(out.glob(".*.tmp"))  # whatever the kill left half-written is gone
    for path in outputs:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape == (48, 64, 3), path
    assert not [p for p in out.iterdir() if p.suffix == ".tmp" and not p.name.startswith(".")]
