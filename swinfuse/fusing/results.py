"""What fusing reports: one pair's result (FuseResult, one FusedOutput per prompt) and a batch's report
(BatchReport, one PairRecord per pair). Standard library only, so the api and the CLI can import them without
pulling in torch or OpenCV; to_dict gives their JSON (swinfuse.jsonable: NaN and inf become null)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from swinfuse.jsonable import to_jsonable


@dataclass
class FusedOutput:
    prompt: str
    path: Path
    shape: tuple[int, ...]
    bit_depth: int


@dataclass
class FuseResult:
    """Everything `swinfuse fuse` reports. latency_ms has load (reading the images), preprocess (sizes,
    tensors, prompt encoding), forward, write (colour, quantise, encode, write) and total."""

    ir_path: Path
    vis_path: Path
    ir_shape: tuple[int, ...]
    vis_shape: tuple[int, ...]
    prompts: list[str]
    outputs: list[FusedOutput]
    sheet: Path | None
    weights: Path | None
    weights_sha256: str | None
    params: int
    device: str
    upscale: int
    latency_ms: dict[str, float]
    peak_rss_mb: float
    peak_gpu_mb: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def weights_short_hash(self) -> str | None:
        return self.weights_sha256[:12] if self.weights_sha256 else None

    def to_dict(self) -> dict:
        return to_jsonable({**dataclasses.asdict(self), "weights_short_hash": self.weights_short_hash})


@dataclass
class PairRecord:
    """One pair of a batch. status is 'written', 'skipped' (output existed) or 'failed' (reason says why)."""

    rel: str
    ir: Path
    vis: Path
    output: Path
    status: str
    reason: str | None = None
    latency_ms: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    """Everything `swinfuse batch` reports: one record per pair of the shard, in sorted order, and the
    summary. pairs_found counts the whole folder; pairs_selected the shard (all of them without one)."""

    root: Path | None
    output_dir: Path
    prompt: str
    shard: str | None
    pairs_found: int
    pairs_selected: int
    written: int
    skipped: int
    failed: int
    unmatched_ir: list[Path]
    unmatched_vis: list[Path]
    duplicates: list[Path]
    mean_latency_ms: float | None
    throughput_pairs_per_s: float | None
    wall_s: float
    peak_rss_mb: float
    peak_gpu_mb: float | None
    manifest: Path
    records: list[PairRecord]
    metrics: dict | None = None  # with --metrics: per-pair records and their mean (swinfuse.metrics)

    def to_dict(self) -> dict:
        return to_jsonable(dataclasses.asdict(self))


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch, after the manifest was written for what the run had settled: report is that
    partial BatchReport (its records are the pairs settled before the interrupt). A KeyboardInterrupt, so
    code that catches those still does."""

    def __init__(self, report: BatchReport):
        super().__init__(f"batch interrupted after writing {report.written} output(s)")
        self.report = report
