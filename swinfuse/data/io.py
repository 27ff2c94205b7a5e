"""Image input and output: read infrared and visible images, split colour into BT.601 YCrCb, put the
chroma back around a fused Y, and write results atomically.

The network fuses one luminance channel with the infrared (the SwinFusion / SeAFusion convention);
the visible's Cr/Cb are carried around it unchanged. All arithmetic is float32 in [0, 1], so 8-bit and
16-bit inputs follow one path and are quantised exactly once, on output.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from swinfuse.errors import InputError, OutputError

READ_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SIXTEEN_BIT_EXTENSIONS = (".png", ".tif", ".tiff")  # the writable formats that store 16-bit samples

# BT.601 full-range YCrCb, the conversion cv2.COLOR_BGR2YCrCb performs with coefficients rounded to three
# decimals (and an offset of 128 where we use 0.5). Our inverse is the exact matrix inverse, so a
# 16-bit image survives the round trip; cv2's rounded pair is off by up to ~20 levels of 65535.
_BGR_TO_YCRCB = np.array([
    [0.114, 0.587, 0.299],                          # Y
    [-0.114 / 1.402, -0.587 / 1.402, 0.701 / 1.402],  # Cr = (R - Y) / 1.402
    [0.886 / 1.772, -0.587 / 1.772, -0.299 / 1.772],  # Cb = (B - Y) / 1.772
], dtype=np.float64)
_YCRCB_TO_BGR = np.linalg.inv(_BGR_TO_YCRCB)
_CHROMA_OFFSET = np.array([0.0, 0.5, 0.5], dtype=np.float32)


@dataclass
class VisibleImage:
    """A visible image split for fusion: y (H, W) float32 in [0, 1]; cr, cb the same, or None for gray."""

    y: np.ndarray
    cr: np.ndarray | None
    cb: np.ndarray | None
    bit_depth: int
    had_alpha: bool

    @property
    def is_color(self) -> bool:
        return self.cr is not None


def _check_readable(path: Path, role: str) -> None:
    """Turn the usual file-system problems into one-line errors before any decoder sees the file."""
    if not path.exists():
        raise InputError(f"{role} image {path}: no such file")
    if path.is_dir():
        raise InputError(f"{role} image {path}: is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise InputError(f"{role} image {path}: file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputError(f"{role} image {path}: permission denied")


def _jpeg_is_truncated(data: bytes) -> bool:
    """True when a JPEG stream has no end-of-image marker after its last scan.

    OpenCV 4.x decodes a truncated JPEG into a half-grey image with only a warning, so we check the
    markers ourselves. Entropy-coded data stuffs every 0xFF byte, so 0xFFDA / 0xFFD9 occur only as
    markers; looking after the last scan (SOS) skips an EXIF thumbnail's own end marker.
    """
    last_scan = data.rfind(b"\xff\xda")
    return last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_is_truncated(data: bytes) -> bool:
    """True when a PNG has no complete IEND chunk (its 4-byte type and 4-byte CRC) after its signature."""
    end = data.rfind(b"IEND")
    return end < 8 or len(data) < end + 8


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_decoder():
    """Keep the decoders' own lines off the terminal when a file fails to decode.

    libpng prints `libpng error: ...` straight to file descriptor 2 and OpenCV logs `[ WARN:0@...]` lines
    before imdecode returns None; our InputError is the one line a user should see. OpenCV's log level is
    lowered and fd 2 points at a temporary file for the duration of one decode; the caller sets
    failed[0], and what was captured is written back unless the decode failed (so a successful decode, or
    another thread writing to stderr meanwhile, loses nothing but a failed file's decoder chatter).
    """
    failed = [False]
    with _STDERR_LOCK:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2 (a pythonw-like process): decode as is
            saved = None
        try:
            if saved is None:
                yield failed
                return
            with tempfile.TemporaryFile() as capture:
                os.dup2(capture.fileno(), 2)
                try:
                    yield failed
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)
                    if not failed[0]:
                        capture.seek(0)
                        text = capture.read()
                        if text:
                            os.write(2, text)
        finally:
            cv2.utils.logging.setLogLevel(level)


from swinfuse.data import MAX_PIXELS  # noqa: E402  (the default limit per image)


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(H, W) from a PNG's IHDR or a JPEG's frame header, without decoding; None for other files."""
    if data[:8] == _PNG_SIGNATURE and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data) and data[i] == 0xFF:
            marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
                return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
            i += 2 + length
    return None


