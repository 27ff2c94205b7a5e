"""The batch manifest: a small JSON record beside the outputs of what produced them (date, versions, weights
and their hash, model config and provenance, prompt, settings, summary, failures), so runs can be traced and
compared. A shard writes its own (manifest-shard-i-of-n.json), so shards sharing a folder keep theirs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from swinfuse.fusing.results import BatchReport
from swinfuse.jsonable import to_jsonable


def manifest_name(shard: tuple[int, int] | None) -> str:
    return f"manifest-shard-{shard[0]}-of-{shard[1]}.json" if shard else "manifest.json"


def _versions() -> dict[str, str]:
    import platform

    import cv2
    import numpy
    import torch

    from swinfuse import __version__
    return {"swinfuse": __version__, "torch": torch.__version__, "opencv": cv2.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def write_manifest(path: Path, report: BatchReport, meta: dict, weights, settings: dict) -> None:
    """A small JSON record of what produced the outputs beside them, so runs can be traced and compared."""
    from datetime import datetime, timezone

    from swinfuse.data.io import write_bytes_atomic
    config = meta.get("config")
    manifest = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "weights": {"path": weights or meta.get("path"), "sha256": meta.get("sha256")},
        "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config,
        "provenance": meta.get("provenance"),
        "prompt": report.prompt,
        "settings": settings,
        "summary": {k: getattr(report, k) for k in ("pairs_found", "pairs_selected", "written", "skipped",
                                                     "failed", "mean_latency_ms", "throughput_pairs_per_s")},
        "failed": [{"rel": r.rel, "reason": r.reason} for r in report.records if r.status == "failed"],
    }
    write_bytes_atomic(path, (json.dumps(to_jsonable(manifest), indent=2, allow_nan=False) + "\n").encode())
