"""Where video frames come from: a video file (OpenCV's FFmpeg backend) or a folder of numbered frames.

open_source checks what can be checked before any work (the path, that a video stream decodes, its frame rate,
frame count and size) and gives a FrameSource; FrameSource.frames(indices) then decodes the frames asked for,
in order (a video is read forward only: seeking is approximate in many codecs, so frames before the first one
wanted are grabbed and dropped). A video that ends before the count its container gives is truncated: the
reader raises InputError when it gets there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from swinfuse.data.io import READ_EXTENSIONS, decode_image, quiet_decoder
from swinfuse.errors import InputError

# FFmpeg's own log lines ("[mjpeg @ 0x...] overread 8" on a truncated file) would land between our one-line
# errors and the progress bar; OpenCV reads this when its FFmpeg backend starts. Set it to 32 to see them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")


def _frame_key(path: Path) -> tuple:
    """Natural order: 'f2' before 'f10' (digit runs compare as numbers)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)) + (path.suffix,)


@dataclass
class FrameSource:
    """One input: a video file (files is None) or a folder of frames (files, in natural order).

    fps None: a folder (frames have no rate). count: frames in the video (its container's figure, checked as
    it is read) or files in the folder; size: (H, W) of the first frame."""

    path: Path
    role: str  # 'infrared' or 'visible', for messages
    fps: float | None
    count: int
    size: tuple[int, int]
    files: list[Path] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_video(self) -> bool:
        return self.files is None

    def describe(self) -> str:
        return f"{self.role} {'video' if self.is_video else 'frames'} {self.path}"

    def frames(self, indices: Iterable[int], max_pixels: int = 0) -> Iterator[tuple[np.ndarray, int]]:
        """Yield (frame, bit depth) for each index, in order; indices must not decrease (a repeated index
        yields the same frame again). frame: (H, W) or (H, W, C) BGR as decoded."""
        if self.files is not None:
            for i in indices:
                yield decode_image(self.files[i], self.role, max_pixels)
            return
        capture = _open_capture(self.path, self.role)
        try:
            position, frame = -1, None  # index of the frame held
            for i in indices:
                if i < position:
                    raise ValueError(f"frame indices must not decrease: {i} after {position}")
                while position < i:
                    # grab() skips (decodes without converting) the frames before the one wanted
                    ok = capture.read() if position + 1 == i else (capture.grab(), None)
                    if not ok[0]:
                        raise InputError(f"{self.describe()}: ends after {position + 1} of the {self.count} frames "
                                         "its container lists (truncated or damaged)")
                    position += 1
                    frame = ok[1]
                yield frame, 8
        finally:
            capture.release()


def _open_capture(path: Path, role: str):
    with quiet_decoder() as failed:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        failed[0] = not capture.isOpened()
    if not capture.isOpened():
        raise InputError(f"{role} video {path}: no video stream OpenCV can decode (not a video, audio only, "
                         "damaged or truncated)")
    return capture


def _open_video(path: Path, role: str) -> FrameSource:
    capture = _open_capture(path, role)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        w, h = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if count <= 0 and w > 0:
            # Some streams do not say how many frames they hold (a raw stream, a live recording): count them.
            count = 0
            while capture.grab():
                count += 1
    finally:
        capture.release()
    if count <= 0 or w <= 0 or h <= 0:
        raise InputError(f"{role} video {path}: has no frames")
    if not fps or fps <= 0 or fps > 1000:
        raise InputError(f"{role} video {path}: its container gives no usable frame rate ({fps:g})")
    return FrameSource(path, role, float(fps), count, (h, w))


def _open_folder(path: Path, role: str, max_pixels: int) -> FrameSource:
    files = sorted((f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")
                    and f.suffix.lower() in READ_EXTENSIONS), key=_frame_key)
    if not files:
        raise InputError(f"{role} frames {path}: the folder holds no frames "
                         f"({', '.join(e[1:] for e in READ_EXTENSIONS)})")
    first, _ = decode_image(files[0], role, max_pixels)
    return FrameSource(path, role, None, len(files), first.shape[:2], files)


def open_source(path: str | Path, role: str, max_pixels: int = 0) -> FrameSource:
    """A video file or a folder of numbered frames, checked: it exists, decodes, has frames and a frame rate
    (a video), each frame within max_pixels (0: no limit)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{role} video {path}: no such file or folder")
    if path.is_dir():
        source = _open_folder(path, role, max_pixels)
    elif path.suffix.lower() in READ_EXTENSIONS:
        raise InputError(f"{role} video {path}: is an image; give a video file or a folder of frames")
    elif path.stat().st_size == 0:
        raise InputError(f"{role} video {path}: file is empty (0 bytes)")
    else:
        source = _open_video(path, role)
    h, w = source.size
    if max_pixels and h * w > max_pixels:
        raise InputError(f"{source.describe()}: frames are {h}×{w} ({h * w / 1e6:.0f} Mpx), over the limit of "
                         f"{max_pixels / 1e6:g} Mpx (--max-pixels; 0: no limit)")
    return source


def decode_pairs(ir: FrameSource, vis: FrameSource, plan, max_pixels: int = 0):
    """(k, (infrared frame, depth), (visible frame, depth)) as decoded, for each pair of a matching.PairPlan."""
    ir_frames = ir.frames(plan.ir_indices(), max_pixels)
    vis_frames = vis.frames(plan.vis_indices(), max_pixels)
    for k, (ir_frame, vis_frame) in enumerate(zip(ir_frames, vis_frames)):
        yield k, ir_frame, vis_frame


def split_pair(item, ir_path: Path, vis_path: Path, resize: bool):
    """A decoded pair -> (k, infrared (H, W) float32 at the visible's size, VisibleImage, notes), as `fuse`
    reads a pair of images (swinfuse.data.io, swinfuse.data.loading)."""
    from swinfuse.data.io import infrared_from_array, visible_from_array
    from swinfuse.data.loading import match_size

    k, (ir_image, ir_depth), (vis_image, vis_depth) = item
    ir, _ = infrared_from_array(ir_image, ir_depth)
    visible = visible_from_array(vis_image, vis_depth)
    ir, notes = match_size(ir, visible, ir_path, vis_path, resize)
    return k, ir, visible, notes


def find_clip(root: str | Path) -> tuple[Path, Path]:
    """(infrared, visible) of a clip folder: two videos named as the pair layouts name folders (ir.mp4 +
    vis.mp4, infrared.avi + visible.avi, ...) or two frame folders (ir/ + vis/, ...), any case."""
    from swinfuse.data.pairs import LAYOUTS

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder" if not root.exists() else f"{root}: is not a folder")
    entries: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            entries.setdefault(entry.name.lower(), entry)
        elif entry.suffix.lower() in VIDEO_EXTENSIONS:
            entries.setdefault(entry.stem.lower(), entry)
    for ir_name, vis_name in LAYOUTS:
        if ir_name in entries and vis_name in entries:
            return entries[ir_name], entries[vis_name]
    raise InputError(f"{root}: no infrared/visible pair found (looked for ir.mp4 + vis.mp4 or ir/ + vis/, and the "
                     "other pair names, any video extension, any case); give them with --ir-dir and --vis-dir")
