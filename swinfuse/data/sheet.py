"""A comparison sheet: infrared | visible | one fused result per prompt, each captioned, as one 8-bit BGR
image (`swinfuse fuse --sheet`)."""

from __future__ import annotations

import cv2
import numpy as np

from swinfuse.data.io import compose_output, quantize


def _caption(tile, text: str):
    """Stack a caption strip above a (H, W, 3) uint8 tile; long text is cut to the tile's width."""
    h, w = tile.shape[:2]
    scale = max(0.35, min(1.0, w / 640))
    strip_h = int(28 * scale) + 8
    font = cv2.FONT_HERSHEY_SIMPLEX
    text = text.encode("ascii", "replace").decode()  # Hershey fonts draw ASCII only
    while len(text) > 3 and cv2.getTextSize(text, font, scale, 1)[0][0] > w - 8:
        text = text[:-4] + "..."
    strip = np.full((strip_h, w, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, strip_h - 8), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, tile])


def make_sheet(ir, visible, fused_ys: list, prompts: list[str], gray: bool, stretch: bool = False):
    """infrared | visible | one fused result per prompt (stretched as written when stretch), each captioned, as
    one 8-bit BGR image."""
    h, w = fused_ys[0].shape

    def bgr(image):
        image = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC) if image.shape[:2] != (h, w) else image
    tiles = [_caption(bgr(quantize(ir, 8)), "infrared"),
             _caption(bgr(compose_output(visible.y, visible, bit_depth=8)), "visible")]
    for k, (y, prompt) in enumerate(zip(fused_ys, prompts), 1):
        tiles.append(_caption(bgr(compose_output(y, visible, gray, 8, stretch)), f"p{k}: {prompt or '(empty prompt)'}"))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    return np.hstack([part for tile in tiles for part in (tile, gap)][:-1])
