import json

import pytest
import torch

from swinfuse.errors import CheckpointError
from swinfuse.model.checkpoint import load_checkpoint, read_metadata, save_checkpoint


def test_round_trip_gives_identical_outputs(tiny_model, tiny_checkpoint):
    loaded, meta = load_checkpoint(tiny_checkpoint)
    ir, vis = torch.rand(2, 1, 18, 22), torch.rand(2, 1, 18, 22)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(ir, vis, "low light"), tiny_model(ir, vis, "low light"), rtol=0, atol=0)
    assert meta["config"] == tiny_model.config
    assert meta["provenance"] == {"note": "random weights, for tests"}
    assert len(meta["sha256"]) == 64


def test_metadata_is_json_strings_and_no_masks_are_stored(tiny_checkpoint):
    from safetensors import safe_open

    with safe_open(str(tiny_checkpoint), framework="pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert meta["format"] == "swinfuse"
    json.loads(meta["config"])
    assert not any("relative_position_index" in k or "attn_mask" in k for k in keys)


def test_not_a_safetensors_file(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a safetensors file"):
        load_checkpoint(bad)


def test_safetensors_without_swinfuse_metadata(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="is not a swinfuse checkpoint"):
        load_checkpoint(other)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def _rewrite(path, out, edit_state=None, edit_config=None):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    if edit_state:
        edit_state(state)
    if edit_config:
        cfg = json.loads(meta["config"])
        edit_config(cfg)
        meta["config"] = json.dumps(cfg)
    save_file(state, str(out), metadata=meta)
    return out


def test_shape_mismatch_names_key_and_both_shapes(tiny_checkpoint, tmp_path):
    key = "decoder.conv_after_body.weight"
    bad = _rewrite(tiny_checkpoint, tmp_path / "bad.safetensors",
                   edit_state=lambda s: s.__setitem__(key, torch.zeros(3, 3, 3, 3)))
    with pytest.raises(CheckpointError, match=r"weight 'decoder.conv_after_body.weight' has shape \(3, 3, 3, 3\), "
                                              r"model expects \(8, 8, 3, 3\)"):
        load_checkpoint(bad)


def test_config_that_does_not_match_tensors(tiny_checkpoint, tmp_path):
    bad = _rewrite(tiny_checkpoint, tmp_path / "bad.safetensors", edit_config=lambda c: c.update(embed_dim=16))
    with pytest.raises(CheckpointError, match="has shape .* model expects"):
        load_checkpoint(bad)


def test_missing_and_unexpected_keys(tiny_checkpoint, tmp_path):
    missing = _rewrite(tiny_checkpoint, tmp_path / "m.safetensors", edit_state=lambda s: s.pop("fusion.reduce.bias"))
    with pytest.raises(CheckpointError, match=r"lacks weight 'fusion.reduce.bias' \(model expects shape \(8,\)\)"):
        load_checkpoint(missing)
    extra = _rewrite(tiny_checkpoint, tmp_path / "x.safetensors",
                     edit_state=lambda s: s.__setitem__("head.extra", torch.zeros(1)))
    with pytest.raises(CheckpointError, match="has weight 'head.extra' that its config's model does not have"):
        load_checkpoint(extra)


def test_other_text_encoder_is_refused(tiny_checkpoint):
    from swinfuse.model.config import TextEncoderSpec

    with pytest.raises(CheckpointError, match="only works with its own text encoder"):
        load_checkpoint(tiny_checkpoint, expect_text=TextEncoderSpec(kind="clip", model_name="ViT-B-32",
                                                                     pretrained="openai"))


def test_unreadable_config(tiny_checkpoint, tmp_path):
    bad = _rewrite(tiny_checkpoint, tmp_path / "bad.safetensors", edit_config=lambda c: c.update(upsampler="magic"))
    with pytest.raises(CheckpointError, match="unreadable config: upsampler must be one of"):
        read_metadata(bad)


def test_save_is_atomic(tiny_model, tmp_path, monkeypatch):
    import safetensors.torch

    target = tmp_path / "w.safetensors"
    target.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError):
        save_checkpoint(tiny_model, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
