"""--tile, --tile-overlap, --precision, --compile, --threads and --device on `fuse` and `batch`: the CLI passes
them on, tiles and bf16 give the same image within tolerance, fp16 on a CPU is one exact error line, the
manifest records the device used, and the library leaves process-wide tuning to the command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from swinfuse import api
from swinfuse.api import FuseOptions
from swinfuse.cli import app, main

runner = CliRunner()
ASSETS = Path(__file__).parent / "assets"


def _pair():
    ir = sorted((ASSETS / "ir").iterdir())[0]
    return ir, ASSETS / "vis" / ir.name


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def _fuse(tmp_path, checkpoint, name, *options):
    ir, vis = _pair()
    out = tmp_path / f"{name}.png"
    result = runner.invoke(app, ["fuse", str(ir), str(vis), "-o", str(out), "--weights", str(checkpoint),
                                 "--device", "cpu", "--json", *options])
    assert result.exit_code == 0, result.output
    return cv2.imread(str(out), cv2.IMREAD_UNCHANGED), json.loads(result.stdout)


def test_tiles_give_the_same_image(tiny_checkpoint, tmp_path):
    whole, _ = _fuse(tmp_path, tiny_checkpoint, "whole")
    tiled, _ = _fuse(tmp_path, tiny_checkpoint, "tiled", "--tile", "24", "--tile-overlap", "16")
    assert tiled.shape == whole.shape
    assert _psnr(tiled, whole) >= 40  # 8-bit outputs: a few one-level roundings differ at most


def test_bf16_is_close_to_fp32(tiny_checkpoint, tmp_path):
    fp32, _ = _fuse(tmp_path, tiny_checkpoint, "fp32")
    bf16, _ = _fuse(tmp_path, tiny_checkpoint, "bf16", "--precision", "bf16")
    assert _psnr(bf16, fp32) >= 30


def test_fp16_on_cpu_is_one_error_line(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    ir, vis = _pair()
    monkeypatch.setattr("sys.argv", ["swinfuse", "fuse", str(ir), str(vis), "-o", str(tmp_path / "x.png"),
                                     "--weights", str(tiny_checkpoint), "--device", "cpu", "--precision", "fp16"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "Error: --precision fp16 needs a CUDA device; on CPU use bf16 or fp32\n"
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("command", ["fuse", "batch"])
def test_speed_options_reach_the_api(command, monkeypatch, tmp_path):
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        raise api.ConfigError("stop here")
    monkeypatch.setattr(api, "fuse_pair" if command == "fuse" else "fuse_batch", fake)
    ir, vis = _pair()
    args = [str(ir), str(vis)] if command == "fuse" else [str(ASSETS)]
    runner.invoke(app, [command, *args, "--tile", "256", "--tile-overlap", "24", "--precision", "bf16",
                        "--compile", "--threads", "1"])
    options = seen["options"]  # one FuseOptions, built once by the command
    assert {k: getattr(options, k) for k in ("tile", "tile_overlap", "precision", "compile", "threads")} == \
        {"tile": 256, "tile_overlap": 24, "precision": "bf16", "compile": True, "threads": 1}


def test_batch_with_tiles_and_bf16(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(ASSETS), "-o", str(out), "--weights", str(tiny_checkpoint), "--json",
                                 "--device", "cpu", "--tile", "24", "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["written"] == data["pairs_found"] > 0


def test_compile_compiles_the_image_path_layer_norms(tiny_checkpoint):
    """--compile puts the image path's LayerNorms (not the text encoder's) under torch.compile, and the fused
    output stays what eager computes, at two sizes (shapes are dynamic)."""
    import torch
    from torch import nn

    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.model.network import compile_layer_norms

    eager, _ = load_checkpoint(tiny_checkpoint)
    compiled, _ = load_checkpoint(tiny_checkpoint)
    norms = [n for n, m in compiled.named_modules() if isinstance(m, nn.LayerNorm) and not n.startswith("text_encoder")]
    assert compile_layer_norms(compiled.eval()) == len(norms) > 0
    assert all(compiled.get_submodule(n)._compiled_call_impl is not None for n in norms)
    assert not any(getattr(m, "_compiled_call_impl", None) for m in compiled.text_encoder.modules())
    torch.manual_seed(0)
    with torch.inference_mode():
        for H, W in [(24, 40), (35, 17)]:
            ir, vis = torch.rand(1, 1, H, W), torch.rand(1, 1, H, W)
            torch.testing.assert_close(compiled(ir, vis, "a prompt"), eager.eval()(ir, vis, "a prompt"),
                                       atol=1e-5, rtol=0)


def test_the_library_leaves_process_tuning_to_the_command(tiny_checkpoint, tmp_path, monkeypatch):
    # mallopt and huge pages are process-wide: a notebook that imports swinfuse keeps its allocator.
    import numpy as np

    import swinfuse
    from swinfuse import devices

    calls = []
    monkeypatch.setattr(devices, "tune_cpu_allocator", lambda: calls.append("allocator"))
    monkeypatch.setattr(devices, "tune_process", lambda: calls.append("process"))
    ir, vis = _pair()
    api.profile_model(preset="smoke", sizes=["16"], warmup=0, repetitions=1, device="cpu")
    cpu = FuseOptions(device="cpu")
    api.fuse_pair(ir=ir, vis=vis, prompts=[""], output=tmp_path / "one.png", weights=tiny_checkpoint, options=cpu)
    api.fuse_batch(root=ASSETS, output_dir=tmp_path / "batch", weights=tiny_checkpoint, options=cpu)
    swinfuse.fuse(np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8), "", weights=tiny_checkpoint,
                  options=cpu)
    assert calls == []


def test_a_tiled_fuse_reports_its_progress_tile_by_tile(tiny_checkpoint, tmp_path):
    from swinfuse import api

    ir, vis = _pair()
    seen = []
    api.fuse_pair(ir=ir, vis=vis, prompts=["a", "b"], output=tmp_path / "out", weights=tiny_checkpoint,
                  options=FuseOptions(device="cpu", tile=24, tile_overlap=16),
                  progress=lambda done, total: seen.append((done, total)))
    total = seen[0][1]
    assert total > 1 and seen == [(k, total) for k in range(1, total + 1)] * 2  # every tile, for each prompt
    seen.clear()
    api.fuse_pair(ir=ir, vis=vis, prompts=["a"], output=tmp_path / "whole.png", weights=tiny_checkpoint,
                  options=FuseOptions(device="cpu"), progress=lambda done, total: seen.append((done, total)))
    assert seen == []  # a frame fused whole has no tiles to report


def test_the_batch_manifest_records_the_options_with_the_device_used(tiny_checkpoint, tmp_path):
    import torch

    report = api.fuse_batch(root=ASSETS, output_dir=tmp_path / "out", weights=tiny_checkpoint,
                            options=FuseOptions(device="auto", precision="bf16", threads=1))
    settings = json.loads(report.manifest.read_text())["settings"]
    fields = [f.name for f in dataclasses.fields(FuseOptions)]
    assert {k: settings[k] for k in fields} == {**dataclasses.asdict(FuseOptions(precision="bf16", threads=1)),
                                                "device": "cuda" if torch.cuda.is_available() else "cpu"}  # resolved
