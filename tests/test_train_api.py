"""`swinfuse.train` (api.train) from Python: TrainArgs or keywords in, a TrainResult out, progress reported;
--text-encoder values parsed through the spec; states of older versions resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from test_training import pair_dir  # noqa: F401  (the training tests' tiny pairs)


def _args(data, out, **kw):
    from swinfuse.training.args import TrainArgs

    base = dict(data=(str(data),), out=str(out), preset="smoke", steps=3, batch_size=2, crop=16, val_count=2,
                val_every=0, val_crop=16, warmup=1, log_every=1, progress=False, threads=1, command="test")
    return TrainArgs(**{**base, **kw})


# ---- the library face ------------------------------------------------------------------------------

def test_swinfuse_train_is_the_api_function_and_takes_keywords(pair_dir, tmp_path):
    import swinfuse
    from swinfuse import api

    assert swinfuse.train is api.train
    calls = []
    result = swinfuse.train(_args(pair_dir, tmp_path / "run"), stop_after=2,
                            progress=lambda *a: calls.append(a))
    assert isinstance(result, swinfuse.TrainResult)
    assert (result.step, result.steps, result.trained_steps, result.finished, result.stopped) == (2, 3, 2, False, "stop-after")
    assert result.checkpoint == str(tmp_path / "run" / "model.safetensors") and result.world_size == 1
    assert result.state == str(tmp_path / "run" / "trainer_state.pt") and result.log == str(tmp_path / "run" / "log.jsonl")
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert result.loss == records[-2]["loss"] and result.val == {k: v for k, v in records[-1].items() if k not in ("type", "step")}
    assert result.val_loss == result.val["val_loss"] and result.minutes > 0
    # before the first step, then after each: (step, steps, loss, steps/s)
    assert [c[:2] for c in calls] == [(0, 3), (1, 3), (2, 3)] and math.isnan(calls[0][2]) and calls[1][2] > 0

    again = swinfuse.train(data=(str(pair_dir),), out=str(tmp_path / "run"), preset="smoke", steps=3, batch_size=2,
                           crop=16, val_count=2, val_every=0, val_crop=16, warmup=1, threads=1, command="test",
                           resume=True)
    assert (again.step, again.trained_steps, again.finished, again.stopped) == (3, 1, True, "finished")


def test_max_minutes_stops_after_the_step_that_ran_out(pair_dir, tmp_path):
    from swinfuse import api

    result = api.train(_args(pair_dir, tmp_path / "run", max_minutes=1e-9), progress=False)  # not a callback: none
    assert (result.step, result.trained_steps, result.finished, result.stopped) == (1, 1, False, "max-minutes")


# ---- states written before -------------------------------------------------------------------------

def test_a_state_saved_before_text_encoders_and_init_records_resumes_exactly(pair_dir, tmp_path):
    """trainer_state.pt of an older version: its args lack text_encoder, and it has no init record. It
    resumes, and the run ends where an uninterrupted one does."""
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "straight", steps=4))
    train(_args(pair_dir, tmp_path / "old", steps=4, stop_after=2))
    path = tmp_path / "old" / "trainer_state.pt"
    state = torch.load(path, weights_only=True)
    args = json.loads(state["args"])
    del args["text_encoder"]
    state["args"] = json.dumps(args)
    del state["init"]
    torch.save(state, path)
    train(_args(pair_dir, tmp_path / "old", steps=4, resume=True))
    a, b = (torch.load(tmp_path / run / "trainer_state.pt", weights_only=True) for run in ("straight", "old"))
    assert a["step"] == b["step"] == 4 and torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


# ---- --text-encoder --------------------------------------------------------------------------------

def test_text_encoder_option_parses_through_the_spec():
    from swinfuse.errors import ConfigError
    from swinfuse.training.args import model_config, normalised, text_encoder_spec

    assert text_encoder_spec("compact") is None and text_encoder_spec("") is None
    spec = text_encoder_spec("ViT-B-32:laion2b_s34b_b79k")
    assert (spec.kind, spec.model_name, spec.pretrained) == ("clip", "ViT-B-32", "laion2b_s34b_b79k")
    args = normalised(_args("pairs", "run", text_encoder=" RN50:/models/clip.pt "))
    assert args.text_encoder == "RN50:/models/clip.pt"
    config = model_config(args)
    assert config.text == text_encoder_spec("RN50:/models/clip.pt") and config.text_dim == 1024  # RN50's width
    assert model_config(normalised(_args("pairs", "run"))).text.kind == "compact"
    with pytest.raises(ConfigError, match="MODEL:TAG or MODEL:FILE"):
        normalised(_args("pairs", "run", text_encoder="ViT-B-32"))
