"""FuseOptions, the one record of how `fuse` and `batch` make each image and how fast: the command line makes one
option per field with the field's help, builds it once and hands it to the api; library callers pass one too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer

from swinfuse import api
from swinfuse.cli import app
from swinfuse.fusing import FuseOptions

ASSETS = Path(__file__).parent / "assets"
FIELDS = [f.name for f in dataclasses.fields(FuseOptions)]


def _params(command: str) -> dict:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}


@pytest.mark.parametrize("command", ["fuse", "batch"])
def test_every_field_is_an_option_of_both_commands_with_its_help(command):
    params = _params(command)
    for f in dataclasses.fields(FuseOptions):
        assert f.name in params, f.name
        assert params[f.name].default == f.default, f.name
        if f.metadata["help"]:  # threads and device: the option every command shares
            assert params[f.name].help == f.metadata["help"], f.name
    assert params["threads"].help == _params("profile")["threads"].help
    assert params["device"].help == _params("profile")["device"].help
    assert params["compile"].opts == ["--compile"] and not params["compile"].secondary_opts


def test_the_cli_hands_one_options_record_to_the_api(batch_arguments, tmp_path):
    from typer.testing import CliRunner

    seen = batch_arguments
    CliRunner().invoke(app, ["batch", str(tmp_path), "--gray", "--bit-depth", "16", "--resize", "--device", "cpu",
                             "--threads", "2"])
    assert seen["options"] == FuseOptions(gray=True, bit_depth=16, resize=True, device="cpu", threads=2)
    assert not set(FIELDS) & set(seen)  # the fields travel in the record, nowhere else


def test_the_batch_manifest_records_the_options_with_the_device_used(tiny_checkpoint, tmp_path):
    import json

    import torch

    report = api.fuse_batch(root=ASSETS, output_dir=tmp_path / "out", weights=tiny_checkpoint,
                            options=FuseOptions(device="auto", precision="bf16", threads=1))
    settings = json.loads(report.manifest.read_text())["settings"]
    assert {k: settings[k] for k in FIELDS} == {**dataclasses.asdict(FuseOptions(precision="bf16", threads=1)),
                                                "device": "cuda" if torch.cuda.is_available() else "cpu"}  # resolved


def test_arrays_take_the_same_options(tiny_model):
    import swinfuse

    rng = np.random.default_rng(0)
    ir = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    vis = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    whole = swinfuse.fuse(ir, vis, model=tiny_model)
    tiled = swinfuse.fuse(ir, vis, model=tiny_model, options=FuseOptions(tile=40, tile_overlap=32))
    assert tiled.shape == whole.shape and np.abs(tiled.astype(int) - whole.astype(int)).mean() < 2
    gray = swinfuse.fuse(ir, vis, model=tiny_model, options=FuseOptions(gray=True, bit_depth=16))
    assert gray.shape == (48, 64) and gray.dtype == np.uint16
    resized = swinfuse.fuse(ir[::2, ::2], vis, model=tiny_model, options=FuseOptions(resize=True))
    assert resized.shape == (48, 64, 3)
    with pytest.raises(swinfuse.SwinfuseError, match=r"sizes differ: .*resize=True"):
        swinfuse.fuse(ir[::2, ::2], vis, model=tiny_model)
