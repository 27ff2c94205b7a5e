"""swinfuse.fuse (api.fuse): arrays and tensors in memory, colour in and colour out, the same options as the
`fuse` command, one checkpoint kept between calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swinfuse.api import FuseOptions

ROOT = Path(__file__).resolve().parents[1]


def _perturb_film(model):
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "film" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model


def test_fuse_arrays_colour_in_colour_out_and_the_prompt_matters(tiny_model):
    import swinfuse

    model = _perturb_film(tiny_model)
    rng = np.random.default_rng(0)
    ir = rng.integers(0, 255, (24, 40), dtype=np.uint8)
    vis = rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)
    a = swinfuse.fuse(ir, vis, "the visible image is hazy", model=model)
    b = swinfuse.fuse(ir, vis, "stripe noise in the infrared image", model=model)
    assert a.shape == (24, 40, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() > 0  # two prompts, two fusions
    gray = swinfuse.fuse(ir, vis[:, :, 0], model=model)
    assert gray.shape == (24, 40) and gray.dtype == np.uint8
    # chroma comes from the visible: a colour channel order swap moves the result's channels with it
    rgb = swinfuse.fuse(ir, vis, model=model)
    bgr = swinfuse.fuse(ir, vis[:, :, ::-1], model=model, channel_order="bgr")
    assert np.abs(rgb.astype(int) - bgr[:, :, ::-1].astype(int)).max() <= 1


def test_fuse_tensors_keep_their_layout(tiny_model):
    import torch

    import swinfuse

    out = swinfuse.fuse(torch.rand(1, 16, 24), torch.rand(3, 16, 24), model=tiny_model)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 16, 24) and 0 <= float(out.min()) <= float(out.max()) <= 1
    assert swinfuse.fuse(torch.rand(16, 24), torch.rand(16, 24), model=tiny_model).shape == (16, 24)


def test_fuse_refuses_mismatched_inputs(tiny_model):
    import torch

    import swinfuse
    from swinfuse.errors import InputError

    with pytest.raises(InputError, match="sizes differ"):
        swinfuse.fuse(np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8), model=tiny_model)
    with pytest.raises(InputError, match="both"):
        swinfuse.fuse(np.zeros((8, 8), np.uint8), torch.zeros(8, 8), model=tiny_model)
    with pytest.raises(InputError, match="dtype"):
        swinfuse.fuse(np.zeros((8, 8), np.int32), np.zeros((8, 8), np.int32), model=tiny_model)


def test_shipped_checkpoint_applies_a_prompt_where_it_applies_and_not_elsewhere():
    import swinfuse

    weights = ROOT / "swinfuse" / "weights" / "swinfuse-default.safetensors"
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    vis = (0.5 + 0.3 * np.sin(x / 5.0)).astype(np.float32)
    ir = np.clip(0.3 + 0.4 * (np.hypot(y - 24, x - 32) < 10) + 0.05 * rng.standard_normal((48, 64)), 0, 1).astype(np.float32)
    # tone off: the cap would bring both fusions down to the brighter source's mean, hiding the brightening
    cpu = swinfuse.FuseOptions(device="cpu", tone="off")
    low_light = "the visible image is in extremely low light"
    response, brightening = {}, {}
    for name, v in (("normal", vis), ("dark", (0.08 * vis).astype(np.float32))):
        neutral = swinfuse.fuse(ir, v, "", weights=weights, options=cpu)
        assert neutral.shape == (48, 64) and neutral.dtype == np.float32
        prompted = swinfuse.fuse(ir, v, low_light, weights=weights, options=cpu)
        response[name] = float(np.abs(neutral - prompted).mean())
        brightening[name] = float(prompted.mean() - neutral.mean())
    assert brightening["dark"] > 1e-2  # the prompt brightens a visible image that is in low light
    assert response["normal"] < response["dark"] / 5  # and leaves one that is not (the prompt gate)


def test_fuse_keeps_one_loaded_checkpoint(tiny_model, tmp_path, monkeypatch):
    from swinfuse import api
    from swinfuse.model.checkpoint import save_checkpoint

    a = save_checkpoint(tiny_model, tmp_path / "a.safetensors")
    b = save_checkpoint(tiny_model, tmp_path / "b.safetensors")
    loads, real = [], api.load_model

    def counting(**kwargs):  # the real loader, counted
        loads.append(Path(kwargs["weights"]).name)
        return real(**kwargs)

    monkeypatch.setattr(api, "load_model", counting)
    monkeypatch.setattr(api, "_KEPT", {"key": None, "model": None})
    image, cpu = np.zeros((16, 16), np.uint8), api.FuseOptions(device="cpu")
    for weights in (a, a, b, b, a):
        api.fuse(image, image, weights=weights, options=cpu)
    assert loads == ["a.safetensors", "b.safetensors", "a.safetensors"]  # kept while asked for, one at a time
    save_checkpoint(tiny_model, a, {"note": "retrained"})
    api.fuse(image, image, weights=a, options=cpu)
    assert loads[-1] == "a.safetensors" and len(loads) == 4  # a rewritten file is loaded again


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


def test_fuse_refuses_what_it_cannot_fuse_with_one_message(tiny_model):
    import swinfuse
    from swinfuse.errors import InputError

    rng = np.random.default_rng(0)
    ir, vis = rng.random((16, 24)), rng.random((16, 24, 3))
    with pytest.raises(InputError, match=r"visible array is float with values in \[0\.0[0-9]*, 25[0-9.]*\]: float images "
                                         r"must be in \[0, 1\]"):
        swinfuse.fuse(ir, vis * 255, model=tiny_model)  # was an all-white image
    with pytest.raises(InputError, match=r"infrared array is float with values in \[-0\.9"):
        swinfuse.fuse(ir - 1, vis, model=tiny_model)
    with pytest.raises(InputError, match="the visible image must be a numpy array or a torch tensor, got a path"):
        swinfuse.fuse(ir, "vis.png", model=tiny_model)
    with pytest.raises(InputError, match="prompt must be one string, got list"):
        swinfuse.fuse(ir, vis, ["a", "b"], model=tiny_model)
    assert swinfuse.fuse(ir, vis, None, model=tiny_model).shape == (16, 24, 3)  # None: no instruction, as ""


def test_fuse_drops_alpha_with_a_warning_as_the_command_line_does(tiny_model):
    import swinfuse

    rng = np.random.default_rng(0)
    ir = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    vis = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    rgba = np.dstack([vis, np.full((16, 24), 255, np.uint8)])
    with pytest.warns(UserWarning, match="alpha channel of the visible dropped"):
        out = swinfuse.fuse(ir, rgba, model=tiny_model)
    np.testing.assert_array_equal(out, swinfuse.fuse(ir, vis, model=tiny_model))
    import torch

    t_ir, t_vis = torch.rand(1, 16, 24), torch.rand(3, 16, 24)
    with pytest.warns(UserWarning, match="alpha channel of the visible dropped"):
        t_out = swinfuse.fuse(t_ir, torch.cat([t_vis, torch.ones(1, 16, 24)]), model=tiny_model)
    assert torch.equal(t_out, swinfuse.fuse(t_ir, t_vis, model=tiny_model))


def test_fuse_stretch_spans_the_full_range(tiny_model):
    import swinfuse

    rng = np.random.default_rng(0)
    ir = rng.integers(40, 90, (16, 24), dtype=np.uint8)
    vis = rng.integers(40, 90, (16, 24, 3), dtype=np.uint8)
    out = swinfuse.fuse(ir, vis, model=tiny_model, options=FuseOptions(stretch=True))
    assert out.min() == 0 and out.max() == 255
    wide = swinfuse.fuse(ir, vis, model=tiny_model, options=FuseOptions(stretch=True, bit_depth=16))
    assert wide.min() == 0 and wide.max() == 65535
