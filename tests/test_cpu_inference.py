"""The speed work (shift masks applied to the few windows that need them; CPU inference band by band, in
place, with chunked attention: swinfuse.model.cpu_inference) must not change what the network computes.
Outputs of the reference computation and of CPU inference are compared with a forward frozen before that
work (tests/assets/reference_forward.safetensors, made by a model with shifted blocks, batch 2, padding and
upscale 2) and with a plain reimplementation of masked window attention."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from swinfuse.model.config import FusionConfig
from swinfuse.model.cpu_inference import enable_cpu_inference
from swinfuse.model.network import SwinFuse
from swinfuse.model.window import shift_mask, window_partition

REFERENCE = Path(__file__).parent / "assets" / "reference_forward.safetensors"


@pytest.fixture(autouse=True)
def _own_rng():
    # These tests seed and draw; later tests (DropPath in test_network's gradient test) see the RNG untouched.
    with torch.random.fork_rng():
        yield


def _reference_model(cpu_inference: bool = True):
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(REFERENCE), "pt") as f:
        config = FusionConfig.from_json(f.metadata()["config"])
    tensors = load_file(str(REFERENCE))
    model = SwinFuse(config).eval()
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("text_encoder.") for k in missing)  # the prompt comes as a tensor
    if cpu_inference:
        assert enable_cpu_inference(model) > 0
    return model, tensors


@pytest.mark.parametrize("cpu_inference", [False, True], ids=["reference", "cpu-inference"])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "grad"])
def test_forward_matches_the_frozen_reference(grad, cpu_inference):
    model, t = _reference_model(cpu_inference)
    with torch.set_grad_enabled(grad):
        for _ in range(2):
            torch.testing.assert_close(model(t["ir"], t["vis"], t["text"]), t["out"], atol=1e-5, rtol=0)
        torch.testing.assert_close(model(t["ir"][:1], t["vis"][:1], t["text"][:1]), t["out_b1"], atol=1e-5, rtol=0)


def test_cpu_inference_follows_weight_changes():
    model, t = _reference_model()
    with torch.inference_mode():
        before = model(t["ir"], t["vis"], t["text"])
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "relative_position_bias_table" in name:
                    p.add_(0.5)
        after = model(t["ir"], t["vis"], t["text"])
    assert not torch.allclose(before, after)
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}, strict=False)
    with torch.inference_mode():
        torch.testing.assert_close(model(t["ir"], t["vis"], t["text"]), t["out"], atol=1e-5, rtol=0)


def _plain_attention(attn, x, shift_ws=None):
    """Swin's window attention written out: full (nW, nH, L, L) bias + mask, softmax, no caching."""
    B, nW, L, C = x.shape
    nH, hd = attn.num_heads, C // attn.num_heads
    q, k, v = attn.qkv(x).view(B, nW, L, 3, nH, hd).permute(3, 0, 1, 4, 2, 5)  # 3 x (B, nW, nH, L, hd)
    logits = (q * attn.scale) @ k.transpose(-1, -2) + attn.position_bias()  # (B, nW, nH, L, L)
    if shift_ws is not None:
        logits = logits + shift_mask(*shift_ws, torch.device("cpu")).unsqueeze(1)
    out = (logits.softmax(-1) @ v).transpose(2, 3).reshape(B, nW, L, C)
    return attn.proj(out)


@pytest.mark.parametrize("B", [1, 3])
def test_window_attention_matches_a_plain_implementation(B):
    from swinfuse.model.attention import WindowAttention
    from swinfuse.model.window import masked_windows

    torch.manual_seed(0)
    attn = WindowAttention(8, 4, 2).eval()
    torch.nn.init.normal_(attn.relative_position_bias_table, std=1.0)
    x = torch.randn(B, 8, 12, 8)
    windows = window_partition(x, 4)  # (B, 6, 16, 8)
    with torch.inference_mode():
        torch.testing.assert_close(attn(windows), _plain_attention(attn, windows), atol=1e-5, rtol=0)
        masked = masked_windows(8, 12, 4, 2, torch.device("cpu"))
        torch.testing.assert_close(attn(windows, masked=masked), _plain_attention(attn, windows, (8, 12, 4, 2)),
                                   atol=1e-5, rtol=0)


