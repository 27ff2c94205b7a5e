"""An optional cheap stabiliser for per-frame fusion (`--temporal-smoothing A`): a recursive filter on the fused
Y, gated by the sources.

Where neither source changed between two frames, the scene did not change there either, so any change of the
fused Y is the model's own flicker: the output keeps a share A of its previous value. Where a source changed
(motion, a light, a person seen only in the infrared), the gate opens and the new fused value passes, so
moving content leaves no trail:

    gate = A * exp(-change / SOFTNESS),   change = box-blurred |IR_t - IR_t-1| + |Y_t - Y_t-1|  (grey levels)
    out_t = fused_t + gate * (out_t-1 - fused_t)

No optical flow and no weights: a handful of OpenCV calls per frame (timed in benchmarks/bench_video.py).
"""

from __future__ import annotations

import cv2
import numpy as np

SOFTNESS = 3.0  # grey levels of 255: a source change of 3 levels lets ~63 % of the new fused value through
BLUR = 5  # box side: the gate follows local change, not single noisy pixels


class SourceGatedSmoother:
    """Call with each fused Y (H', W') and its sources' (H, W) in order (floats in [0, 1]); returns the smoothed
    fused Y. Keeps the previous frame only."""

    def __init__(self, strength: float):
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"temporal smoothing must be in [0, 1), got {strength}")
        self.strength = strength
        self._previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __call__(self, fused: np.ndarray, infrared: np.ndarray, visible: np.ndarray) -> np.ndarray:
        fused = np.asarray(fused, np.float32)
        if self._previous is not None:
            out_before, ir_before, vis_before = self._previous
            change = cv2.add(cv2.absdiff(infrared, ir_before), cv2.absdiff(visible, vis_before))  # (H, W)
            change = cv2.blur(change, (BLUR, BLUR))
            if change.shape != fused.shape:  # a model with upscale: the gate at the output's size
                change = cv2.resize(change, (fused.shape[1], fused.shape[0]), interpolation=cv2.INTER_LINEAR)
            gate = cv2.exp(change * np.float32(-255.0 / SOFTNESS)) * np.float32(self.strength)  # (H', W')
            fused = fused + gate * (out_before - fused)
        self._previous = (fused, np.asarray(infrared, np.float32), np.asarray(visible, np.float32))
        return fused


def make_smoother(strength: float) -> SourceGatedSmoother | None:
    """None for 0 (off)."""
    if strength < 0 or strength >= 1:
        from swinfuse.errors import ConfigError
        raise ConfigError(f"--temporal-smoothing must be in [0, 1) (0: off), got {strength:g}")
    return SourceGatedSmoother(strength) if strength else None
