"""The one conversion of results to JSON: dataclasses to dicts, paths to strings, tuples to lists, and
NaN/inf to null (Qabf of a flat image is NaN; `json.dumps` would print `NaN`, which is not JSON).

Standard library only, so every module (fusing, metrics, render) can use it without importing rich or torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any


def to_jsonable(value: Any, *, digits: int | None = None) -> Any:
    """A structure json.dumps takes with allow_nan=False; floats rounded to `digits` when given."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value), digits=digits)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, digits=digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, digits=digits) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float) or type(value).__name__.startswith("float"):  # numpy floats too
        value = float(value)
        if not math.isfinite(value):
            return None
        return round(value, digits) if digits is not None else value
    if hasattr(value, "item") and callable(value.item):  # numpy integer / bool scalars
        return to_jsonable(value.item(), digits=digits)
    return value


def dumps(value: Any, *, digits: int | None = None, indent: int | None = 2) -> str:
    """Strict JSON text: a NaN that slipped through raises instead of printing `NaN`."""
    return json.dumps(to_jsonable(value, digits=digits), indent=indent, allow_nan=False)
