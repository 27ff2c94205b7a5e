"""Read one infrared/visible pair for fusion: the infrared as one channel at the visible's size (resized only
when asked, with a note), the visible split into BT.601 Y and Cr/Cb (swinfuse.data.io)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swinfuse.data import MAX_PIXELS
from swinfuse.errors import InputError


def _size_text(array) -> str:
    return f"{array.shape[0]}×{array.shape[1]}"  # H×W, as the tables


def check_sizes(ir_size: tuple[int, int], vis_size: tuple[int, int], ir_path: Path, vis_path: Path,
                resize: bool) -> None:
    """Refuse an infrared of another (H, W) than the visible's unless resize: one line naming both."""
    if tuple(ir_size) != tuple(vis_size) and not resize:
        raise InputError(f"sizes differ: infrared {ir_path} is {ir_size[0]}×{ir_size[1]}, visible {vis_path} is "
                         f"{vis_size[0]}×{vis_size[1]} (H×W); --resize resizes the infrared to the visible")


def match_size(ir, visible, ir_path: Path, vis_path: Path, resize: bool) -> tuple[Any, list[str]]:
    """Return the infrared at the visible's size (resized only when asked) and any note about it."""
    import cv2
    import numpy as np
    if ir.shape == visible.y.shape:
        return ir, []
    check_sizes(ir.shape, visible.y.shape, ir_path, vis_path, resize)
    h, w = visible.y.shape
    shrinking = ir.shape[0] * ir.shape[1] > h * w
    resized = cv2.resize(ir, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return np.clip(resized, 0.0, 1.0), [f"infrared resized from {_size_text(ir)} to {h}×{w}"]


@dataclass
class LoadedPair:
    ir: Any  # (H, W) float32, at the visible's size
    visible: Any  # VisibleImage
    ir_shape: tuple[int, ...]  # as read, before any resize
    notes: list[str]


def read_pair(ir_path: Path, vis_path: Path, resize: bool, max_pixels: int = MAX_PIXELS) -> LoadedPair:
    """Read one pair and match the infrared's size to the visible's. max_pixels: the limit per image (0: none)."""
    from swinfuse.data.io import read_infrared, read_visible
    alpha_notes: list[str] = []
    ir = read_infrared(ir_path, alpha_notes, max_pixels)
    visible = read_visible(vis_path, max_pixels)
    ir_shape = tuple(ir.shape)
    ir, notes = match_size(ir, visible, ir_path, vis_path, resize)
    notes += alpha_notes
    if visible.had_alpha:
        notes.append(f"alpha channel of {vis_path} dropped")
    return LoadedPair(ir, visible, ir_shape, notes)
