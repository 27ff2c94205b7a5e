"""A CLIP text encoder must name its weights: an empty tag is a one-line error, not a random 63 M-parameter
encoder built without a word; 'random' asks for one on purpose. Every failure to load is one line. Offline:
no model is downloaded and no real CLIP is built (open_clip.create_model is replaced where it would be)."""

import json
import logging

import pytest
import torch
from torch import nn

from swinfuse.errors import ConfigError, TextEncoderError
from swinfuse.model.config import CLIP_RANDOM, FusionConfig, TextEncoderSpec
from swinfuse.model.text import ClipTextEncoder, build_text_encoder


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message and message.strip() == message
    return message


@pytest.mark.parametrize("pretrained", ["", "   "])
def test_clip_spec_without_weights_is_refused_saying_what_to_give(pretrained):
    with pytest.raises(ConfigError) as err:
        TextEncoderSpec(kind="clip", model_name="ViT-B-32", pretrained=pretrained)
    message = one_line(err)
    assert "laion2b_s34b_b79k" in message and "local weights file" in message and f"'{CLIP_RANDOM}'" in message


def test_every_entry_point_gets_the_check():
    # A config (or a checkpoint's JSON) carrying a weightless CLIP spec is refused the same way.
    text = {"kind": "clip", "model_name": "ViT-B-32", "pretrained": ""}
    with pytest.raises(ConfigError, match="needs pretrained weights"):
        FusionConfig(text_dim=512, text=text)
    with pytest.raises(ConfigError, match="needs pretrained weights"):
        FusionConfig.from_json(json.dumps({"text_dim": 512, "text": text}))
    with pytest.raises(ConfigError, match="needs pretrained weights"):
        TextEncoderSpec.from_json(json.dumps(text))
    with pytest.raises(ConfigError, match="needs pretrained weights"):
        TextEncoderSpec.parse("ViT-B-32:")


def test_compact_spec_needs_no_weights():
    assert TextEncoderSpec().kind == "compact"
    assert TextEncoderSpec(width=16, layers=1, heads=2, context_length=16).pretrained == ""


def test_parse_model_and_tag_or_file():
    assert TextEncoderSpec.parse("ViT-B-32:laion2b_s34b_b79k") == TextEncoderSpec(
        kind="clip", model_name="ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert TextEncoderSpec.parse(" RN50:C:\\models\\clip.pt ").pretrained == "C:\\models\\clip.pt"  # first ':'
    assert TextEncoderSpec.parse(f"RN50:{CLIP_RANDOM}").pretrained == CLIP_RANDOM
    for bad in ("ViT-B-32", ":openai", ""):
        with pytest.raises(ConfigError) as err:
            TextEncoderSpec.parse(bad)
        assert "MODEL:TAG or MODEL:FILE" in one_line(err)


class FakeClip(nn.Module):
    """What ClipTextEncoder needs of an open_clip model, at a few hundred parameters."""

    def __init__(self):
        super().__init__()
        self.visual = nn.Linear(4, 4)
        self.text = nn.Linear(8, 8)


@pytest.fixture
def fake_create(monkeypatch):
    import open_clip

    calls = []

    def create_model(model_name, pretrained=None, load_weights=True, require_pretrained=False, **kw):
        calls.append(dict(model_name=model_name, pretrained=pretrained, load_weights=load_weights,
                          require_pretrained=require_pretrained))
        if pretrained:  # read the file as open_clip does, with its own reader
            open_clip.factory.load_state_dict(pretrained)
        logging.getLogger().warning("from the test, not open_clip: kept")
        return FakeClip()

    monkeypatch.setattr(open_clip, "create_model", create_model)
    return calls


def test_random_on_purpose_is_untrained_and_the_same_every_time(fake_create):
    spec = TextEncoderSpec.parse(f"RN50:{CLIP_RANDOM}")
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = ClipTextEncoder(spec, 1024)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random state is left as it was
    b = build_text_encoder(spec, 1024)
    # A checkpoint does not store a CLIP's weights: a rebuild must give the very same ones.
    assert torch.equal(a.model.text.weight, b.model.text.weight)
    assert fake_create[0] == dict(model_name="RN50", pretrained=None, load_weights=False, require_pretrained=False)
    assert not any(p.requires_grad for p in a.parameters())


def test_a_tag_is_required_to_load(fake_create, tmp_path):
    path = tmp_path / "clip.pt"
    torch.save(FakeClip().state_dict(), path)
    ClipTextEncoder(TextEncoderSpec(kind="clip", model_name="RN50", pretrained=str(path)), 1024)
    assert fake_create[0]["pretrained"] == str(path)
    assert fake_create[0]["load_weights"] and fake_create[0]["require_pretrained"]


@pytest.mark.parametrize("name, content, expected", [
    ("clip.pt", b"\x80\x02 not a pickle at all" * 10, "not a PyTorch or safetensors weights file"),
    ("clip.safetensors", b"not a model", "not a PyTorch or safetensors weights file"),
    ("clip.bin", b"", "not a PyTorch or safetensors weights file"),
])
def test_a_bad_local_file_is_one_line(fake_create, tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TextEncoderError) as err:
        ClipTextEncoder(TextEncoderSpec(kind="clip", model_name="RN50", pretrained=str(path)), 1024)
    message = one_line(err)
    assert message.startswith(f"cannot load CLIP RN50 from '{path}': {expected}")


def test_loader_errors_become_one_line():
    from swinfuse.model.text import _first_line

    missing = RuntimeError('Error(s) in loading state_dict for CLIP:\n\tMissing key(s) in state_dict: "x". ')
    assert _first_line(missing) == 'Error(s) in loading state_dict for CLIP: Missing key(s) in state_dict: "x".'
    assert _first_line(StopIteration()) == "the file holds no weights"  # open_clip on an empty state dict
    assert _first_line(OSError()) == "OSError"
    assert "\n" not in _first_line(ValueError("a\nb\nc"))


def test_open_clip_log_lines_are_held_back(capfd):
    # open_clip logs 'Failed to download ...' / 'Model initialized randomly' to the root logger before our
    # own one-line error: those records are dropped while the model is built, and only those.
    from swinfuse.model.text import _quiet_open_clip

    def record(path):
        return logging.LogRecord("root", logging.WARNING, path, 1, "open_clip says", None, None)

    with _quiet_open_clip():
        assert not logging.getLogger().filter(record("/site-packages/open_clip/factory.py"))
        assert logging.getLogger().filter(record("/site-packages/other/thing.py"))
    assert logging.getLogger().filter(record("/site-packages/open_clip/factory.py"))


def test_offline_tag_without_cache_is_one_line(monkeypatch, tmp_path):
    # A tag that is not cached, offline: one line naming the cache and the local-file way; no download.
    import huggingface_hub
    from huggingface_hub import constants

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    with pytest.raises(TextEncoderError) as err:
        ClipTextEncoder(TextEncoderSpec.parse("ViT-B-32:laion2b_s34b_b79k"), 512)
    message = one_line(err)
    assert "ViT-B-32/laion2b_s34b_b79k are not cached" in message and "local weights file" in message
    assert str(tmp_path / "cache") in message


def test_missing_local_file_is_one_line(tmp_path):
    with pytest.raises(TextEncoderError) as err:
        ClipTextEncoder(TextEncoderSpec.parse(f"ViT-B-32:{tmp_path / 'nope.safetensors'}"), 512)
    assert one_line(err) == f"CLIP weights file not found: {tmp_path / 'nope.safetensors'}"
