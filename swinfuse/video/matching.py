"""Which infrared frame goes with which visible frame: the frame rates and lengths checked, and the user's
offset, trim, rate matching and range applied. Pure arithmetic (no decoding), so every refusal comes before
any work, naming both values and the option that resolves it.

The output follows the visible: its frame rate, and one output frame per visible frame fused. Visible frame i
pairs with infrared frame i + offset (the same rate), or with the infrared frame nearest its time plus the
offset (--match-rate, when rates differ).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from swinfuse.errors import ConfigError, InputError

RATE_TOLERANCE = 1e-3  # relative: 29.97 and 30 differ, 30 and 30.00003 (a container's rounding) do not


def _ir(vis_index: int, ratio: float, offset: int) -> int:
    """The infrared frame for a visible frame: the same index, or the nearest in time, plus the offset."""
    return (vis_index if ratio == 1.0 else int(round(vis_index * ratio))) + offset


@dataclass(frozen=True)
class PairPlan:
    """Output frame k fuses visible frame vis_first + k with infrared frame ir_index(vis_first + k)."""

    vis_first: int
    count: int
    offset: int  # infrared frames
    rate_ratio: float  # infrared fps / visible fps (1 when they are equal or unknown)
    notes: tuple[str, ...] = ()

    def ir_index(self, vis_index: int) -> int:
        return _ir(vis_index, self.rate_ratio, self.offset)

    def vis_indices(self) -> range:
        return range(self.vis_first, self.vis_first + self.count)

    def ir_indices(self):
        return (self.ir_index(i) for i in self.vis_indices())


def parse_offset(text: str | int | None, ir_fps: float | None) -> int:
    """'--ir-offset' in infrared frames: '12' or '-3' (frames), '0.5s' or '-40ms' (time, at the infrared's
    rate, rounded to the nearest frame)."""
    if text is None or text == "":
        return 0
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*(s|ms)?\s*", str(text))
    if not m:
        raise ConfigError(f"--ir-offset takes frames (12, -3) or a time (0.5s, -40ms), got {text!r}")
    value, unit = m.groups()
    if unit is None:
        if not re.fullmatch(r"[+-]?\d+", value):
            raise ConfigError(f"--ir-offset {text}: a frame offset is a whole number (or give a time: {text}s)")
        return int(value)
    if ir_fps is None:
        raise ConfigError(f"--ir-offset {text}: a time offset needs the infrared's frame rate, and a folder of "
                          "frames has none; give the offset in frames")
    seconds = float(value) / (1000 if unit == "ms" else 1)
    return int(round(seconds * ir_fps))


def _rates_differ(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) > RATE_TOLERANCE * max(a, b)


def _fps(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + " fps"


def plan_pairs(*, ir_count: int, vis_count: int, ir_fps: float | None, vis_fps: float | None, offset: int = 0,
               trim: bool = False, match_rate: bool = False, start: int = 0, frames: int | None = None,
               ir_name: str = "infrared", vis_name: str = "visible") -> PairPlan:
    """The pairs to fuse. Refused (InputError, one line naming both values and the way out): frame rates that
    differ without match_rate, lengths that differ (after the offset) without trim, a start past the end.
    start and frames count output frames (pairs), after the offset."""
    if start < 0 or (frames is not None and frames < 1):
        raise ConfigError(f"--start must be >= 0 and --frames >= 1, got {start} and {frames}")
    notes = []
    ratio = 1.0
    if _rates_differ(ir_fps, vis_fps):
        if not match_rate:
            raise InputError(f"frame rates differ: {ir_name} is {_fps(ir_fps)}, {vis_name} is {_fps(vis_fps)}; "
                             f"--match-rate pairs each visible frame with the infrared frame nearest in time "
                             f"(the output keeps the visible's {_fps(vis_fps)})")
        ratio = ir_fps / vis_fps
        notes.append(f"frame rates differ ({_fps(ir_fps)} infrared, {_fps(vis_fps)} visible): each visible frame "
                     "is paired with the infrared frame nearest in time")
    # Visible frames whose infrared partner exists: i >= first (offset < 0 drops the visible's head) and
    # i < end (either stream running out).
    first = 0
    while first < vis_count and _ir(first, ratio, offset) < 0:
        first += 1
    end = first
    if ratio == 1.0:
        end = max(first, min(vis_count, ir_count - offset))
    else:
        while end < vis_count and _ir(end, ratio, offset) < ir_count:
            end += 1
    shared = end - first
    if shared <= 0:
        raise InputError(f"no frames to pair: {ir_name} has {ir_count} frames, {vis_name} {vis_count}, and "
                         f"--ir-offset {offset} leaves none in common")
    # Lengths: without --trim both streams must end together (at their own rates, within one frame).
    vis_left = vis_count - end  # visible frames after the last pair
    ir_left = ir_count - 1 - _ir(end - 1, ratio, offset)  # infrared frames after the last pair's
    if (vis_left > 0 or ir_left > max(0, round(ratio) - 1)) and not trim:
        vis_len = f"{vis_count} frames" + (f" ({vis_count / vis_fps:.2f} s)" if vis_fps else "")
        ir_len = f"{ir_count} frames" + (f" ({ir_count / ir_fps:.2f} s)" if ir_fps else "")
        after = f" after --ir-offset {offset}" if offset else ""
        raise InputError(f"lengths differ: {ir_name} has {ir_len}, {vis_name} has {vis_len}{after}; --trim fuses "
                         f"the {shared} frames they share")
    if vis_left > 0 or ir_left > 0:
        notes.append(f"trimmed to the {shared} frames both streams have ({vis_left} visible and {ir_left} "
                     "infrared frames left out at the end)")
    if first:
        notes.append(f"the visible's first {first} frames have no infrared frame (--ir-offset {offset}) and are "
                     "left out")
    if start >= shared:
        raise InputError(f"--start {start} is past the end: the inputs pair into {shared} frames (0 to {shared - 1})")
    count = shared - start if frames is None else min(frames, shared - start)
    if frames is not None and frames > count:
        notes.append(f"--frames {frames}: only {count} frames from --start {start}")
    return PairPlan(first + start, count, offset, ratio, tuple(notes))
