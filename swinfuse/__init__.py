"""swinfuse: text-guided infrared-visible image fusion (SwinFusion encoders + Text-IF prompt modulation).

The public face, loaded lazily (importing `swinfuse` imports no torch; `swinfuse --help` stays instant):

    import swinfuse
    fused = swinfuse.fuse(ir, vis, "the visible image is in extremely low light")  # arrays or tensors
    from swinfuse.api import default_weights_path
    model, meta = swinfuse.load_checkpoint(default_weights_path())  # the shipped checkpoint, as a SwinFuse

`fuse_pair`, `fuse_batch`, `fuse_video`, `profile`, `summarize`, `evaluate` (`evaluate_video`) and `train` are
the library functions behind the commands; `SwinFuse` and `FusionConfig` the network and its configuration.
"""

from __future__ import annotations

import importlib

from swinfuse.version import __version__

_PUBLIC = {
    "SwinFuse": ("swinfuse.model.network", "SwinFuse"),
    "FusionConfig": ("swinfuse.model.config", "FusionConfig"),
    "TextEncoderSpec": ("swinfuse.model.config", "TextEncoderSpec"),
    "load_checkpoint": ("swinfuse.model.checkpoint", "load_checkpoint"),
    "save_checkpoint": ("swinfuse.model.checkpoint", "save_checkpoint"),
    "fuse": ("swinfuse.api", "fuse"),
    "fuse_pair": ("swinfuse.api", "fuse_pair"),
    "fuse_batch": ("swinfuse.api", "fuse_batch"),
    "fuse_video": ("swinfuse.api", "fuse_video"),
    "evaluate_video": ("swinfuse.api", "evaluate_video"),
    "profile": ("swinfuse.api", "profile_model"),
    "summarize": ("swinfuse.api", "summarize_model"),
    "evaluate": ("swinfuse.api", "evaluate"),
    "train": ("swinfuse.api", "train"),
    "TrainArgs": ("swinfuse.training.args", "TrainArgs"),
    "TrainResult": ("swinfuse.training.args", "TrainResult"),
    "FuseOptions": ("swinfuse.api", "FuseOptions"),
    "SwinfuseError": ("swinfuse.errors", "SwinfuseError"),
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        module, attr = _PUBLIC[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module 'swinfuse' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
