import dataclasses
import json

import pytest
import torch

from swinfuse.errors import ConfigError, ShapeError
from swinfuse.model.config import FusionConfig
from swinfuse.model.network import SwinFuse, count_parameters


def _pair(B=1, H=16, W=16, C=1):
    g = torch.Generator().manual_seed(1)
    return torch.rand(B, C, H, W, generator=g), torch.rand(B, C, H, W, generator=g)


@pytest.mark.parametrize("upsampler,upscale", [("", 1), ("pixelshuffle", 2), ("pixelshuffle", 3),
                                               ("pixelshuffledirect", 4), ("nearest+conv", 2),
                                               ("pixelshuffledirect", 8), ("nearest+conv", 4)])
@pytest.mark.parametrize("size", [(16, 16), (13, 21)])
def test_output_shape_is_input_times_upscale(tiny_config, upsampler, upscale, size):
    cfg = dataclasses.replace(tiny_config, upsampler=upsampler, upscale=upscale)
    model = SwinFuse(cfg).eval()
    ir, vis = _pair(2, *size)
    with torch.inference_mode():
        out = model(ir, vis, "low light")
    assert out.shape == (2, 1, size[0] * upscale, size[1] * upscale)
    assert torch.isfinite(out).all()


def test_smoke_preset_runs_at_64_and_67():
    model = SwinFuse(FusionConfig.smoke()).eval()
    for n in (64, 67):
        ir, vis = _pair(1, n, n)
        with torch.inference_mode():
            assert model(ir, vis, "").shape == (1, 1, 2 * n, 2 * n)


def test_every_parameter_gets_a_gradient(tiny_config):
    cfg = dataclasses.replace(tiny_config, ex_depths=(2,), fusion_depths=(2,), re_depths=(2, 1),
                              re_num_heads=(1, 1), use_checkpoint=True, resi_connection="3conv", ape=True)
    torch.manual_seed(0)  # stochastic depth is on: a fixed draw keeps every block in the graph
    model = SwinFuse(cfg).train()
    ir, vis = _pair(2, 12, 12)
    # FiLM's last layer starts at zero (identity modulation), so only it gets a gradient at first.
    model(ir, vis, ["a prompt", "another prompt"]).square().mean().backward()
    assert all(film.to_film[-1].weight.grad.abs().sum() > 0 for film in model.decoder.film)
    assert model.text_encoder.transformer.text_projection.grad.abs().sum() == 0
    # Once it has moved, every parameter (text encoder included) is reached.
    model.zero_grad()
    for film in model.decoder.film:
        torch.nn.init.normal_(film.to_film[-1].weight, std=0.1)
    model(ir, vis, ["a prompt", "another prompt"]).square().mean().backward()
    unreached = [n for n, p in model.named_parameters() if p.grad is None or (p.grad == 0).all()]
    assert not unreached


def test_cross_attention_reads_the_other_modality(tiny_model):
    ir, vis = _pair(1, 16, 16)
    fusion, enc_ir, enc_vis = tiny_model.fusion, tiny_model.encoder_ir, tiny_model.encoder_vis
    with torch.inference_mode():
        (a_ir, _), (a_vis, _) = enc_ir(ir), enc_vis(vis)
        b_vis, _ = enc_vis(torch.rand_like(vis))
        ir_1, _ = fusion.layers[0](a_ir, a_vis)
        ir_2, _ = fusion.layers[0](a_ir, b_vis)  # same infrared, other visible
    assert not torch.allclose(ir_1, ir_2)  # the infrared stream saw the visible change


@pytest.mark.parametrize("cpu_inference", [False, True], ids=["reference", "cpu-inference"])
def test_shift_mask_matters(cpu_inference):
    # With the mask, a shifted window on a 2x2-window map keeps wrapped regions apart; without it, not.
    from swinfuse.model.blocks import SwinBlock
    from swinfuse.model.cpu_inference import enable_cpu_inference

    torch.manual_seed(0)
    blk = SwinBlock(4, 1, 4, shift_size=2, mlp_ratio=1.0).eval()
    if cpu_inference:
        assert enable_cpu_inference(blk) == 2  # the block and its attention
    x = torch.randn(1, 8, 8, 4)
    y = x.clone()
    y[:, 0, 0] += torch.tensor([3.0, -1.0, 0.5, -2.5])  # not a constant shift: LayerNorm would erase it; a pixel at the top-left corner; after the roll it wraps to the bottom-right window
    with torch.inference_mode():
        d = (blk(y) - blk(x)).abs().sum(-1)[0]  # (8, 8)
    # Pixel (7, 7) shares the wrapped window with (0, 0) but not its region: it must not change.
    assert d[7, 7] == 0
    assert d[0, 1] > 0  # a neighbour in the same region does change