def _check_pixels(size: tuple[int, int] | None, path: Path, role: str, max_pixels: int) -> None:
    if size and max_pixels and size[0] * size[1] > max_pixels:
        raise InputError(f"{role} image {path} is {size[0]}×{size[1]} ({size[0] * size[1] / 1e6:.0f} Mpx), over "
                         f"the limit of {max_pixels / 1e6:g} Mpx (--max-pixels; 0: no limit)")


def decode_image(path: Path, role: str, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, int]:
    """Read a file with its original depth and channels: (H, W) or (H, W, C) array and its bit depth. A frame
    over max_pixels (0: no limit) is refused, from its header where the format allows, before decoding."""
    _check_readable(path, role)
    try:
        data = path.read_bytes()
    except PermissionError:
        raise InputError(f"{role} image {path}: permission denied") from None
    except OSError as e:
        raise InputError(f"{role} image {path}: cannot read ({e.strerror or e})") from None
    if data[:2] == b"\xff\xd8" and _jpeg_is_truncated(data):
        raise InputError(f"{role} image {path}: file is truncated (JPEG data ends early)")
    if data[:8] == _PNG_SIGNATURE and _png_is_truncated(data):
        raise InputError(f"{role} image {path}: file is truncated (PNG data ends early)")
    _check_pixels(_header_size(data), path, role, max_pixels)
    # IMREAD_UNCHANGED keeps 16-bit samples and alpha, and ignores EXIF orientation for every file alike,
    # so an infrared and a visible of one scene stay aligned.
    with quiet_decoder() as failed:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        failed[0] = image is None or image.size == 0
    if image is None or image.size == 0:
        raise InputError(f"{role} image {path}: not a readable image, or truncated "
                         f"(expected {', '.join(e[1:] for e in READ_EXTENSIONS)})")
    _check_pixels(image.shape[:2], path, role, max_pixels)
    if image.dtype == np.uint8:
        return image, 8
    if image.dtype == np.uint16:
        return image, 16
    raise InputError(f"{role} image {path}: unsupported sample type {image.dtype} (expected 8- or 16-bit)")


def _to_unit(image: np.ndarray, bit_depth: int) -> np.ndarray:
    return image.astype(np.float32) / np.float32(2**bit_depth - 1)


