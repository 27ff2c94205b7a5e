"""Two prompts, two fusions, through the command line: the prompt reaches the decoder's FiLM layers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from swinfuse.cli import app

runner = CliRunner()
ASSETS = Path(__file__).parent / "assets"


def test_two_prompts_give_two_outputs_through_fuse(tiny_model, tmp_path):
    import torch

    from swinfuse.model.checkpoint import save_checkpoint

    # FiLM starts as the identity (zero last layer): give it weights, or every prompt gives the same image.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for film in tiny_model.decoder.film:
            for p in film.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    weights = save_checkpoint(tiny_model, tmp_path / "film.safetensors")
    ir = sorted((ASSETS / "ir").iterdir())[0]
    vis = ASSETS / "vis" / ir.name
    images = []
    for i, prompt in enumerate(["the visible image is hazy", "stripe noise in the infrared image",
                                "the visible image is hazy"]):
        out = tmp_path / f"out{i}.png"
        result = runner.invoke(app, ["fuse", str(ir), str(vis), "-p", prompt, "-o", str(out), "--weights",
                                     str(weights), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        images.append(cv2.imread(str(out), cv2.IMREAD_UNCHANGED).astype(int))
    hazy, stripes, hazy_again = images
    assert np.array_equal(hazy, hazy_again)  # the same prompt, the same image
    assert np.abs(hazy - stripes).mean() > 0.25  # another prompt, another image (0 with identity FiLM)
