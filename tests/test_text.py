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


def test_clip_offline_fails_at_once_with_what_to_do(monkeypatch, tmp_path):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    start = time.perf_counter()
    with pytest.raises(TextEncoderError) as err:
        ClipTextEncoder(TextEncoderSpec(kind="clip", model_name="ViT-B-32", pretrained="openai"), 512)
    message = str(err.value)
    assert "not cached" in message and "HF_HUB_OFFLINE" in message and "local weights file" in message
    assert time.perf_counter() - start < 10  # no retry loop


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