def _split_alpha(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """Drop an alpha channel: (H, W, 2) gray+alpha -> (H, W); (H, W, 4) BGRA -> (H, W, 3) BGR."""
    if image.ndim == 2:
        return image, False
    channels = image.shape[2]
    if channels == 1:
        return image[:, :, 0], False
    if channels == 2:
        return image[:, :, 0], True
    if channels == 4:
        return image[:, :, :3], True
    return image, False


def bgr_to_ycrcb(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR float in [0, 1] -> (H, W, 3) Y, Cr, Cb float32 in [0, 1] (BT.601)."""
    return bgr.astype(np.float32) @ _BGR_TO_YCRCB.T.astype(np.float32) + _CHROMA_OFFSET


def ycrcb_to_bgr(ycrcb: np.ndarray) -> np.ndarray:
    """(H, W, 3) Y, Cr, Cb float -> (H, W, 3) BGR float32, not clipped (BT.601)."""
    return (ycrcb.astype(np.float32) - _CHROMA_OFFSET) @ _YCRCB_TO_BGR.T.astype(np.float32)


def _is_gray_bgr(bgr: np.ndarray) -> bool:
    return bool(np.array_equal(bgr[:, :, 0], bgr[:, :, 1]) and np.array_equal(bgr[:, :, 1], bgr[:, :, 2]))


def infrared_from_array(image: np.ndarray, bit_depth: int) -> tuple[np.ndarray, bool]:
    """A decoded infrared frame ((H, W) or (H, W, C), 8- or 16-bit) as one channel: ((H, W) float32 in [0, 1],
    whether an alpha channel was dropped). A 3-channel gray frame is reduced to one channel; a true-colour
    one (a false-colour palette) is converted to its BT.601 luminance."""
    image, had_alpha = _split_alpha(image)
    image = _to_unit(image, bit_depth)
    if image.ndim == 3:
        image = image[:, :, 0] if _is_gray_bgr(image) else bgr_to_ycrcb(image)[:, :, 0]
    return np.ascontiguousarray(image), had_alpha


def visible_from_array(image: np.ndarray, bit_depth: int) -> VisibleImage:
    """A decoded visible frame ((H, W) or (H, W, C) BGR[A], 8- or 16-bit) split into BT.601 Y, Cr, Cb (float32,
    (H, W) each, in [0, 1]). A gray frame (one channel, or three equal channels) gives cr = cb = None."""
    image, had_alpha = _split_alpha(image)
    image = _to_unit(image, bit_depth)
    if image.ndim == 2 or _is_gray_bgr(image):
        y = image if image.ndim == 2 else image[:, :, 0]
        return VisibleImage(np.ascontiguousarray(y), None, None, bit_depth, had_alpha)
    ycrcb = bgr_to_ycrcb(image)  # (H, W, 3)
    y, cr, cb = (np.ascontiguousarray(ycrcb[:, :, c]) for c in range(3))  # 3 x (H, W)
    return VisibleImage(y, cr, cb, bit_depth, had_alpha)


def read_infrared(path: str | Path, notes: list[str] | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an infrared image as one channel: (H, W) float32 in [0, 1] (see infrared_from_array).

    Alpha is dropped, with a note added to `notes` when given (the visible's alpha gets the same note from
    VisibleImage.had_alpha).
    """
    image, had_alpha = infrared_from_array(*decode_image(Path(path), "infrared", max_pixels))
    if had_alpha and notes is not None:
        notes.append(f"alpha channel of {path} dropped")
    return image


def read_visible(path: str | Path, max_pixels: int = MAX_PIXELS) -> VisibleImage:
    """Read a visible image and split it into BT.601 Y, Cr, Cb (see visible_from_array); a gray file gives
    cr = cb = None, so its result stays gray."""
    return visible_from_array(*decode_image(Path(path), "visible", max_pixels))


def quantize(image: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float image in [0, 1] -> uint8 or uint16, clipped and rounded (no per-image stretching)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    top = 2**bit_depth - 1
    out = np.rint(np.clip(image, 0.0, 1.0) * top)
    return out.astype(np.uint8 if bit_depth == 8 else np.uint16)


def stretch_range(image: np.ndarray) -> np.ndarray:
    """One global min-max over the whole image (every colour channel together) to [0, 1], as the test scripts
    of SeAFusion, CDDFuse and EMMA write their outputs (VIF-Benchmark's tensor2img(is_norm=True)). A constant
    image is left as it is."""
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return image
    return (image - low) / (high - low)


def compose_output(y_fused: np.ndarray, visible: VisibleImage, gray_only: bool = False,
                   bit_depth: int | None = None, stretch: bool = False) -> np.ndarray:
    """Put the visible's chroma back around a fused Y and quantise once.

    y_fused (H', W') float (H', W' may be the visible's size times the model's upscale; Cr/Cb are then
    resized with bicubic interpolation). Returns (H', W', 3) BGR for a colour visible, (H', W') for a
    gray one or with gray_only, as uint8 or uint16 (bit_depth, default: the visible's). stretch: the image
    (all its channels together) min-max stretched to the full range of that bit depth before quantising.
    """
    bit_depth = bit_depth or visible.bit_depth
    y = np.clip(y_fused.astype(np.float32), 0.0, 1.0)
    if gray_only or not visible.is_color:
        return quantize(stretch_range(y) if stretch else y, bit_depth)
    cr, cb = visible.cr, visible.cb
    if cr.shape != y.shape:
        size = (y.shape[1], y.shape[0])  # cv2 sizes are (W, H)
        cr = cv2.resize(cr, size, interpolation=cv2.INTER_CUBIC)
        cb = cv2.resize(cb, size, interpolation=cv2.INTER_CUBIC)
    bgr = ycrcb_to_bgr(np.dstack([y, cr, cb]))  # 3 x (H', W') -> (H', W', 3)
    return quantize(stretch_range(np.clip(bgr, 0.0, 1.0)) if stretch else bgr, bit_depth)


def output_bit_depth(path: str | Path, requested: int | None, source: int) -> int:
    """Bit depth to write at `path`: the requested one, else the source's when the format stores it.

    A 16-bit source written as JPEG or BMP becomes 8-bit; asking for 16-bit there is an error.
    """
    suffix = Path(path).suffix.lower()
    if requested is not None:
        if requested not in (8, 16):
            raise OutputError(f"bit depth must be 8 or 16, got {requested}")
        if requested == 16 and suffix not in SIXTEEN_BIT_EXTENSIONS:
            raise OutputError(f"{path}: {suffix or 'this format'} cannot store 16-bit images; use .png or .tif")
        return requested
    return source if suffix in SIXTEEN_BIT_EXTENSIONS else 8


def _check_writable_target(path: Path) -> None:
    if path.is_dir():
        raise OutputError(f"{path}: is an existing directory, expected an output file path")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{path}: cannot create folder {parent}: a file is in the way") from None
    except OSError as e:
        raise OutputError(f"{path}: cannot create folder {parent} ({e.strerror or e})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: folder {parent} is not writable")


def temporary_name(name: str, suffix: str = "") -> str:
    """The hidden name an output `name` is written under before it is renamed to it. suffix: one the writer
    needs at the end of the name (a video encoder picks its container by the extension)."""
    return f".{name}.{uuid.uuid4().hex[:8]}.tmp{suffix}"


# What temporary_name makes; group 1: the target's name, group 2: the suffix kept (the target's own), if any.
_TEMPORARY = re.compile(r"\.(.+)\.[0-9a-f]{8}\.tmp(\.[A-Za-z0-9]+)?")


def stale_temporaries(paths) -> list[Path]:
    """Temporaries that write_bytes_atomic (or a video being encoded) left for any of `paths` when its process
    was killed (SIGKILL skips its cleanup). Each folder is listed once."""
    wanted: dict[Path, set[str]] = {}
    for p in map(Path, paths):
        wanted.setdefault(p.parent, set()).add(p.name)
    return [entry for folder, names in wanted.items() if folder.is_dir() for entry in folder.iterdir()
            if (m := _TEMPORARY.fullmatch(entry.name)) and m.group(1) in names
            and m.group(2) in (None, Path(m.group(1)).suffix)]


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same folder and os.replace.

    Readers see the old file or the complete new one, never half of it; on any error (Ctrl+C included)
    the temporary file is removed. Missing folders are created.
    """
    path = Path(path)
    _check_writable_target(path)
    # A hidden name in the target folder: os.replace is only atomic within one file system, and batch
    # pairing ignores dot-files, so a temporary left by SIGKILL is never mistaken for an output.
    tmp = path.with_name(temporary_name(path.name))
    try:
        # os.open with mode 0o666 lets the umask decide the final permissions, as a plain open() would.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, PermissionError):
            raise OutputError(f"{path}: permission denied") from None
        if isinstance(e, OSError):
            raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
        raise


def write_image_atomic(path: str | Path, array: np.ndarray) -> None:
    """Encode `array` ((H, W) gray or (H, W, 3) BGR, uint8 or uint16) by the suffix of `path` and
    write it atomically (see write_bytes_atomic)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise OutputError(f"{path}: is an existing directory, expected an output file path")
    if suffix not in READ_EXTENSIONS:
        raise OutputError(f"{path}: unsupported output format {suffix or '(no extension)'!r} "
                          "(use .png, .jpg, .bmp or .tif)")
    ok, encoded = cv2.imencode(suffix, array)
    if not ok:
        raise OutputError(f"{path}: cannot encode a {array.dtype} image of shape {array.shape} as {suffix}")
    write_bytes_atomic(path, encoded.tobytes())
