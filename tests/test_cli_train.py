"""`swinfuse train` (swinfuse/cli/train.py): options -> api.train_args -> api.train -> one line on stderr or
--json; the exact one-line errors, Ctrl-C and exit codes; --text-encoder with a frozen CLIP, offline."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn
from safetensors import safe_open
from typer.testing import CliRunner

from swinfuse.cli import app
from test_training import pair_dir  # noqa: F401  (the training tests' tiny pairs)

runner = CliRunner()
TINY = ["--preset", "smoke", "--batch-size", "2", "--crop", "16", "--val-count", "2", "--val-crop", "16",
        "--warmup", "1", "--threads", "1", "--no-progress"]


def _main(argv, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run the `swinfuse` entry (the one error map) -> (exit code, stdout, stderr)."""
    from swinfuse.cli import main

    monkeypatch.setattr(sys, "argv", ["swinfuse", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_train_command_runs(pair_dir, tmp_path):
    out = tmp_path / "cli"
    result = runner.invoke(app, ["train", "--data", str(pair_dir), "--out", str(out), "--preset", "smoke",
                                      "--steps", "2", "--batch-size", "2", "--crop", "16", "--val-count", "2",
                                      "--val-crop", "16", "--warmup", "1", "--threads", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").exists() and "finished at step 2/2" in result.stderr


def test_train_command_with_the_frame_matched_target_records_it(pair_dir, tmp_path):
    from swinfuse.model.checkpoint import load_checkpoint

    out = tmp_path / "frame"
    result = runner.invoke(app, ["train", "--data", str(pair_dir), "--out", str(out), "--preset", "smoke",
                                 "--steps", "2", "--batch-size", "2", "--crop", "16", "--val-count", "2",
                                 "--val-crop", "16", "--warmup", "1", "--threads", "1", "--no-progress",
                                 "--intensity-target", "max-frame", "--gamma-jitter", "0.3"])
    assert result.exit_code == 0, result.output
    _, meta = load_checkpoint(out / "model.safetensors")
    assert meta["provenance"]["intensity_target"] == "max-frame"


def test_train_command_rejects_bad_loss_weights(tmp_path, monkeypatch, capsys):
    for bad in ("10,20", "10,x,20", "10,-1,20", "10,nan,20"):
        code, out, err = _main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "x"), "--loss-weights", bad],
                               monkeypatch, capsys)
        assert code == 1 and out == ""
        assert err == ("Error: --loss-weights takes three non-negative numbers like 10,20,20, then optionally a "
                       f"pyramid and an SCD weight like 10,10,60,0,5; got {bad!r}\n")
    assert not (tmp_path / "x").exists()


def test_train_command_needs_data(tmp_path, monkeypatch, capsys):
    code, out, err = _main(["train", "--out", str(tmp_path / "run")], monkeypatch, capsys)
    assert code == 2 and out == "" and not (tmp_path / "run").exists()  # a usage error, as typer prints them
    assert "give at least one folder of pairs to train on" in err


def test_train_command_resuming_a_finished_run_says_so(pair_dir, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--data", str(pair_dir), "--out", str(run), "--preset", "smoke", "--steps", "2", "--batch-size", "2",
            "--crop", "16", "--val-count", "2", "--val-every", "0", "--val-crop", "16", "--warmup", "1",
            "--threads", "1", "--no-progress"]
    assert runner.invoke(app, argv).exit_code == 0
    before = (run / "model.safetensors").read_bytes()
    again = runner.invoke(app, argv + ["--resume"])
    assert again.exit_code == 0 and "nothing to do" in again.output and "nan" not in again.output
    assert (run / "model.safetensors").read_bytes() == before
    assert runner.invoke(app, argv[:-3] + ["--threads", "-3", "--no-progress"]).exit_code == 2


def test_train_command_interrupted_says_what_was_saved(pair_dir, tmp_path, monkeypatch):
    from swinfuse.training import trainer

    def interrupted(args, progress=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    result = runner.invoke(app, ["train", "--data", str(pair_dir), "--out", str(tmp_path / "run")])
    assert result.exit_code == 130 and "nothing saved yet" in result.output and "--resume" in result.output


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
    assert code == 2 and "'tpu' is not one of auto, cpu, cuda, cuda:N" in err  # a usage error, before anything loads
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


# -- one line for every bad input, nothing half-done (issue 21) ----------------------------------------------
def test_an_out_that_is_a_file_or_read_only_is_one_line_and_creates_nothing(pair_dir, tmp_path, monkeypatch, capsys):
    import os
    from pathlib import Path

    afile = tmp_path / "taken"
    afile.write_text("x")
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(afile), *TINY], monkeypatch, capsys)
    assert (code, out) == (1, "") and err == f"Error: --out {afile}: is a file, expected a run folder\n"
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if str(Path(p)).startswith(str(ro))
                        else real(p, m, *a, **k))
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(ro / "run"), *TINY], monkeypatch, capsys)
    assert (code, out) == (1, "") and err == f"Error: {ro / 'run'}: its folder {ro} is not writable\n"
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("content", [b"PK\x03\x04truncated", "pickle"], ids=["truncated", "pickled"])
def test_resuming_an_unreadable_state_is_one_line(content, pair_dir, tmp_path, monkeypatch, capsys):
    import pickle

    run = tmp_path / "run"
    run.mkdir()
    if content == "pickle":
        content = pickle.dumps({"format": __import__("collections").OrderedDict(a=print)})
    (run / "trainer_state.pt").write_bytes(content)
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(run), "--resume", *TINY], monkeypatch, capsys)
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith(f"Error: cannot resume {run / 'trainer_state.pt'}: not a readable training state")