def test_prompt_changes_output(tiny_model):
    for film in tiny_model.decoder.film:  # FiLM starts as the identity; give it weights so prompts matter
        torch.nn.init.normal_(film.to_film[-1].weight, std=0.5)
    ir, vis = _pair(1, 16, 16)
    with torch.inference_mode():
        a = tiny_model(ir, vis, "the visible image is very dark")
        b = tiny_model(ir, vis, "stripe noise in the infrared image")
    assert not torch.allclose(a, b)


def test_prompt_shapes(tiny_model, tiny_config):
    ir, vis = _pair(3, 16, 16)
    D = tiny_config.text_dim
    with torch.inference_mode():
        one = tiny_model.encode_prompts(["dark"])  # (1, D)
        assert one.shape == (1, D)
        broadcast = tiny_model(ir, vis, one)  # (1, D) for a batch of 3
        per_image = tiny_model(ir, vis, one.expand(3, D))
        torch.testing.assert_close(broadcast, per_image)
        torch.testing.assert_close(tiny_model(ir, vis, "dark"), broadcast)
        with pytest.raises(ShapeError, match=r"must have shape \(3, 16\) or \(1, 16\), got \(1, 77, 16\)"):
            tiny_model(ir, vis, torch.zeros(1, 77, D))
        with pytest.raises(ShapeError, match=r"got \(3, 512\)"):
            tiny_model(ir, vis, torch.zeros(3, 512))
        with pytest.raises(ShapeError, match=r"got \(2, 16\)"):
            tiny_model(ir, vis, torch.zeros(2, D))
        with pytest.raises(ShapeError, match="got 2 prompts for a batch of 3"):
            tiny_model(ir, vis, ["a", "b"])


def test_mismatched_inputs_are_rejected(tiny_model):
    with pytest.raises(ShapeError, match=r"got \(1, 1, 16, 16\) and \(1, 1, 16, 12\)"):
        tiny_model(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 12), "")


def test_no_padding_when_aligned_and_crop_when_not(tiny_model):
    ir, vis = _pair(1, 16, 16)
    with torch.inference_mode():
        full = tiny_model(ir, vis, "")
        part = tiny_model(ir[..., :15, :13], vis[..., :15, :13], "")
    assert part.shape == (1, 1, 15, 13) and full.shape == (1, 1, 16, 16)


def test_prompt_embeddings_are_cached(tiny_model):
    calls = []
    enc = tiny_model.text_encoder
    orig = enc.forward
    enc.forward = lambda prompts: calls.append(list(prompts)) or orig(prompts)
    tiny_model.encode_prompts(["a", "b", "a"])
    tiny_model.encode_prompts(["a"])
    assert calls == [["a", "b"]]


@pytest.mark.parametrize("change,message", [
    (dict(embed_dim=10, ex_num_heads=(3,)), "embed_dim=10 is not divisible by ex_num_heads entry 3"),
    (dict(upsampler="bicubic"), "upsampler must be one of"),
    (dict(upsampler="", upscale=2), "upscale must be 1, got 2"),
    (dict(upscale=5, upsampler="pixelshuffle"), "upscale must be one of (1, 2, 3, 4, 8), got 5"),
    (dict(upsampler="nearest+conv", upscale=3), "'nearest+conv' needs upscale 2, 4 or 8, got 3"),
    (dict(re_depths=(1, 1)), "re_depths=(1, 1) and re_num_heads=(1,) must have the same length"),
    (dict(window_size=1), "window_size must be >= 2, got 1"),
    (dict(output="blend"), "output must be one of ('direct', 'mix', 'mix-fine', 'mixed-base'), got 'blend'"),
    (dict(output="mix"), "output 'mix' mixes the sources at their size: upscale must be 1, got 2"),
    (dict(base_gain=2.5), "base_gain must be in [0, 2], got 2.5"),
])
def test_config_validation_names_the_value(change, message):
    with pytest.raises(ConfigError) as err:
        FusionConfig.smoke(**change)
    assert message in str(err.value)


def test_config_json_round_trip():
    cfg = FusionConfig.default()
    assert FusionConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="unknown fields"):
        FusionConfig.from_json('{"embed_dim": 8, "colour": 1}')


