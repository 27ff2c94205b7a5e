"""The batch manifest: a small JSON record beside the outputs of what produced them (date, versions, weights
and their hash, model config and provenance, prompt, settings, summary, failures), so runs can be traced and
compared. A shard writes its own (manifest-shard-i-of-n.json), so shards sharing a folder keep theirs.

The top level describes this run; the folder may also hold outputs an earlier run made (a rerun skips them),
so the manifest records per output what made it: "made_with" lists the distinct records (weights sha256,
prompt, the settings that shape an image) and "outputs" maps each output's name (relative to the folder) to
its index there, or to null where nothing recorded what made it (the output was there before any manifest).
An older manifest without "outputs" is read as its top-level record standing for every output it covers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from swinfuse.fusing.options import IMAGE_FIELDS
from swinfuse.fusing.results import BatchReport
from swinfuse.jsonable import to_jsonable


def manifest_name(shard: tuple[int, int] | None) -> str:
    return f"manifest-shard-{shard[0]}-of-{shard[1]}.json" if shard else "manifest.json"


def _versions() -> dict[str, str]:
    import importlib.metadata
    import platform
    import sys

    import cv2
    import numpy

    from swinfuse.version import __version__

    # A run with nothing to fuse never imports torch (seconds): its installed version is the same string.
    torch_version = sys.modules["torch"].__version__ if "torch" in sys.modules else importlib.metadata.version("torch")
    return {"swinfuse": __version__, "torch": torch_version, "opencv": cv2.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def made_with(sha256: str | None, prompt: str, settings: dict) -> dict:
    """What makes an output: the weights (by hash), the prompt and the settings that shape the image (the
    options' IMAGE_FIELDS; the rest, as root or device, say where and how the run went)."""
    making = {k: settings.get(k) for k in IMAGE_FIELDS}
    making["tile"] = making["tile"] or None  # 0 and None both mean automatic
    if not making.get("stretch"):
        making.pop("stretch", None)  # off: recorded as outputs made before the option existed were, so they match
    if making.get("tone") in (None, "off"):
        making.pop("tone", None)  # the same for the tone cap: outputs made before it were the network's own
    return {"weights_sha256": sha256, "prompt": prompt, "settings": making}


def previous_records(path: Path) -> tuple[dict[str, dict | None], dict | None]:
    """The per-output records of the manifest at path, and the record an older manifest (one without them)
    gives for every output it covers (None for a current one). Nothing (({}, None)) for a manifest that is
    missing or unreadable: it cannot say what made anything."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, None
    if not isinstance(data, dict):
        return {}, None
    outputs, made = data.get("outputs"), data.get("made_with")
    if isinstance(outputs, dict) and isinstance(made, list):
        def record(i):
            return made[i] if isinstance(i, int) and 0 <= i < len(made) and isinstance(made[i], dict) else None
        return {str(name): record(i) for name, i in outputs.items()}, None
    weights, settings = data.get("weights"), data.get("settings")
    if not isinstance(weights, dict) or not isinstance(settings, dict):
        return {}, None
    return {}, made_with(weights.get("sha256"), data.get("prompt", ""), settings)


def write_manifest(path: Path, report: BatchReport, meta: dict, weights, settings: dict,
                   outputs: dict[str, dict | None] | None = None, interrupted: bool = False) -> None:
    """A small JSON record of what produced the outputs beside them, so runs can be traced and compared.
    outputs maps each output in the folder to what made it (None: unknown); interrupted marks a run stopped
    by Ctrl-C, whose summary counts the pairs settled before it."""
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
    if interrupted:
        manifest["summary"]["interrupted"] = True
    made: list[dict] = []
    index: dict[str, int] = {}
    listed: dict[str, int | None] = {}
    for name, record in sorted((outputs or {}).items()):
        if record is None:
            listed[name] = None
            continue
        key = json.dumps(to_jsonable(record), sort_keys=True)
        if key not in index:
            index[key] = len(made)
            made.append(record)
        listed[name] = index[key]
    manifest["made_with"], manifest["outputs"] = made, listed
    write_bytes_atomic(path, (json.dumps(to_jsonable(manifest), indent=2, allow_nan=False) + "\n").encode())