def test_ctrl_c_saves_the_steps_done_and_a_new_run_starts_its_own_log(pair_dir, tmp_path):
    import swinfuse
    from swinfuse.training.state import last_saved

    run = tmp_path / "run"
    args = dict(data=(str(pair_dir),), out=str(run), preset="smoke", steps=10, batch_size=2, crop=16, val_count=2,
                val_crop=16, warmup=1, threads=1, val_every=0, log_every=1)

    def stop_at_3(step, steps, loss, rate):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        swinfuse.train(progress=stop_at_3, **args)
    assert info.value.saved.step == 3 and last_saved(str(run)).step == 3  # was: nothing saved yet
    (run / "trainer_state.pt").unlink()  # the log stays behind; the next run is a new one
    swinfuse.train(**{**args, "steps": 2})
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and max(steps) == 2  # this run's records only


def test_train_command_grows_stages_with_depths(pair_dir, tmp_path, monkeypatch, capsys):
    first, deep = tmp_path / "first", tmp_path / "deep"
    code, _, err = _main(["train", "--data", str(pair_dir), "--out", str(first), "--steps", "1", *TINY],
                         monkeypatch, capsys)
    assert code == 0, err
    code, _, err = _main(["train", "--data", str(pair_dir), "--out", str(deep), "--steps", "1", "--depths", "ex=2",
                          "--init", str(first / "model.safetensors"), *TINY], monkeypatch, capsys)
    assert code == 0, err
    with safe_open(str(deep / "model.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["config"])["ex_depths"] == [2]
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(tmp_path / "bad"), "--depths", "ex=0",
                            *TINY], monkeypatch, capsys)
    assert code == 1 and err == "Error: depths entry 'ex=0': every depth must be >= 1\n"


def test_train_command_output_option(pair_dir, tmp_path, monkeypatch, capsys):
    from swinfuse.model.config import FusionConfig

    smoke = FusionConfig.smoke
    monkeypatch.setattr(FusionConfig, "smoke", classmethod(
        lambda cls, **kw: smoke(**{"upscale": 1, "upsampler": "", **kw})))
    code, _, err = _main(["train", "--data", str(pair_dir), "--out", str(tmp_path / "mix"), "--steps", "1",
                          "--output", "mix", *TINY], monkeypatch, capsys)
    assert code == 0, err
    with safe_open(str(tmp_path / "mix" / "model.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["config"])["output"] == "mix"
    code, _, err = _main(["train", "--data", str(pair_dir), "--out", str(tmp_path / "bad"), "--output", "blend",
                          *TINY], monkeypatch, capsys)
    assert code == 1 and err == "Error: output must be 'direct', 'mix', 'mix-fine' or 'mixed-base', got 'blend'\n"
    code, _, err = _main(["train", "--data", str(pair_dir), "--out", str(tmp_path / "base"), "--steps", "1",
                          "--output", "mixed-base", "--base-gain", "1.0", *TINY], monkeypatch, capsys)
    assert code == 0, err
    with safe_open(str(tmp_path / "base" / "model.safetensors"), "pt") as f:
        config = json.loads(f.metadata()["config"])
    assert config["output"] == "mixed-base" and config["base_gain"] == 1.0
    code, _, err = _main(["train", "--data", str(pair_dir), "--out", str(tmp_path / "bad2"), "--base-gain", "3",
                          *TINY], monkeypatch, capsys)
    assert code == 1 and err == "Error: base gain must be in [0, 2] (0 keeps the preset's), got 3.0\n"