def test_parameter_parts_add_up(tiny_model):
    counts = count_parameters(tiny_model)
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_film_layers_are_the_decoders_and_reported_apart(tiny_model):
    counts = count_parameters(tiny_model)
    film = sum(p.numel() for p in tiny_model.decoder.film.parameters())
    assert not hasattr(tiny_model, "film") and len(tiny_model.decoder.film) == len(tiny_model.config.re_depths)
    assert counts["FiLM"] == film > 0
    assert counts["decoder/head"] == sum(p.numel() for p in tiny_model.decoder.parameters()) - film


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_summary_rows_add_up_with_interleaved_film_and_re_stages(depth):
    # Two Re stages: the decoder calls film.0, layers.0, film.1, layers.1, which torchinfo flags as recursion.
    from swinfuse.summary import summarize_model

    model = SwinFuse(FusionConfig.preset("default"))
    report = summarize_model(model, source="test", size=(16, 16), depth=depth, device=torch.device("cpu"))
    names = [row.name for row in report.layers]
    assert len(names) == len(set(names))
    assert sum(row.own_params for row in report.layers) == report.total_params
    assert not any(n == "film" or n.startswith("film.") for n in names)
    if depth >= 2:
        assert {"decoder.film", "decoder.layers"} <= set(names)
    if depth >= 3:
        assert {"decoder.film.0", "decoder.film.1", "decoder.layers.1"} <= set(names)


def _halfres(tiny_config, patch_size=2, **kw):
    return dataclasses.replace(tiny_config, patch_size=patch_size, embed_dim=16, detail_dim=8, **kw)


@pytest.mark.parametrize("patch_size", [2, 4])
@pytest.mark.parametrize("size", [(16, 16), (13, 21), (5, 7)])
def test_strided_patch_embedding_keeps_the_input_size(tiny_config, patch_size, size):
    model = SwinFuse(_halfres(tiny_config, patch_size)).eval()
    ir, vis = _pair(2, *size)
    with torch.inference_mode():
        out = model(ir, vis, "low light")
    assert out.shape == (2, 1, *size)
    assert model.config.pad_multiple == tiny_config.window_size * patch_size
    # the Swin stages see a grid patch_size times coarser: the encoder's tokens are (B, H/p, W/p, C)
    with torch.inference_mode():
        tokens, shallow = model.encoder_ir(torch.rand(1, 1, 8 * patch_size, 8 * patch_size))
    assert tokens.shape == (1, 8, 8, 16) and shallow.shape == (1, 8, 8 * patch_size, 8 * patch_size)


def test_strided_layout_keeps_full_resolution_detail_and_reads_the_prompt(tiny_config):
    torch.manual_seed(0)
    model = SwinFuse(_halfres(tiny_config)).eval()
    torch.nn.init.normal_(model.decoder.detail_film.to_film[-1].weight, std=0.5)
    ir, vis = _pair(1, 16, 16)
    checker = vis.clone()
    checker[..., ::2, ::2] += 0.3  # a pattern at the pixel pitch, below what a 2x2 patch grid can resolve
    with torch.inference_mode():
        base, fine = model(ir, vis, ""), model(ir, checker, "")
        other = model(ir, vis, "stripe noise in the infrared image")
    # one-pixel detail reaches the output through the full-resolution path, and the prompt modulates it
    diff = (fine - base)[0, 0]
    assert (diff[::2, ::2] - diff[1::2, 1::2]).abs().mean() > 1e-4
    assert (other - base).abs().max() > 1e-4


def test_every_parameter_of_the_strided_layout_gets_a_gradient(tiny_config):
    torch.manual_seed(0)
    model = SwinFuse(_halfres(tiny_config)).train()
    for film in [*model.decoder.film, model.decoder.detail_film]:
        torch.nn.init.normal_(film.to_film[-1].weight, std=0.1)
    model(*_pair(2, 16, 16), ["a prompt", "another prompt"]).square().mean().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None or (p.grad == 0).all()]


def test_patch_size_and_detail_dim_are_checked():
    with pytest.raises(ConfigError, match="patch_size must be one of"):
        FusionConfig(patch_size=3)
    with pytest.raises(ConfigError, match="detail_dim"):
        FusionConfig(patch_size=2, detail_dim=-1)
    assert FusionConfig.halfres().patch_size == 2 and FusionConfig.preset("halfres").detail_width == 16
    # a config written before these fields existed reads as the full-resolution layout
    old = json.loads(FusionConfig.default().to_json())
    del old["detail_dim"]
    assert FusionConfig.from_json(json.dumps(old)) == FusionConfig.default()


def test_light_import_falls_back_to_the_package_when_its_files_need_the_init(tmp_path, monkeypatch):
    from swinfuse.model.light_import import light_import

    pkg = tmp_path / "heavy_pkg_for_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("SHARED = 1\n")
    (pkg / "part.py").write_text("from . import SHARED\nVALUE = SHARED + 1\n")  # needs the __init__
    monkeypatch.syspath_prepend(str(tmp_path))
    module = light_import("heavy_pkg_for_test", "part")
    assert module.VALUE == 2 and module.__name__ == "heavy_pkg_for_test.part"


