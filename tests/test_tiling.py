"""Tiled fusion: tiles cover the frame, are window multiples, blend without seams (PSNR vs the whole-frame
forward), work with upscaling, and fall back to smaller tiles on out-of-memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from swinfuse import tiling


def _model(upscale=1, upsampler="", **fields):
    from swinfuse.model.config import FusionConfig, TextEncoderSpec
    from swinfuse.model.network import SwinFuse

    cfg = FusionConfig.smoke(upscale=upscale, upsampler=upsampler, use_checkpoint=False, text_dim=16,
                             text=TextEncoderSpec(width=16, layers=1, heads=2, context_length=16), **fields)
    torch.manual_seed(0)
    return SwinFuse(cfg).eval()


def _pair(H, W, B=1):
    g = torch.Generator().manual_seed(0)
    smooth = lambda: F.interpolate(torch.rand(B, 1, H // 4, W // 4, generator=g), size=(H, W), mode="bilinear")
    return smooth(), smooth()


def _psnr(a, b):
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).square().mean()
    return float(10 * torch.log10(1 / mse))


@pytest.mark.parametrize("H, W, tile, overlap", [(40, 56, 16, 8), (37, 61, 16, 4), (16, 16, 16, 8), (10, 70, 24, 8),
                                               (37, 61, 20, 6)])
def test_tiles_cover_the_frame_start_on_windows_and_overlap(H, W, tile, overlap):
    boxes = tiling.plan_tiles(H, W, tile, overlap, window=4)
    covered = torch.zeros(H, W, dtype=torch.int)
    for top, left, h, w in boxes:
        assert h <= tile and w <= tile
        assert top % 4 == 0 and left % 4 == 0  # the whole frame's windows, so tiles differ only at their edges
        assert (h % 4 == 0 or top + h == H) and (w % 4 == 0 or left + w == W)
        assert top + h <= H and left + w <= W
        covered[top:top + h, left:left + w] += 1
    assert (covered > 0).all()
    for axis, side in ((0, 2), (1, 3)):  # neighbours overlap by at least `overlap`
        spans = sorted({(b[axis], b[side]) for b in boxes})
        assert all(s1 <= s0 + n0 - overlap for (s0, n0), (s1, _) in zip(spans, spans[1:]))


def test_tiles_are_balanced_so_little_is_fused_twice():
    boxes = tiling.plan_tiles(2160, 3840, 1024, 32, window=8)
    assert len(boxes) == 12 and max(max(b[2], b[3]) for b in boxes) <= 1024
    extra = sum(h * w for _, _, h, w in boxes) / (2160 * 3840) - 1
    assert extra < 0.07  # full 1024-pixel tiles flush with the frame's end would fuse 52 % extra


def test_tile_rounds_down_to_the_window():
    assert {b[2] for b in tiling.plan_tiles(64, 64, 18, 4, window=8)} == {16}


def test_weights_are_one_inside_and_ramp_only_towards_neighbours():
    w = tiling.tile_weights((0, 0, 16, 16), 40, 56, overlap=8)  # top-left tile: neighbours right and below
    assert w[0, 0] == 1 and w[7, 7] == 1
    assert w[15, 0] < 1e-3 and w[0, 15] < 1e-3 and (w > 0).all()


def test_tiled_matches_whole_frame():
    model = _model()
    ir, vis = _pair(40, 56)
    text = torch.zeros(1, 16)
    with torch.inference_mode():
        whole = model(ir, vis, text)
        tiled = tiling.fuse_tiled(model, ir, vis, text, tile=16, overlap=8)
    assert tiled.shape == whole.shape
    assert _psnr(tiled, whole) >= 45


def test_tiled_matches_whole_frame_with_a_strided_patch_embedding():
    model = _model(patch_size=2, detail_dim=8)
    ir, vis = _pair(64, 112)
    text = torch.zeros(1, 16)
    with torch.inference_mode():
        frame = tiling.fuse_frame(model, ir, vis, text, tile=44)  # rounded to window x patch = 8: 40, overlap 32
        whole = model(ir, vis, text)
    assert frame.tiles > 1 and frame.image.shape == whole.shape
    assert _psnr(frame.image, whole) >= 40


def test_tiles_of_a_mixed_base_model_share_the_frame_base():
    """Each tile's base is read with the whole frame's means: with the head at zero the tiled fusion is the
    frame's base exactly (with each tile's own means it would differ, the frame being brighter on one side)."""
    from swinfuse.model.network import frame_means, mixed_base

    model = _model(output="mixed-base")
    last = model.decoder.head.body[-1]
    torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)
    ir, vis = _pair(40, 56)
    ir = ir * torch.linspace(0.2, 1.0, 56)  # brighter to the right: the tiles' own means differ from the frame's
    text = torch.zeros(1, 16)
    with torch.inference_mode():
        tiled = tiling.fuse_tiled(model, ir, vis, text, tile=16, overlap=8)
    torch.testing.assert_close(tiled, mixed_base(ir, vis, frame_means(ir, vis)))


def test_tiled_with_upscale_and_a_batch():
    model = _model(upscale=2, upsampler="pixelshuffledirect")
    ir, vis = _pair(40, 56, B=2)
    text = torch.zeros(2, 16)
    with torch.inference_mode():
        whole = model(ir, vis, text)
        tiled = tiling.fuse_tiled(model, ir, vis, text, tile=32, overlap=12)
    assert tiled.shape == (2, 1, 80, 112)
    assert _psnr(tiled, whole) >= 45


def test_auto_tiles_only_beyond_the_budget():
    model = _model()
    cfg = model.config
    per_pixel = tiling.bytes_per_pixel(cfg)
    assert tiling.auto_tile(40, 56, 1, cfg, "cpu", budget=int(per_pixel * 40 * 56) + 1) == 0
    tile = tiling.auto_tile(40, 56, 1, cfg, "cpu", budget=int(per_pixel * 20 * 20))
    assert 0 < tile <= 20 and tile % cfg.window_size == 0
    ir, vis = _pair(40, 56)
    with torch.inference_mode():
        frame = tiling.fuse_frame(model, ir, vis, torch.zeros(1, 16), tile=0, budget=int(per_pixel * 24 * 24))
    assert frame.tiles > 1 and frame.tile % 4 == 0 and "memory budget" in frame.notes[0]


def test_out_of_memory_retries_with_smaller_tiles():
    model = _model()
    forward = model.forward

    def limited(ir, vis, text):  # a device that holds at most 20x20 pixels
        if ir.shape[-2] * ir.shape[-1] > 20 * 20:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(ir, vis, text)
    model.forward = limited
    ir, vis = _pair(40, 56)
    with torch.inference_mode():
        frame = tiling.fuse_frame(model, ir, vis, torch.zeros(1, 16), tile=None)
    assert frame.image.shape == (1, 1, 40, 56) and frame.tile <= 20
    assert any("out of memory" in n and "retried" in n for n in frame.notes)


def _deep_model():
    """The shipped model's depths (2 Ex, 2 Fusion, 2 + 2 Re blocks) at window 4, random weights: its edge effects
    reach further than the smoke model's, so it tells a sufficient overlap from an insufficient one."""
    from swinfuse.model.config import FusionConfig, TextEncoderSpec
    from swinfuse.model.network import SwinFuse

    cfg = FusionConfig.smoke(upscale=1, upsampler="", use_checkpoint=False, text_dim=16, ex_depths=(2,),
                             fusion_depths=(2,), re_depths=(2, 2), re_num_heads=(1, 1),
                             text=TextEncoderSpec(width=16, layers=1, heads=2, context_length=16))
    torch.manual_seed(0)
    return SwinFuse(cfg).eval()


