"""Shared fixtures: tiny configs, tiny tensors and a tiny checkpoint written to tmp_path. Offline, fast."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("COLUMNS", "200")  # rich tables at a fixed width in CLI output


@pytest.fixture
def tiny_config():
    from swinfuse.model.config import FusionConfig, TextEncoderSpec

    return FusionConfig.smoke(upscale=1, upsampler="", use_checkpoint=False, text_dim=16,
                              text=TextEncoderSpec(width=16, layers=1, heads=2, context_length=16))


@pytest.fixture
def tiny_model(tiny_config):
    import torch

    from swinfuse.model.network import SwinFuse

    torch.manual_seed(0)
    return SwinFuse(tiny_config).eval()


@pytest.fixture
def tiny_checkpoint(tiny_model, tmp_path):
    from swinfuse.model.checkpoint import save_checkpoint

    return save_checkpoint(tiny_model, tmp_path / "tiny.safetensors", {"note": "random weights, for tests"})


@pytest.fixture
def batch_arguments(monkeypatch):
    """api.fuse_batch replaced by a recorder: the dict fills with the keyword arguments the CLI passed, and the
    call stops there (ConfigError), so nothing is fused."""
    from swinfuse import api

    seen = {}

    def record(**kwargs):
        seen.update(kwargs)
        raise api.ConfigError("stop here")

    monkeypatch.setattr(api, "fuse_batch", record)
    return seen