def test_mix_output_is_a_weighted_mixture_of_the_sources_plus_a_residual(tiny_config):
    """output 'mix': the head's extra channel is the visible weight's logit; with the head's last conv at zero
    the fusion is the sources' mean, a large logit gives the visible source, and the residual adds on top."""
    torch.manual_seed(0)
    for cfg in (tiny_config, _halfres(tiny_config)):
        model = SwinFuse(dataclasses.replace(cfg, output="mix")).eval()
        last = model.decoder.head.body[-1]
        assert last.out_channels == 2
        ir, vis = _pair(2, 16, 24)
        torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)
        with torch.inference_mode():
            torch.testing.assert_close(model(ir, vis, ""), (ir + vis) / 2)
            last.bias.copy_(torch.tensor([0.1, 30.0]))  # residual 0.1, weight ~1
            torch.testing.assert_close(model(ir, vis, ""), vis + 0.1)
        fine = SwinFuse(dataclasses.replace(cfg, output="mix-fine")).eval()
        fine.load_state_dict(model.state_dict())
        with torch.inference_mode():  # a residual with no fine detail is all large scale: 'mix-fine' drops it
            torch.testing.assert_close(fine(ir, vis, ""), vis)
    assert json.loads(FusionConfig.default(output="mix").to_json())["output"] == "mix"
    old = json.loads(FusionConfig.default().to_json())
    del old["output"]  # a config written before the field existed is the direct head
    assert FusionConfig.from_json(json.dumps(old)).output == "direct"


def test_mixed_base_output_is_the_frame_base_plus_a_residual(tiny_config):
    """output 'mixed-base': with the head's last conv at zero the fusion is mixed_base of the sources read with
    their own means, or with the means given as frame= (a crop of a larger frame); the head's bias adds on top.
    The base keeps the brighter source's mean and is the mixture the docstring states."""
    from swinfuse.errors import ConfigError
    from swinfuse.model.network import BASE_GAIN, BASE_SHARE, frame_means, mixed_base

    torch.manual_seed(0)
    for cfg in (tiny_config, _halfres(tiny_config)):
        model = SwinFuse(dataclasses.replace(cfg, output="mixed-base")).eval()
        last = model.decoder.head.body[-1]
        assert last.out_channels == 1
        ir, vis = _pair(2, 16, 24)
        torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)
        with torch.inference_mode():
            base = mixed_base(ir, vis, frame_means(ir, vis))
            torch.testing.assert_close(model(ir, vis, ""), base)
            other = torch.tensor([[0.2, 0.6, 0.7]])  # another frame's means change the base of the same pixels
            given = model(ir, vis, "", frame=other)
            torch.testing.assert_close(given, mixed_base(ir, vis, other.expand(2, 3)))
            assert float((given - base).abs().max()) > 0.05
            last.bias.fill_(0.1)
            torch.testing.assert_close(model(ir, vis, ""), base + 0.1)
        full = SwinFuse(dataclasses.replace(cfg, output="mixed-base", base_gain=1.0)).eval()
        full.load_state_dict(model.state_dict())  # the same weights; the config's gain sets the base
        with torch.inference_mode():
            torch.testing.assert_close(full(ir, vis, ""), mixed_base(ir, vis, frame_means(ir, vis), gain=1.0) + 0.1)
            assert float((full(ir, vis, "") - model(ir, vis, "")).abs().max()) > 0.01
    ir, vis = torch.full((1, 1, 4, 4), 0.2), torch.full((1, 1, 4, 4), 0.5)
    ir[..., 0, 0], vis[..., 0, 0] = 0.9, 0.4  # one pixel where the infrared is the brighter
    means = frame_means(ir, vis)
    m_ir, m_vis = float(ir.mean()), float(vis.mean())
    matched = torch.maximum(ir, vis) + m_vis - float(torch.maximum(ir, vis).mean())
    both = m_vis + BASE_GAIN * ((ir - m_ir) + (vis - m_vis))
    torch.testing.assert_close(mixed_base(ir, vis, means), (1 - BASE_SHARE) * matched + BASE_SHARE * both)
    assert abs(float(mixed_base(ir, vis, means).mean()) - m_vis) < 1e-6  # the brighter source's mean
    with pytest.raises(ConfigError, match="frame= is for output 'mixed-base'"):
        SwinFuse(tiny_config)(ir, vis, "", frame=means)


def test_gaussian_blur_keeps_the_mean_and_flat_images():
    from swinfuse.model.network import gaussian_blur

    x = torch.zeros(1, 1, 41, 41)
    x[..., 20, 20] = 1.0
    b = gaussian_blur(x)
    assert abs(float(b.sum()) - 1.0) < 1e-5 and float(b[..., 20, 20]) < 0.02  # spread, mass kept
    flat = torch.full((2, 3, 5, 7), 0.4)  # smaller than the kernel: edges replicated
    torch.testing.assert_close(gaussian_blur(flat), flat)
