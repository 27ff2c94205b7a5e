"""Deprecated alias of `swinfuse`, kept for one release: `import swinfuse_cli.X` gives the module `swinfuse.X`
itself (the same object, so classes and caches are shared), and `python -m swinfuse_cli` runs the CLI.
New code imports `swinfuse`."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

import swinfuse

_OLD, _NEW = __name__, "swinfuse"


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Maps `swinfuse_cli.<sub>` to the already-importable `swinfuse.<sub>`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(_OLD + ".") and fullname != _OLD + ".__main__":
            new = _NEW + fullname[len(_OLD):]
            if importlib.util.find_spec(new) is None:
                return None
            return importlib.util.spec_from_loader(fullname, self, is_package=False)
        return None

    def create_module(self, spec):
        return importlib.import_module(_NEW + spec.name[len(_OLD):])

    def exec_module(self, module):
        pass  # the swinfuse module is already executed


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())

__version__ = swinfuse.__version__


def __getattr__(name: str):
    return getattr(swinfuse, name)
