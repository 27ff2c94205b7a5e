"""What `swinfuse video` and `swinfuse evaluate --video` report. Standard library only, so the CLI imports these
without torch or OpenCV; to_dict gives their JSON (swinfuse.jsonable: NaN and inf become null)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from swinfuse.jsonable import to_jsonable


@dataclass
class VideoReport:
    """Everything `swinfuse video` reports. frames: written; planned: the pairs the run set out to fuse.
    start: the first visible frame fused; ir_offset in infrared frames. latency_ms: means per frame of decode
    (both sources, colour split, resize), forward, and write (smoothing, colour, measures, encode). temporal:
    flicker and warping error of the output and of the sources (swinfuse.metrics.temporal), or None."""

    ir: Path
    vis: Path
    output: Path | None  # None when interrupted (see partial)
    kind: str  # 'video' or 'frames'
    codec: str | None
    frames: int
    planned: int
    start: int
    ir_offset: int
    fps_in: dict[str, float | None]
    fps_out: float
    size_in: tuple[int, int]
    size_out: tuple[int, int]
    prompt: str
    weights: Path | None
    weights_sha256: str | None
    device: str
    latency_ms: dict[str, float | None]
    wall_s: float
    throughput_fps: float | None
    peak_rss_mb: float
    peak_gpu_mb: float | None
    temporal: dict | None
    temporal_smoothing: float = 0.0
    interrupted: bool = False
    partial: Path | None = None  # interrupted: the playable partial output kept, if any
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return to_jsonable(dataclasses.asdict(self))


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C during `swinfuse video`, after the frames already fused were written and the output closed:
    report.partial is the playable partial file kept (None: no frame was written, nothing kept). A
    KeyboardInterrupt, so code that catches those still does."""

    def __init__(self, report: VideoReport):
        kept = f", kept as {report.partial}" if report.partial else ", nothing kept"
        super().__init__(f"video interrupted after {report.frames} frame(s){kept}")
        self.report = report


@dataclass
class VideoEvaluation:
    """`swinfuse evaluate --video`: the temporal measures of fused frames against their sources."""

    fused: Path
    ir: Path
    vis: Path
    frames: int
    start: int
    ir_offset: int
    temporal: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return to_jsonable(dataclasses.asdict(self))
