"""`swinfuse train` as every command is: options -> TrainArgs -> api.train -> TrainResult -> render (one line
or --json); the --text-encoder option (a frozen pretrained CLIP), offline; states of older versions resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from swinfuse.cli import app

runner = CliRunner()
TINY = ["--preset", "smoke", "--batch-size", "2", "--crop", "16", "--val-count", "2", "--val-crop", "16",
        "--warmup", "1", "--threads", "1", "--no-progress"]


from test_training import _main, pair_dir  # noqa: E402,F401  (the training tests' entry runner and tiny pairs)


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


def test_train_json_is_the_result_on_stdout(pair_dir, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(pair_dir), "--out", str(out), "--steps", "2", "--json", *TINY])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["step"] == data["steps"] == data["trained_steps"] == 2 and data["finished"] and data["stopped"] == "finished"
    assert data["checkpoint"] == str(out / "model.safetensors") and data["val"]["val_loss"] == data["val_loss"]
    assert set(data["val"]["val_per_kind"]) >= {"none", "vis_haze"} and data["loss"] > 0
    assert "finished at step" not in result.stderr  # the line is the text form; with --json only JSON
    nothing = runner.invoke(app, ["train", "--data", str(pair_dir), "--out", str(out), "--steps", "2", "--json",
                                  "--resume", *TINY])
    assert nothing.exit_code == 0 and json.loads(nothing.stdout)["trained_steps"] == 0


def test_errors_from_the_library_are_one_line(pair_dir, tmp_path, monkeypatch, capsys):
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(tmp_path / "run"), "--val-count", "9"],
                           monkeypatch, capsys)
    assert (code, out) == (1, "") and err == f"Error: {pair_dir} has 6 pairs: not enough for 9 validation pairs and training\n"
    code, _, err = _main(["train", "--data", str(pair_dir), "--out", str(tmp_path / "run"), "--device", "tpu"],
                         monkeypatch, capsys)
    assert code == 1 and err.startswith("Error: --device must be auto, cpu, cuda or cuda:N, got 'tpu'")
    assert not (tmp_path / "run").exists()


def test_interrupted_run_names_its_last_saved_step(pair_dir, tmp_path, monkeypatch):
    from swinfuse.training import trainer

    run = tmp_path / "run"
    argv = ["train", "--data", str(pair_dir), "--out", str(run), "--steps", "3", "--val-every", "1", *TINY]
    assert runner.invoke(app, argv + ["--stop-after", "2"]).exit_code == 0
    real = trainer.train

    def interrupted(args, progress=None):
        real(args, progress=progress)  # continues to step 3, saving as it goes
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    result = runner.invoke(app, argv + ["--resume"])
    assert result.exit_code == 130 and result.stdout == ""
    assert result.stderr.strip() == (f"interrupted: the last saved state is step 3 in {run} (written every "
                                     "--val-every steps); continue with the same command and --resume")


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


@pytest.mark.parametrize("value, message", [
    ("ViT-B-32:", "Error: the CLIP text encoder ViT-B-32 needs pretrained weights"),
    ("ViT-B-32", "Error: a CLIP text encoder is MODEL:TAG or MODEL:FILE"),
    ("ViT-B-32:{tmp}/missing/clip.safetensors", "Error: CLIP weights file not found: {tmp}/missing/clip.safetensors"),
])
def test_text_encoder_errors_are_one_line_and_make_nothing(value, message, pair_dir, tmp_path, monkeypatch, capsys):
    import open_clip

    def no_model(*args, **kwargs):
        raise AssertionError("no CLIP may be built or downloaded here")

    monkeypatch.setattr(open_clip, "create_model", no_model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = tmp_path / "run"
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(run), "--text-encoder",
                            value.format(tmp=tmp_path), *TINY], monkeypatch, capsys)
    assert (code, out) == (1, "") and err.startswith(message.format(tmp=tmp_path)) and err.count("\n") == 1
    assert not run.exists()


class FakeClip(nn.Module):
    """A frozen stand-in for a pretrained open_clip text tower (no download): a fixed projection of each
    prompt's first bytes to text_dim."""

    def __init__(self, spec, text_dim: int):
        super().__init__()
        self.proj = nn.Linear(16, text_dim)
        self.requires_grad_(False)

    def forward(self, prompts: list[str]) -> torch.Tensor:
        codes = [list((p.encode() + bytes(16))[:16]) for p in prompts]
        return self.proj(torch.tensor(codes, dtype=torch.float32, device=self.proj.weight.device) / 255)


def test_training_with_a_frozen_clip_text_encoder(pair_dir, tmp_path, monkeypatch):
    from safetensors import safe_open

    from swinfuse.model import text
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.model.config import TextEncoderSpec

    monkeypatch.setattr(text, "ClipTextEncoder", FakeClip)
    run = tmp_path / "run"
    compact = ["train", "--data", str(pair_dir), "--out", str(run), "--steps", "2", *TINY]
    argv = [*compact, "--text-encoder", "ViT-B-32:laion2b_s34b_b79k"]
    first = runner.invoke(app, argv + ["--stop-after", "1"])
    assert first.exit_code == 0, first.output
    state = torch.load(run / "trainer_state.pt", weights_only=True)
    frozen = state["model"]["text_encoder.proj.weight"].clone()
    trainable = sum(1 for k in state["model"] if not k.startswith("text_encoder."))
    assert sum(len(g["params"]) for g in state["optimizer"]["param_groups"]) == trainable  # the CLIP is not optimised
    resumed = runner.invoke(app, argv + ["--resume"])
    assert resumed.exit_code == 0 and "finished at step 2/2" in resumed.stderr, resumed.output
    refused = runner.invoke(app, compact + ["--resume"])  # the compact encoder now
    assert isinstance(refused.exception, Exception) and "text_encoder='ViT-B-32:laion2b_s34b_b79k'" in str(refused.exception)

    with safe_open(str(run / "model.safetensors"), "pt") as f:
        assert not any(k.startswith("text_encoder.") for k in f.keys())  # rebuilt from its spec, not copied
    model, meta = load_checkpoint(run / "model.safetensors")
    assert model.config.text == TextEncoderSpec(kind="clip", model_name="ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert model.config.text_dim == 512 and meta["provenance"]["step"] == 2
    assert torch.equal(torch.load(run / "trainer_state.pt", weights_only=True)["model"]["text_encoder.proj.weight"], frozen)


@pytest.mark.slow
def test_training_with_an_untrained_real_clip(pair_dir, tmp_path):
    """A real open_clip text tower, untrained on purpose (nothing to download): built, frozen, trained
    around, and rebuilt identically when the checkpoint loads."""
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.model.config import CLIP_RANDOM

    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(pair_dir), "--out", str(run), "--steps", "1", "--json",
                                 "--text-encoder", f"RN50:{CLIP_RANDOM}", *TINY])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["finished"]
    model, _ = load_checkpoint(run / "model.safetensors")
    assert model.config.text.model_name == "RN50" and model.config.text_dim == 1024
    with torch.no_grad():
        assert model.encode_prompts(["the visible image is hazy"]).shape == (1, 1024)