@pytest.mark.parametrize("tile", [20, 23, 24, 32, 48])
def test_every_accepted_tile_size_blends_without_seams(tile):
    # 20 is the smallest tile a window-4 model accepts (tiling.min_tile: four windows of overlap and one between)
    model = _deep_model()
    ir, vis = _pair(40, 56)
    text = torch.zeros(1, 16)
    with torch.inference_mode():
        whole = model(ir, vis, text)
        frame = tiling.fuse_frame(model, ir, vis, text, tile=tile)
    assert frame.tiles > 1 and _psnr(frame.image, whole) >= 45
    assert frame.notes == [f"fused in {frame.tiles} tiles of at most {frame.tile}×{frame.tile} pixels, "
                           f"overlapping by {frame.overlap}"]


@pytest.mark.parametrize("tile, overlap, message", [
    (-8, None, "--tile must be >= 0 (0: automatic), got -8"),
    (7, None, "--tile 7 is too small to blend tiles without seams: the minimum is 20"),
    (19, None, "--tile 19 is too small to blend tiles without seams: the minimum is 20"),
    (24, 8, "--tile-overlap 8 is too small to blend tiles without seams: the minimum is 16"),
    (24, 100, "--tile-overlap 100 does not fit --tile 24: at most 20"),
])
def test_tiles_that_cannot_blend_are_refused_in_one_line(tile, overlap, message):
    from swinfuse.errors import ConfigError

    model = _model()
    ir, vis = _pair(40, 56)
    with pytest.raises(ConfigError) as info:
        tiling.fuse_frame(model, ir, vis, torch.zeros(1, 16), tile=tile, overlap=overlap)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_4k_frame_is_tiled_on_a_cpu_however_much_memory_is_free(monkeypatch):
    # tiles of MAX_AUTO_TILE are faster there than one large forward, and lighter (benchmarks/RESULTS.md)
    import types

    import psutil

    from swinfuse.model.config import FusionConfig

    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(available=512 << 30))
    cfg = FusionConfig.preset("default")
    assert tiling.memory_budget("cpu") == tiling.CPU_WHOLE_FRAME_BYTES
    assert tiling.auto_tile(2160, 3840, 1, cfg, "cpu") == tiling.MAX_AUTO_TILE
    assert tiling.auto_tile(1080, 1920, 1, cfg, "cpu") == 0  # a 1080p frame stays whole
    monkeypatch.setattr(psutil, "virtual_memory", lambda: types.SimpleNamespace(available=1 << 30))
    assert tiling.memory_budget("cpu") == int(tiling.BUDGET_FRACTION * (1 << 30))  # little free memory rules


