import json
from pathlib import Path

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


# ---- checkpoints of the older layout: the network owned the FiLM layers (`film.N.*`) -----------------------

SHIPPED = Path(__file__).resolve().parents[1] / "swinfuse" / "weights" / "swinfuse-default.safetensors"
SHIPPED_PROMPTS = ("visible image is in extremely low light", "stripe noise in the infrared image")


def _shipped_input():
    g = torch.Generator().manual_seed(12)
    return torch.rand(1, 1, 20, 28, generator=g), torch.rand(1, 1, 20, 28, generator=g)


def _old_name(key: str) -> str:
    return key.removeprefix("decoder.") if key.startswith("decoder.film") else key


def _as_old_layout(path, out):
    """Rewrite a checkpoint with the key names the older code wrote (film.N.* at the top)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    state = {_old_name(k): v for k, v in state.items()}
    save_file(state, str(out), metadata=meta)
    return out


@pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped checkpoint is not in this checkout")
def test_shipped_checkpoint_in_the_older_layout_loads_with_identical_outputs(tmp_path):
    """The shipped checkpoint, rewritten with the FiLM keys where checkpoints before the move kept them
    (film.*), loads into the same model: bit-identical outputs, and it responds to the prompt."""
    from safetensors import safe_open

    old = _as_old_layout(SHIPPED, tmp_path / "old.safetensors")
    with safe_open(str(old), framework="pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("film.") for k in keys) and not any(k.startswith("decoder.film.") for k in keys)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        new_model, _ = load_checkpoint(SHIPPED)
        old_model, _ = load_checkpoint(old)
        assert len(old_model.decoder.film) == len(old_model.config.re_depths)
        ir, vis = _shipped_input()
        outputs = {}
        with torch.inference_mode():
            for prompt in SHIPPED_PROMPTS:
                out = old_model(ir, vis, prompt)
                torch.testing.assert_close(out, new_model(ir, vis, prompt), rtol=0, atol=0)
                outputs[prompt] = out
    finally:
        torch.set_num_threads(threads)
    a, b = outputs.values()
    assert (a - b).abs().max() > 1e-2  # the shipped model responds to the prompt


def test_older_layout_checkpoint_loads_and_saves_in_the_new_layout(tiny_model, tiny_checkpoint, tmp_path):
    from safetensors import safe_open

    for film in tiny_model.decoder.film:  # non-zero FiLM, so a FiLM weight left out would show
        torch.nn.init.normal_(film.to_film[-1].weight, std=0.5)
    new = save_checkpoint(tiny_model, tmp_path / "new.safetensors")
    old = _as_old_layout(new, tmp_path / "old.safetensors")
    with safe_open(str(old), framework="pt") as f:
        assert any(k.startswith("film.0.") for k in f.keys())
    loaded, _ = load_checkpoint(old)
    ir, vis = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(ir, vis, "haze"), tiny_model(ir, vis, "haze"), rtol=0, atol=0)
    again = save_checkpoint(loaded, tmp_path / "again.safetensors")
    with safe_open(str(again), framework="pt") as f:
        assert not any(k.startswith("film.") for k in f.keys())


def test_older_layout_state_dict_loads_into_the_model(tiny_model, tiny_config):
    # A training state saved by the older code holds model.state_dict() with film.N.* keys (resume).
    from swinfuse.model.keys import remap_state_dict
    from swinfuse.model.network import SwinFuse

    state = tiny_model.state_dict()
    old = type(state)((_old_name(k), v) for k, v in state.items())
    old._metadata = type(state._metadata)((_old_name(k), v) for k, v in state._metadata.items())
    assert "film.0.to_film.2.weight" in old
    remapped = remap_state_dict(old)
    assert list(remapped) == list(state) and remapped._metadata.keys() == state._metadata.keys()
    assert remap_state_dict(state) is state
    other = SwinFuse(tiny_config)
    other.load_state_dict(old)  # strict
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_parameter_order_is_the_older_layouts(tiny_config):
    # An optimizer state pairs its entries with parameters by position: the order must not move.
    from swinfuse.model.network import SwinFuse

    names = [n for n, _ in SwinFuse(tiny_config).named_parameters()]
    film = [i for i, n in enumerate(names) if n.startswith("decoder.film.")]
    assert film == list(range(film[0], film[0] + len(film)))
    assert names[film[0] - 1].startswith("text_encoder.") and names[film[-1] + 1].startswith("decoder.layers.")


@pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped checkpoint is not in this checkout")
def test_warm_start_from_an_older_layout_checkpoint():
    from swinfuse.model.config import FusionConfig
    from swinfuse.model.network import SwinFuse
    from swinfuse.training.args import TrainArgs
    from swinfuse.training.state import warm_start

    shipped = read_metadata(SHIPPED)["config"]
    preset = "halfres" if shipped.patch_size == 2 else "default"
    config = FusionConfig.preset(preset, img_size=32, prompt_gate=shipped.prompt_gate)
    model = SwinFuse(config)
    record = warm_start(model, TrainArgs(init=str(SHIPPED), preset=preset, prompt_gate=shipped.prompt_gate), config)
    assert record["path"] == str(SHIPPED)
    source, _ = load_checkpoint(SHIPPED)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_loading_draws_no_random_weights_that_the_checkpoint_overwrites(tiny_model, tiny_checkpoint, monkeypatch):
    """A first image in seconds (issue 21): building the model to load skips torch.nn.init's draws (the text
    encoder's token table, drawn twice by normal_, ~55 ms); every weight still comes from the file, and the
    initialisers are torch's own again afterwards, also when the build fails."""
    initialisers = {name: getattr(torch.nn.init, name) for name in ("normal_", "uniform_", "trunc_normal_")}
    draws = []
    normal = torch.Tensor.normal_
    monkeypatch.setattr(torch.Tensor, "normal_", lambda self, *a, **k: draws.append(self.shape) or normal(self, *a, **k))
    model, _ = load_checkpoint(tiny_checkpoint)
    assert draws == []
    for (key, loaded), (_, saved) in zip(model.state_dict().items(), tiny_model.state_dict().items()):
        assert torch.equal(loaded, saved), key
    assert {name: getattr(torch.nn.init, name) for name in initialisers} == initialisers
    torch.nn.init.normal_(torch.empty(3))
    assert draws == [(3,)]  # torch's own again

    from swinfuse.model import checkpoint

    with pytest.raises(RuntimeError), checkpoint._initialisers_skipped():
        raise RuntimeError("a failed build")
    assert {name: getattr(torch.nn.init, name) for name in initialisers} == initialisers


