"""A swinfuse checkpoint read without torch: the metadata in its safetensors header (a little-endian u64 length,
then that many bytes of JSON whose "__metadata__" holds string values) and the file's sha256. What a batch with
nothing to fuse records in its manifest; swinfuse.model.checkpoint loads the weights."""

from __future__ import annotations

import hashlib
import json
import os

FORMAT = "swinfuse"
FORMAT_VERSION = "1"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def header_metadata(path: str | os.PathLike) -> dict | None:
    """The string metadata of a swinfuse checkpoint's header; None when the file is not one of this format
    version (load_checkpoint then says what is wrong)."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < 100_000_000:
                return None
            meta = json.loads(f.read(size)).get("__metadata__")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        return None
    return meta
