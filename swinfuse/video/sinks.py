"""Where fused frames go: a video file (OpenCV's VideoWriter, FFmpeg backend) or a folder of PNG frames.

Both are written under a hidden temporary name beside the output and renamed when complete, so the output
never exists half-made. abandon() ends a run early: it keeps what was written under a name that says so
(`out.partial.mp4`, `out.partial/`; a video is finalised first, so it plays) or removes it.

Codecs are those a fresh `pip install opencv-python-headless` writes (its bundled FFmpeg has no H.264
encoder): MPEG-4 Part 2 in .mp4/.m4v/.mov/.mkv, Motion-JPEG in .avi, VP8 in .webm (README, "Video").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from swinfuse.data.io import READ_EXTENSIONS, stale_temporaries, temporary_name, write_image_atomic
from swinfuse.errors import OutputError

# The codec each container gets unless --codec says otherwise; each writes without FFmpeg's "fallback" line.
CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG", ".webm": "VP80"}


def output_kind(path: Path) -> str:
    """'video' (a video file extension), or 'frames' (an existing folder, or a path without an extension)."""
    suffix = path.suffix.lower()
    if path.is_dir() or not suffix:
        return "frames"
    if suffix in CODECS:
        return "video"
    if suffix in READ_EXTENSIONS:
        raise OutputError(f"{path}: is an image name; give a video file ({', '.join(CODECS)}) or a folder for the "
                          "frames")
    raise OutputError(f"{path}: unsupported video format {suffix!r} (use {', '.join(CODECS)}, or a folder for "
                      "PNG frames)")


def partial_name(path: Path) -> Path:
    """out.mp4 -> out.partial.mp4; frames/ -> frames.partial/"""
    return path.with_name(f"{path.stem}.partial{path.suffix}" if path.suffix else f"{path.name}.partial")


def check_output(path: Path, overwrite: bool, codec: str | None, bit_depth: int | None) -> str:
    """Refuse, before any work, an output that exists (unless overwrite), or a codec or depth the kind cannot
    take; return the kind."""
    kind = output_kind(path)
    if kind == "frames":
        if path.exists() and not path.is_dir():
            raise OutputError(f"{path}: is a file, expected a folder for the frames")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise OutputError(f"{path}: the folder is not empty; --overwrite replaces it")
        if codec:
            raise OutputError(f"--codec applies to a video output; {path} is a folder of PNG frames")
    else:
        if path.exists() and not overwrite:
            raise OutputError(f"{path}: exists; --overwrite replaces it")
        if bit_depth == 16:
            raise OutputError(f"{path}: a video stores 8-bit frames; write 16-bit PNG frames to a folder instead")
        if codec is not None and len(codec) != 4:
            raise OutputError(f"--codec takes a four-character code (mp4v, MJPG, VP80, FFV1), got {codec!r}")
    return kind


def remove_stale(path: Path) -> None:
    """What a killed run (SIGKILL skips every cleanup) left under a temporary name for this output."""
    for stale in stale_temporaries([path]):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)


def _replace(source: Path, target: Path) -> None:
    """Rename source to target, replacing a file or a folder there."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(temporary_name(target.name))
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


class VideoSink:
    """Frames to a video file at `fps`, each (H, W, 3) BGR or (H, W) gray uint8 of the size given. The encoders
    store 4:2:0 chroma, so an odd height or width loses its last row or column (FFmpeg would drop it without a
    word; size is what is stored)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], codec: str | None = None):
        from swinfuse.data.io import quiet_decoder

        self.path, self.written = Path(path), 0
        self.codec = codec or CODECS[self.path.suffix.lower()]
        self.size = (size[0] - size[0] % 2, size[1] - size[1] % 2)  # (H, W), even
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(temporary_name(self.path.name, self.path.suffix))
        h, w = self.size
        # OpenCV prints its own line for some pairs that work (WebM takes no codec tag) and for those that fail
        # (which the error below states): none of them reaches the terminal.
        with quiet_decoder() as discard:
            discard[0] = True
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*self.codec),
                                           float(fps), (w, h), True)  # cv2 sizes are (W, H)
        if not self._writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise OutputError(f"{self.path}: OpenCV cannot write {self.codec!r} video to a {self.path.suffix} file "
                              f"(try {', '.join(f'{c} in {e}' for e, c in CODECS.items() if e in ('.mp4', '.avi'))})")

    def write(self, frame: np.ndarray) -> None:
        h, w = self.size
        frame = frame[:h, :w]
        if frame.shape[:2] != self.size:
            # VideoWriter drops a frame of another size without a word
            raise OutputError(f"{self.path}: frame of {frame.shape[:2]} for a video of {self.size}")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame)
        self.written += 1

    def finish(self) -> Path:
        self._writer.release()
        _replace(self._tmp, self.path)
        return self.path

    def abandon(self, keep: bool) -> Path | None:
        """Stop writing; keep what was written as a playable partial file (None: nothing kept)."""
        self._writer.release()  # finalises the container (an .mp4's index), so the partial plays
        if keep and self.written:
            _replace(self._tmp, partial_name(self.path))
            return partial_name(self.path)
        self._tmp.unlink(missing_ok=True)
        return None


class FrameFolderSink:
    """Frames to a folder as 000000.png, 000001.png, ... (16-bit where the frames are)."""

    def __init__(self, path: Path, size: tuple[int, int]):
        self.path, self.written, self.size = Path(path), 0, size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(temporary_name(self.path.name))
        self._tmp.mkdir()

    def write(self, frame: np.ndarray) -> None:
        write_image_atomic(self._tmp / f"{self.written:06d}.png", frame)
        self.written += 1

    def finish(self) -> Path:
        _replace(self._tmp, self.path)
        return self.path

    def abandon(self, keep: bool) -> Path | None:
        if keep and self.written:
            _replace(self._tmp, partial_name(self.path))
            return partial_name(self.path)
        shutil.rmtree(self._tmp, ignore_errors=True)
        return None


def open_sink(path: Path, kind: str, fps: float, size: tuple[int, int], codec: str | None = None):
    return VideoSink(path, fps, size, codec) if kind == "video" else FrameFolderSink(path, size)