def test_ship_records_every_earlier_stage_of_a_warm_started_checkpoint(tiny_model, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship", Path(__file__).resolve().parents[1] / "tools" / "ship.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    first = save_checkpoint(tiny_model, tmp_path / "first.safetensors", {"command": "swinfuse train --out a", "step": 10})
    second = save_checkpoint(tiny_model, tmp_path / "second.safetensors",
                             {"command": "swinfuse train --out b --init first", "step": 5,
                              "init": {"path": str(first), "sha256": "aa"}, "validation_metrics": {"x": 1}})
    last = {"command": "swinfuse train --out c --init second", "init": {"path": str(second), "sha256": "bb"}}
    stages = ship.lineage(last)
    assert [s["command"] for s in stages] == ["swinfuse train --out b --init first", "swinfuse train --out a"]
    assert stages[0]["sha256"] == "bb" and "validation_metrics" not in stages[0]
    first.unlink()
    stages = ship.lineage(last)
    assert len(stages) == 2 and "not found" in stages[1]["end"] and stages[1]["sha256"] == "aa"
    # a shipped checkpoint as the warm start: its own recorded lineage carries the stages whose files are gone
    shipped = save_checkpoint(tiny_model, tmp_path / "shipped.safetensors",
                              {"command": "swinfuse train --out s --init gone", "init": {"path": str(first)},
                               "lineage": [{"command": "swinfuse train --out gone"}, {"command": "swinfuse train --out older"}]})
    stages = ship.lineage({"command": "swinfuse train --out d", "init": {"path": str(shipped), "sha256": "cc"}})
    assert [s["command"] for s in stages] == ["swinfuse train --out s --init gone", "swinfuse train --out gone",
                                              "swinfuse train --out older"]
    assert "lineage" not in stages[0]


def test_interpolate_moves_every_weight_towards_the_start_and_records_it(tiny_model, tiny_config, tmp_path):
    import dataclasses
    import importlib.util

    from swinfuse.errors import CheckpointError
    from swinfuse.model.network import SwinFuse

    spec = importlib.util.spec_from_file_location("interp", Path(__file__).resolve().parents[1] / "tools" / "interpolate.py")
    interp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(interp)
    torch.manual_seed(1)
    start = save_checkpoint(SwinFuse(tiny_config).eval(), tmp_path / "start.safetensors", {"command": "start"})
    tuned = save_checkpoint(tiny_model, tmp_path / "tuned.safetensors",
                            {"command": "tuned", "init": {"path": str(start)}, "validation_metrics": {"x": 1}})
    out = interp.interpolate(str(tuned), str(start), 0.25, str(tmp_path / "mix.safetensors"), "the command")
    mixed, meta = load_checkpoint(out)
    a, b = load_checkpoint(tuned)[0].state_dict(), load_checkpoint(start)[0].state_dict()
    moved = 0
    for key, value in mixed.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * a[key] + 0.25 * b[key], atol=1e-6), key
            moved += not torch.equal(a[key], b[key])
    assert moved > 10
    prov = meta["provenance"]
    assert prov["command"] == "tuned" and prov["init"] == {"path": str(start)} and "validation_metrics" not in prov
    assert prov["interpolated"]["alpha"] == 0.25 and prov["interpolated"]["command"] == "the command"
    same = load_checkpoint(interp.interpolate(str(tuned), str(start), 0.0, str(tmp_path / "same.safetensors")))[0]
    assert all(torch.equal(v, a[k]) for k, v in same.state_dict().items())
    other = save_checkpoint(SwinFuse(dataclasses.replace(tiny_config, embed_dim=tiny_config.embed_dim * 2)).eval(),
                            tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="another architecture"):
        interp.interpolate(str(tuned), str(other), 0.5, str(tmp_path / "x.safetensors"))
    with pytest.raises(ValueError, match="alpha"):
        interp.interpolate(str(tuned), str(start), 1.5, str(tmp_path / "y.safetensors"))