def test_only_the_last_row_and_column_of_windows_are_masked():
    from swinfuse.model.window import masked_windows

    idx, mask = masked_windows(16, 24, 4, 2, torch.device("cpu"))  # 4 x 6 windows
    assert sorted(idx.tolist()) == [5, 11, 17, 18, 19, 20, 21, 22, 23]
    assert torch.equal(mask, shift_mask(16, 24, 4, 2, torch.device("cpu"))[idx])


@pytest.mark.parametrize("band_tokens", [1, 60])  # one window-row per band; a few rows per band
def test_banded_inference_matches_the_frozen_reference(band_tokens, monkeypatch):
    from swinfuse.model import cpu_inference

    model, t = _reference_model()
    monkeypatch.setattr(cpu_inference, "BAND_TOKENS", band_tokens)
    with torch.inference_mode():
        torch.testing.assert_close(model(t["ir"], t["vis"], t["text"]), t["out"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("shift", [0, 2])
@pytest.mark.parametrize("cross", [False, True])
def test_banded_block_equals_the_whole_map(shift, cross, monkeypatch):
    from swinfuse.model import cpu_inference
    from swinfuse.model.blocks import SwinBlock

    torch.manual_seed(0)
    blk = SwinBlock(8, 2, 4, shift_size=shift, cross=cross).eval()
    torch.nn.init.normal_(blk.attn.relative_position_bias_table, std=1.0)
    x, ctx = torch.randn(2, 20, 12, 8), torch.randn(2, 20, 12, 8)
    with torch.no_grad():
        whole = blk(x, ctx if cross else None)  # the reference computation
        cpu_inference.enable_cpu_inference(blk)
        monkeypatch.setattr(cpu_inference, "BAND_TOKENS", 12 * 8)  # bands of 8 rows: 8, 8, then 4
        assert blk.band_rows(20, 12) == 8
        torch.testing.assert_close(blk(x, ctx if cross else None), whole, atol=1e-6, rtol=0)
        y = x.clone()
        torch.testing.assert_close(blk(y, ctx if cross else None, inplace=True), whole, atol=1e-6, rtol=0)
        torch.testing.assert_close(y, whole, atol=1e-6, rtol=0)  # written over its input


@pytest.mark.parametrize("heads,head_dim,windows,per_window", [(1, 16, 130, False), (2, 8, 65, True), (3, 5, 7, False)])
def test_cpu_window_attention_equals_sdpa(heads, head_dim, windows, per_window):
    """attend_cpu (chunks of windows, head by head) against torch's SDPA: chunk edges (130 = 2 x 64 + 2),
    several heads, and a bias per window (the shift-masked windows) as well as one broadcast over windows."""
    from swinfuse.model.cpu_inference import attend_cpu

    torch.manual_seed(0)
    q, k, v = (torch.randn(windows, heads, 64, head_dim) for _ in range(3))
    bias = torch.randn(windows if per_window else 1, heads, 64, 64)
    if per_window:
        bias[::3, :, :, 32:] = float("-inf")  # as a shift mask does
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=head_dim ** -0.5)
    got = attend_cpu(q, k, v, bias, head_dim ** -0.5)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_the_api_loads_every_model_with_cpu_inference_and_load_checkpoint_leaves_it_off(tiny_checkpoint):
    from swinfuse import api
    from swinfuse.model.blocks import SwinBlock
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.model.cpu_inference import BandedSwinBlock, disable_cpu_inference

    plain, _ = load_checkpoint(tiny_checkpoint)
    assert all(type(b) is SwinBlock for b in plain.modules() if isinstance(b, SwinBlock))
    preset, _, _ = api.load_model(weights=None, preset="smoke", device="cpu")
    assert all(type(b) is BandedSwinBlock for b in preset.modules() if isinstance(b, SwinBlock))
    model, _, _ = api.load_model(weights=tiny_checkpoint, device="cpu")
    blocks = [m for m in model.modules() if isinstance(m, SwinBlock)]
    assert blocks and all(type(b) is BandedSwinBlock for b in blocks)
    torch.manual_seed(0)
    ir, vis = torch.rand(1, 1, 20, 28), torch.rand(1, 1, 20, 28)
    with torch.inference_mode():
        fast = model(ir, vis, "a prompt")
        assert disable_cpu_inference(model) > 0
        assert all(type(b) is SwinBlock for b in blocks)
        torch.testing.assert_close(model(ir, vis, "a prompt"), fast, atol=1e-5, rtol=0)
