"""Shared fixtures: tiny configs, tiny tensors and a tiny checkpoint written to tmp_path. Offline, fast."""

from __future__ import annotations

import json
import os
from pathlib import Path

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


def run_main(monkeypatch, capsys, args):
    """The `swinfuse` entry point (its one error map), in this process -> (exit code, captured out and err)."""
    from swinfuse.cli import main

    monkeypatch.setattr("sys.argv", ["swinfuse", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr()


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as any JSON parser but Python's does."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def asset_pair() -> tuple[Path, Path]:
    """The first infrared/visible pair of tests/assets."""
    assets = Path(__file__).parent / "assets"
    ir = sorted((assets / "ir").iterdir())[0]
    return ir, assets / "vis" / ir.name
