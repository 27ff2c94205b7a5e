import warnings

import pytest
import torch

from swinfuse.errors import ConfigError, TextEncoderError
from swinfuse.model.config import TextEncoderSpec
from swinfuse.model.text import ClipTextEncoder, CompactTextEncoder


def test_compact_encoder_gives_one_vector_per_prompt():
    enc = CompactTextEncoder(TextEncoderSpec(width=16, layers=1, heads=2, context_length=16), text_dim=12)
    out = enc(["visible image is dark", "", "stripe noise"])
    assert out.shape == (3, 12)
    assert not torch.allclose(out[0], out[2])


def test_long_prompt_is_truncated_with_a_warning():
    enc = CompactTextEncoder(TextEncoderSpec(width=16, layers=1, heads=2, context_length=8), text_dim=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = enc(["the visible image was taken at night in extremely low light with noise"])
    assert out.shape == (1, 8)
    assert any("truncated" in str(w.message) for w in caught)


def test_text_spec_validation():
    with pytest.raises(ConfigError, match="text width 30 is not divisible by text heads 4"):
        TextEncoderSpec(width=30, heads=4)
    with pytest.raises(ConfigError, match="needs model_name"):
        TextEncoderSpec(kind="clip")


def test_clip_unknown_model_and_tag():
    with pytest.raises(TextEncoderError, match="unknown open_clip model 'ViT-Nope'"):
        ClipTextEncoder(TextEncoderSpec(kind="clip", model_name="ViT-Nope", pretrained="openai"), 512)
    with pytest.raises(TextEncoderError, match="unknown pretrained tag 'nope' for ViT-B-32; valid tags: openai"):
        ClipTextEncoder(TextEncoderSpec(kind="clip", model_name="ViT-B-32", pretrained="nope"), 512)
    with pytest.raises(TextEncoderError, match="gives 512-d text vectors but the config's text_dim is 64"):
        ClipTextEncoder(TextEncoderSpec(kind="clip", model_name="ViT-B-32", pretrained="openai"), 64)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """huggingface_hub with an empty cache, online by its own constant, no network: every download attempt is
    recorded and answered by `hub.answer` (an exception to raise, or None for a file downloaded)."""
    import socket
    import types

    import huggingface_hub
    from huggingface_hub import constants

    state = types.SimpleNamespace(calls=[], answer=None)

    def download(repo_id, filename, **kwargs):
        state.calls.append((repo_id, filename))
        answer = state.answer(filename) if callable(state.answer) else state.answer
        if isinstance(answer, BaseException):
            raise answer
        return str(tmp_path / filename)

    def no_socket(*args, **kwargs):
        raise AssertionError("swinfuse opened a socket itself")

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(socket, "create_connection", no_socket)
    return state


def test_clip_offline_fails_at_once_with_what_to_do(hub, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(TextEncoderError) as err:
        ClipTextEncoder(TextEncoderSpec(kind="clip", model_name="ViT-B-32", pretrained="openai"), 512)
    message = str(err.value)
    assert "not cached" in message and "HF_HUB_OFFLINE" in message and "local weights file" in message
    assert str(tmp_path / "cache") in message
    assert hub.calls == []  # offline: the hub is not asked


def test_clip_hub_offline_is_huggingface_hubs_reading_of_the_variable(hub, monkeypatch):
    # HF_HUB_OFFLINE=no means online to huggingface_hub, so swinfuse goes by huggingface_hub's reading of it.
    from huggingface_hub import constants

    from swinfuse.model.text import _check_available

    assert not constants._is_true("no")
    monkeypatch.setenv("HF_HUB_OFFLINE", "no")
    _check_available("ViT-B-32", "openai")
    assert hub.calls == [("timm/vit_base_patch32_clip_224.openai", "open_clip_model.safetensors")]


def test_clip_download_goes_through_huggingface_hub(hub):
    # HF_ENDPOINT and HTTPS_PROXY are huggingface_hub's to honour: no socket of swinfuse's own.
    from huggingface_hub.errors import EntryNotFoundError

    from swinfuse.model.text import _check_available

    hub.answer = lambda name: EntryNotFoundError("no such file") if name.endswith(".safetensors") else None
    _check_available("ViT-B-32", "openai")
    assert [name for _, name in hub.calls] == ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]


def test_clip_no_network_is_huggingface_hubs_not_found_error(hub):
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    hub.answer = LocalEntryNotFoundError("cannot find the requested files in the disk cache")
    with pytest.raises(TextEncoderError) as err:
        ClipTextEncoder(TextEncoderSpec(kind="clip", model_name="ViT-B-32", pretrained="openai"), 512)
    message = str(err.value)
    assert "not cached" in message and constants.ENDPOINT in message and "local weights file" in message
    assert len(hub.calls) == 1


def test_clip_missing_local_file(tmp_path):
    with pytest.raises(TextEncoderError, match="CLIP weights file not found"):
        ClipTextEncoder(TextEncoderSpec(kind="clip", model_name="ViT-B-32",
                                        pretrained=str(tmp_path / "clip.safetensors")), 512)


def test_clip_from_a_local_file_is_frozen_and_pooled(tmp_path):
    # A tiny open_clip model saved to disk stands in for real CLIP weights (no download in tests).
    import open_clip

    model = open_clip.create_model("RN50", load_weights=False)
    path = tmp_path / "rn50.pt"
    torch.save(model.state_dict(), path)
    enc = ClipTextEncoder(TextEncoderSpec(kind="clip", model_name="RN50", pretrained=str(path)), 1024)
    out = enc(["dark visible image", "stripe noise"])
    assert out.shape == (2, 1024)
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.model.training


def test_the_shipped_model_loads_without_open_clip_timm_or_torchvision_and_encodes_as_open_clip_does():
    """A first image in seconds (issue 21): the compact encoder and the blocks load open_clip's tokenizer and
    text tower and timm's layers without those packages' __init__ (which import torchvision); the embedding is
    the one open_clip's own modules give."""
    import subprocess
    import sys

    code = ("import sys, torch; from swinfuse.api import load_model; "
            "m, _, _ = load_model(weights=None, device='cpu', require_weights=True); "
            "e = m.encode_prompts(['the visible image is hazy']); "
            "print(sorted(p for p in ('open_clip', 'timm', 'torchvision') if p in sys.modules)); "
            "import open_clip, open_clip.transformer; "
            "t = open_clip.transformer.TextTransformer(context_length=m.text_encoder.context_length, "
            "vocab_size=49408, width=m.config.text.width, heads=m.config.text.heads, layers=m.config.text.layers, "
            "output_dim=m.config.text_dim); t.load_state_dict(m.text_encoder.transformer.state_dict()); t.eval(); "
            "ref = t(open_clip.tokenizer.SimpleTokenizer(context_length=m.text_encoder.context_length)"
            "(['the visible image is hazy'])); print(float((ref - e).abs().max()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert float(out[1]) < 1e-5


TOKEN_PROMPTS = ["", "   ", "\t\n", "fuse the infrared and visible images", "The visible image is in EXTREMELY low light.",
                 "don't we'll 1,000 ½ Ünïcödé 東京 ﬁx “quotes” 🔥", "&amp; &lt;b&gt; AT&T", "\x00", "a" * 300,
                 "the visible image was taken at night in extremely low light with heavy noise and stripes"]


@pytest.mark.parametrize("context_length", [2, 8, 77])
def test_token_rows_are_open_clips_and_count_the_tokens_before_truncation(context_length):
    from open_clip.tokenizer import SimpleTokenizer

    from swinfuse.model.tokens import token_rows

    reference = SimpleTokenizer(context_length=context_length)
    rows, lengths = token_rows(TOKEN_PROMPTS, context_length)
    assert torch.equal(rows, reference(TOKEN_PROMPTS))
    assert lengths == [len(reference.encode(p)) + 2 for p in TOKEN_PROMPTS]


def test_an_empty_prompt_does_not_load_open_clips_tokenizer():
    """`fuse`'s default prompt is empty: encoding it imports neither open_clip's tokenizer module (which builds a
    tokenizer as it is imported, ~0.2 s), ftfy nor regex; a prompt with words then loads it, once."""
    import subprocess
    import sys

    code = ("import sys; from swinfuse.model.config import TextEncoderSpec; "
            "from swinfuse.model.text import CompactTextEncoder; "
            "enc = CompactTextEncoder(TextEncoderSpec(width=16, layers=1, heads=2, context_length=8), 8); "
            "loaded = lambda: sorted(m for m in sys.modules if m in ('ftfy', 'regex') or m.endswith('open_clip.tokenizer')); "
            "enc(['', '  ']); print(loaded()); enc(['plain words']); print(len(loaded()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["[]", "3"]
