"""A few modules of a heavy package, loaded without the package's __init__.

open_clip's __init__ imports every model family, timm and torchvision; timm's imports torchvision (which
imports torch._dynamo): 2-3 s of a cold `swinfuse fuse`, for a model that needs a BPE tokenizer, a text
transformer, DropPath, Mlp and trunc_normal_. Those live in files that import torch and the standard library
only, so they are loaded from the package's folder as submodules of a private package (their relative imports
resolve there). Once the package itself is imported (a pretrained CLIP encoder imports open_clip), its own
modules are used instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

_PRIVATE = "swinfuse._light"


def _forward(package: str, module: str, name: str):
    """A function that calls package.module.name, importing the real module (and its package) on first call."""
    def call(*args, **kwargs):
        return getattr(importlib.import_module(f"{package}.{module}"), name)(*args, **kwargs)
    call.__name__ = name
    return call


def light_import(package: str, module: str, forwarded: dict[str, tuple[str, ...]] | None = None) -> types.ModuleType:
    """package.module, without running package's __init__ when the package is not imported yet.

    forwarded: {sibling module: (names, ...)} that module imports from a sibling which is itself heavy; they are
    stood in for by functions that import the real sibling when first called (the parts used never call them)."""
    if package in sys.modules:
        return importlib.import_module(f"{package}.{module}")
    private = f"{_PRIVATE}.{package.replace('.', '_')}"
    if private not in sys.modules:
        top, *rest = package.split(".")
        spec = importlib.util.find_spec(top)  # finds the folder; runs nothing
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(f"{top} is not installed")
        holder = types.ModuleType(private)
        holder.__path__ = [os.path.join(spec.submodule_search_locations[0], *rest)]
        sys.modules.setdefault(_PRIVATE, types.ModuleType(_PRIVATE)).__path__ = []
        sys.modules[private] = holder
    for sibling, names in (forwarded or {}).items():
        stand_in = sys.modules.setdefault(f"{private}.{sibling}", types.ModuleType(f"{private}.{sibling}"))
        for name in names:
            if not hasattr(stand_in, name):
                setattr(stand_in, name, _forward(package, sibling, name))
    try:
        return importlib.import_module(f"{private}.{module}")
    except ImportError:  # a release that moved these files or made them import more: the package as it is
        return importlib.import_module(f"{package}.{module}")