def _gated_model():
    """A gated model whose gate depends on the image (the new gate starts at a constant) and whose prompt path
    does something."""
    model = _model(prompt_gate=True)
    torch.manual_seed(1)
    for film in model.decoder.film:
        torch.nn.init.normal_(film.to_film[-1].weight, std=0.5)
    torch.nn.init.normal_(model.gate.net[-1].weight, std=2.0)
    torch.nn.init.zeros_(model.gate.net[-1].bias)
    return model


def test_a_gated_model_fused_in_tiles_applies_one_gate_read_from_the_frame_centre():
    model = _gated_model()
    ir, vis = _pair(40, 72)
    vis[..., 36:] = (vis[..., 36:] + 0.3 * torch.rand(1, 1, 40, 36, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    text = model.encode_prompts(["the visible image is noisy"])
    seen = []
    forward = model.forward

    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        seen.append(float(model.last_gate))
        return out

    with torch.inference_mode():
        own = [float(model.prompt_gate(ir[..., :, :24], vis[..., :, :24], text)),
               float(model.prompt_gate(ir[..., :, -24:], vis[..., :, -24:], text))]
        centre = float(model.prompt_gate(ir[..., 8:32, 24:48], vis[..., 8:32, 24:48], text))
        model.forward = spy
        tiling.fuse_tiled(model, ir, vis, text, tile=24, overlap=8)
    assert abs(own[0] - own[1]) > 1e-3  # tiles on their own would apply the prompt differently
    assert len(seen) > 1 and max(seen) - min(seen) < 1e-6  # every tile got the same gate: the centre crop's
    assert seen[0] == pytest.approx(centre, abs=1e-6)


def test_a_given_gate_replaces_the_computed_one():
    from swinfuse.errors import ConfigError
    from swinfuse.model.gate import REFERENCE_PROMPT

    model = _gated_model()
    ir, vis = _pair(24, 32)
    prompt = "the visible image is noisy"
    with torch.inference_mode():
        own = model(ir, vis, prompt)
        g = model.prompt_gate(ir, vis, prompt)
        assert torch.allclose(model(ir, vis, prompt, gate=g), own, atol=1e-6)
        assert torch.allclose(model(ir, vis, prompt, gate=0.0), model(ir, vis, REFERENCE_PROMPT), atol=1e-6)
        assert float((model(ir, vis, prompt, gate=1.0) - own).abs().max()) > 1e-4
        with pytest.raises(ConfigError, match="no prompt gate"):
            _model()(ir, vis, prompt, gate=0.5)
