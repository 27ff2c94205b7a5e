"""Training: degradations, prompt corpus, SwinFusion's loss, the loop (exact resume, torchrun)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from swinfuse.training import degrade as D
from swinfuse.training import prompts as P
from swinfuse.training.losses import WEIGHTS, fusion_loss, sobel_magnitude, ssim


def _scene(h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """A smooth image with some edges, (1, H, W) in [0.1, 0.9]."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = 0.5 + 0.3 * torch.sin(6 * x + 3 * y) + 0.1 * (x > 0.5).float() - 0.05 * torch.rand(h, w, generator=g)
    return img.clamp(0.1, 0.9)[None]


# ---- degradations ----------------------------------------------------------------------------------

def test_registry_has_nine_kinds_with_modalities():
    assert len(D.KINDS) == 9 and "none" in D.KINDS
    assert sum(k.modality == "vis" for k in D.KINDS.values()) == 5
    assert sum(k.modality == "ir" for k in D.KINDS.values()) == 3


@pytest.mark.parametrize("kind", list(D.KINDS))
def test_degradation_is_deterministic_in_range_and_touches_one_source(kind):
    ir, vis = _scene(seed=1), _scene(seed=2)
    a = D.degrade(kind, ir, vis, torch.Generator().manual_seed(3))
    b = D.degrade(kind, ir, vis, torch.Generator().manual_seed(3))
    c = D.degrade(kind, ir.numpy(), vis.numpy(), np.random.default_rng(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert isinstance(c[0], np.ndarray) and c[1].shape == (1, 32, 32)
    modality = D.KINDS[kind].modality
    for name, src, out in (("ir", ir, a[0]), ("vis", vis, a[1])):
        assert out.shape == src.shape and out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, src) == (modality != name), (kind, name)


def test_degradations_do_what_their_names_say():
    img, g = _scene(), lambda: torch.Generator().manual_seed(0)
    assert D.degrade_image("vis_low_light", img, g()).mean() < 0.6 * img.mean()
    assert D.degrade_image("vis_overexposure", img, g()).mean() > img.mean() + 0.15
    assert sobel_magnitude(D.degrade_image("vis_blur", img, g())[None]).mean() < sobel_magnitude(img[None]).mean()
    assert D.degrade_image("ir_low_contrast", img, g()).std() < 0.55 * img.std()
    hazy = D.degrade_image("vis_haze", img, g())
    assert hazy.mean() > img.mean() and hazy.std() < img.std()
    stripes = D.degrade_image("ir_stripe_noise", img, g()) - img
    # fixed-pattern: the error varies across columns far more than down a column
    assert stripes.mean(dim=-2).var() > 4 * stripes.var(dim=-2).mean()
    noise = D.degrade_image("vis_noise", img, g()) - img
    assert 0.02 < noise.std() < 0.2


def test_degrade_fixed_depends_only_on_kind_and_seed():
    ir, vis = _scene(seed=1), _scene(seed=2)
    a = D.degrade_fixed("vis_noise", ir, vis, seed=5)[1]
    assert torch.equal(a, D.degrade_fixed("vis_noise", ir, vis, seed=5)[1])
    assert not torch.equal(a, D.degrade_fixed("vis_noise", ir, vis, seed=6)[1])
    with pytest.raises(ValueError, match="unknown degradation"):
        D.degrade("rain", ir, vis, torch.Generator())


# ---- prompts ---------------------------------------------------------------------------------------

def test_corpus_covers_every_kind_and_held_out_is_disjoint():
    assert set(P.CORPUS) == set(D.KINDS) == set(P.HELD_OUT)
    for kind in D.KINDS:
        assert len(P.CORPUS[kind]) >= 15 and len(set(P.CORPUS[kind])) == len(P.CORPUS[kind])
        assert len(P.HELD_OUT[kind]) >= 5
        assert not set(P.HELD_OUT[kind]) & {p for ps in P.CORPUS.values() for p in ps}
    assert "" in P.CORPUS["none"]


def test_sample_and_augment_are_deterministic_and_keep_keywords():
    draw = lambda seed: [P.sample_prompt("ir_stripe_noise", np.random.default_rng(seed), augment=1.0) for _ in range(3)]
    assert draw(0) == draw(0)
    rng = np.random.default_rng(1)
    assert P.sample_prompt("vis_haze", rng) in P.CORPUS["vis_haze"]
    text = "the infrared image has stripe noise"
    edited = [P.augment_prompt(text, rng, p=1.0) for _ in range(50)]
    assert any(e != text for e in edited)
    for e in edited:
        assert {"infrared", "stripe", "noise"} <= set(e.split())
    assert P.augment_prompt(text, rng, p=0.0) == text
    assert len(P._word_pool()) > 1000


# ---- loss ------------------------------------------------------------------------------------------

def test_fusion_loss_terms_and_weights():
    assert WEIGHTS == {"ssim": 10.0, "intensity": 20.0, "gradient": 20.0}
    ir, vis = _scene(seed=1)[None], _scene(seed=2).flip(-1)[None]
    assert torch.allclose(ssim(ir, ir), torch.ones(1))
    fused = torch.rand_like(ir, requires_grad=True)
    total, terms = fusion_loss(ir, vis, fused)
    assert torch.allclose(total, terms["ssim"] + terms["intensity"] + terms["gradient"])
    total.backward()
    assert fused.grad is not None and fused.grad.abs().sum() > 0
    good, terms_good = fusion_loss(ir, vis, torch.maximum(ir, vis))
    assert terms_good["intensity"] == 0 and good < total


# ---- the loop --------------------------------------------------------------------------------------

@pytest.fixture
def pair_dir(tmp_path):
    import cv2

    root = tmp_path / "pairs"
    (root / "ir").mkdir(parents=True)
    (root / "vis").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        base = (_scene(36, 44, seed=i)[0].numpy() * 255).astype(np.uint8)
        cv2.imwrite(str(root / "ir" / f"p{i}.png"), base)
        colour = np.stack([base, np.flipud(base), rng.integers(0, 255, base.shape, dtype=np.uint8)], axis=-1)
        cv2.imwrite(str(root / "vis" / f"p{i}.png"), colour)
    return root


def _args(data, out, **kw):
    from swinfuse.training.args import TrainArgs

    base = dict(data=data if isinstance(data, tuple) else str(data), out=str(out), preset="smoke", steps=4, batch_size=2, crop=16, val_count=2,
                val_every=0, val_crop=16, warmup=1, log_every=1, progress=False, threads=1, command="test")
    return TrainArgs(**{**base, **kw})


def test_split_keeps_last_stems_for_validation(pair_dir):
    from swinfuse.training.batches import split_pairs

    train, val = split_pairs(pair_dir, 2)
    assert [s for s, _, _ in train] == ["p0", "p1", "p2", "p3"] and [s for s, _, _ in val] == ["p4", "p5"]


def test_train_writes_checkpoint_with_provenance_and_log(pair_dir, tmp_path):
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.training.trainer import train

    result = train(_args(pair_dir, tmp_path / "run", val_every=2))
    assert result.finished and result.step == 4 and np.isfinite(result.val_loss)
    model, meta = load_checkpoint(tmp_path / "run" / "model.safetensors")
    prov = meta["provenance"]
    assert prov["command"] == "test" and prov["step"] == 4 and prov["val_loss"] == result.val_loss
    assert prov["split"]["val_stems"] == ["p4", "p5"] and prov["split"]["train_count"] == 4
    assert prov["git_commit"] and prov["date"]
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "val"] == [2, 4]
    assert {"loss", "ssim", "intensity", "gradient", "lr", "steps_per_s"} <= set(records[0])
    state = torch.load(tmp_path / "run" / "trainer_state.pt", weights_only=True)
    assert state["step"] == 4 and {"python", "numpy", "torch"} <= set(state["rng"][0])


def test_resume_continues_exactly(pair_dir, tmp_path):
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "straight"))
    train(_args(pair_dir, tmp_path / "split", stop_after=2))
    half = torch.load(tmp_path / "split" / "trainer_state.pt", weights_only=True)
    assert half["step"] == 2
    train(_args(pair_dir, tmp_path / "split", resume=True))
    a = torch.load(tmp_path / "straight" / "trainer_state.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "trainer_state.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-6, msg=key)
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])


def test_resume_refuses_changed_settings(pair_dir, tmp_path):
    from swinfuse.errors import CheckpointError
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "run", stop_after=1))
    with pytest.raises(CheckpointError, match="crop=16"):
        train(_args(pair_dir, tmp_path / "run", crop=24, resume=True))


def test_init_warm_starts_from_a_checkpoint_and_records_it(pair_dir, tmp_path):
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "first"))
    first = tmp_path / "first" / "model.safetensors"
    # lr 0: the weights never move, so the run ends with exactly what it started from
    train(_args(pair_dir, tmp_path / "warm", init=str(first), lr=0.0, seed=3, loss_weights=(10.0, 20.0, 40.0)))
    train(_args(pair_dir, tmp_path / "cold", lr=0.0, seed=3))
    start, _ = load_checkpoint(first)
    warm, meta = load_checkpoint(tmp_path / "warm" / "model.safetensors")
    cold, _ = load_checkpoint(tmp_path / "cold" / "model.safetensors")
    s0, sw, sc = start.state_dict(), warm.state_dict(), cold.state_dict()
    assert all(torch.equal(s0[k], sw[k]) for k in s0)
    assert not all(torch.equal(s0[k], sc[k]) for k in s0)
    prov = meta["provenance"]
    assert prov["init"]["path"] == str(first) and prov["init"]["command"] == "test" and prov["init"]["step"] == 4
    assert prov["loss_weights"] == {"ssim": 10.0, "intensity": 20.0, "gradient": 40.0}


def test_resuming_a_warm_started_run_needs_no_init_file(pair_dir, tmp_path):
    """The warm start's record travels in the trainer state: once the run has saved, the --init checkpoint
    may be moved away and the run still resumes, and the final checkpoint records the same start."""
    import shutil

    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "first"))
    first = tmp_path / "init.safetensors"
    shutil.copy(tmp_path / "first" / "model.safetensors", first)
    train(_args(pair_dir, tmp_path / "warm", init=str(first), stop_after=2))
    record = load_checkpoint(tmp_path / "warm" / "model.safetensors")[1]["provenance"]["init"]
    first.unlink()
    result = train(_args(pair_dir, tmp_path / "warm", init=str(first), resume=True))
    assert result.finished and result.step == 4
    assert load_checkpoint(tmp_path / "warm" / "model.safetensors")[1]["provenance"]["init"] == record
    assert record["path"] == str(first) and record["step"] == 4


def test_init_refuses_another_architecture_and_resume_refuses_other_loss_weights(pair_dir, tmp_path):
    from swinfuse.errors import CheckpointError
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "smoke"))
    with pytest.raises(CheckpointError, match="different model than preset 'default'"):
        train(_args(pair_dir, tmp_path / "big", preset="default", init=str(tmp_path / "smoke" / "model.safetensors")))
    train(_args(pair_dir, tmp_path / "run", stop_after=1, loss_weights=(10.0, 20.0, 40.0)))
    with pytest.raises(CheckpointError, match="loss_weights"):
        train(_args(pair_dir, tmp_path / "run", resume=True))


def test_init_converts_a_head_count_change(pair_dir, tmp_path, monkeypatch):
    import dataclasses

    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.model.config import FusionConfig
    from swinfuse.training.trainer import train

    smoke = FusionConfig.smoke
    train(_args(pair_dir, tmp_path / "two"))  # smoke preset: one head everywhere
    monkeypatch.setattr(FusionConfig, "smoke", classmethod(
        lambda cls, **kw: dataclasses.replace(smoke(**kw), ex_num_heads=(2,), fusion_num_heads=(2,),
                                              re_num_heads=(2,))))
    train(_args(pair_dir, tmp_path / "conv", init=str(tmp_path / "two" / "model.safetensors"), lr=0.0))
    a, _ = load_checkpoint(tmp_path / "two" / "model.safetensors")
    b, meta = load_checkpoint(tmp_path / "conv" / "model.safetensors")
    assert b.config.ex_num_heads == (2,) and meta["provenance"]["init"]["converted"]["ex_num_heads"] == [[1], [2]]
    sa, sb = a.state_dict(), b.state_dict()
    for key in sa:
        if key.endswith("relative_position_bias_table"):
            assert sb[key].shape[1] == 2 and torch.equal(sb[key][:, 0], sa[key][:, 0]) and torch.equal(sb[key][:, 1], sa[key][:, 0])
        else:
            assert torch.equal(sa[key], sb[key]), key


def test_init_with_deeper_stages_starts_as_the_checkpoints_network(pair_dir, tmp_path):
    """--depths: the blocks the checkpoint lacks come after its own and start as the identity, so the grown
    network's output is the checkpoint's; its record names what grew."""
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "small"))
    small_file = str(tmp_path / "small" / "model.safetensors")
    train(_args(pair_dir, tmp_path / "deep", init=small_file, lr=0.0, depths="ex=2,fusion=3,re=2"))
    small, _ = load_checkpoint(small_file)
    deep, meta = load_checkpoint(tmp_path / "deep" / "model.safetensors")
    assert (deep.config.ex_depths, deep.config.fusion_depths, deep.config.re_depths) == ((2,), (3,), (2,))
    assert meta["provenance"]["init"]["converted"]["fusion_depths"] == [[1], [3]]
    ss, sd = small.state_dict(), deep.state_dict()
    assert all(torch.equal(ss[k], sd[k]) for k in ss)  # every old weight where it was
    added = [k for k in sd if k not in ss]
    assert added and all(".blocks.1." in k or ".blocks.2." in k for k in added)
    assert all(not sd[k].any() for k in added if ".attn.proj." in k or ".mlp.fc2." in k)
    assert any(sd[k].any() for k in added if ".attn.qkv." in k)  # the rest starts random, ready to learn
    torch.manual_seed(0)
    ir, vis = torch.rand(1, 1, 24, 20), torch.rand(1, 1, 24, 20)
    small.eval(), deep.eval()
    with torch.no_grad():
        text = small.encode_prompts(["fuse"])
        torch.testing.assert_close(deep(ir, vis, text), small(ir, vis, text), atol=0, rtol=0)


@pytest.mark.parametrize("depths, error, message", [
    ("ex=3,deep=2", "ConfigError",
     "depths entries are GROUP=DEPTH (DEPTH/DEPTH for two stages) with GROUP one of ex, fusion, re, got 'deep=2'"),
    ("ex=two", "ConfigError", "depths entry 'ex=two': depths must be whole numbers"),
    ("ex=0", "ConfigError", "depths entry 'ex=0': every depth must be >= 1"),
    ("ex=2,ex=3", "ConfigError", "depths names 'ex' twice"),
    ("re=2/2", "ConfigError", "--depths gives 2 stage(s) for re, preset 'smoke' has 1"),
])
def test_bad_depths_are_one_line_errors(pair_dir, tmp_path, depths, error, message):
    from swinfuse import errors
    from swinfuse.training.trainer import train

    with pytest.raises(getattr(errors, error)) as info:
        train(_args(pair_dir, tmp_path / "run", depths=depths))
    assert str(info.value) == message and not (tmp_path / "run").exists()


def _smoke_at_full_size(monkeypatch):
    """The smoke preset without its 2x upscale (a 'mix' output needs the sources' size)."""
    from swinfuse.model.config import FusionConfig

    smoke = FusionConfig.smoke
    monkeypatch.setattr(FusionConfig, "smoke", classmethod(
        lambda cls, **kw: smoke(**{"upscale": 1, "upsampler": "", **kw})))


def test_init_from_a_direct_checkpoint_with_mix_output_starts_as_the_sources_mean(pair_dir, tmp_path, monkeypatch):
    """--output mix from a 'direct' checkpoint: every weight but the head's last conv is the checkpoint's, that
    conv starts at zero (the fusion is mean(visible, infrared)), and it learns; the way back is refused."""
    from swinfuse.errors import CheckpointError
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.training.trainer import train

    _smoke_at_full_size(monkeypatch)
    train(_args(pair_dir, tmp_path / "direct"))
    direct_file = str(tmp_path / "direct" / "model.safetensors")
    train(_args(pair_dir, tmp_path / "still", init=direct_file, lr=0.0, output="mix"))
    direct, _ = load_checkpoint(direct_file)
    mixed, meta = load_checkpoint(tmp_path / "still" / "model.safetensors")
    assert mixed.config.output == "mix" and meta["provenance"]["init"]["converted"]["output"] == ["direct", "mix"]
    sd, sm = direct.state_dict(), mixed.state_dict()
    head = [k for k in sm if sm[k].shape != sd[k].shape]
    assert sorted(head) == ["decoder.head.body.4.bias", "decoder.head.body.4.weight"]
    assert all(torch.equal(sd[k], sm[k]) for k in sd if k not in head) and not any(sm[k].any() for k in head)
    torch.manual_seed(0)
    ir, vis = torch.rand(1, 1, 24, 20), torch.rand(1, 1, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(mixed.eval()(ir, vis, "fuse"), (ir + vis) / 2)
    train(_args(pair_dir, tmp_path / "learns", init=direct_file, output="mix"))
    learnt, _ = load_checkpoint(tmp_path / "learns" / "model.safetensors")
    assert learnt.state_dict()["decoder.head.body.4.weight"].any()
    with pytest.raises(CheckpointError, match="different model than preset 'smoke'"):
        train(_args(pair_dir, tmp_path / "back", init=str(tmp_path / "learns" / "model.safetensors")))


def test_init_from_a_direct_checkpoint_with_mixed_base_output_starts_as_the_base(pair_dir, tmp_path, monkeypatch):
    """--output mixed-base from a 'direct' checkpoint: the same head, its last conv zeroed, so the fusion starts
    as the base; every other weight is the checkpoint's; it trains (frame means reach the forward) and learns."""
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.model.network import frame_means, mixed_base
    from swinfuse.training.trainer import train

    _smoke_at_full_size(monkeypatch)
    train(_args(pair_dir, tmp_path / "direct"))
    direct_file = str(tmp_path / "direct" / "model.safetensors")
    train(_args(pair_dir, tmp_path / "still", init=direct_file, lr=0.0, output="mixed-base"))
    direct, _ = load_checkpoint(direct_file)
    based, meta = load_checkpoint(tmp_path / "still" / "model.safetensors")
    assert based.config.output == "mixed-base"
    assert meta["provenance"]["init"]["converted"]["output"] == ["direct", "mixed-base"]
    sd, sb = direct.state_dict(), based.state_dict()
    head = ["decoder.head.body.4.bias", "decoder.head.body.4.weight"]
    assert all(torch.equal(sd[k], sb[k]) for k in sd if k not in head) and not any(sb[k].any() for k in head)
    assert all(sd[k].any() for k in head)
    torch.manual_seed(0)
    ir, vis = torch.rand(1, 1, 24, 20), torch.rand(1, 1, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(based.eval()(ir, vis, "fuse"), mixed_base(ir, vis, frame_means(ir, vis)))
    train(_args(pair_dir, tmp_path / "learns", init=direct_file, output="mixed-base", base_gain=1.0,
                intensity_target="mixed-frame:0.3:1.0"))
    learnt, meta = load_checkpoint(tmp_path / "learns" / "model.safetensors")
    assert learnt.state_dict()["decoder.head.body.4.weight"].any() and learnt.config.base_gain == 1.0
    assert meta["provenance"]["init"]["converted"]["base_gain"] == [0.7, 1.0]


def test_input_frame_means_move_the_clean_frames_by_the_crops_degradation():
    """A clean crop gets its clean frame's means; a degraded one those moved by what the degradation moved the
    crop's; a NaN row (no frame) the crop's own; and the base at these means is the mixed-frame target."""
    from swinfuse.model.network import frame_means, mixed_base
    from swinfuse.training.losses import fusion_loss
    from swinfuse.training.trainer import input_frame_means

    torch.manual_seed(0)
    ir, vis = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    stats = torch.tensor([[-0.1, 0.4, 0.5], [-0.2, 0.3, 0.2], [float("nan")] * 3])  # shift, mean ir, mean vis
    clean = torch.tensor([[0.4, 0.5, 0.6], [0.3, 0.2, 0.5]])
    torch.testing.assert_close(input_frame_means(stats, ir, vis, ir, vis)[:2], clean)
    dark = vis * 0.5
    got = input_frame_means(stats, ir, dark, ir, vis)
    moved = frame_means(ir, dark)[:2] - frame_means(ir, vis)[:2]
    torch.testing.assert_close(got[:2], clean + moved)
    torch.testing.assert_close(got[2], frame_means(ir, dark)[2])
    only = {"ssim": 0.0, "gradient": 0.0, "intensity": 1.0}
    base = mixed_base(ir[:2], vis[:2], clean)
    _, terms = fusion_loss(ir[:2], vis[:2], base, only, intensity_target="mixed-frame", frame=stats[:2])
    assert float(terms["intensity"]) < 1e-6


def test_bad_output_is_a_one_line_error(pair_dir, tmp_path):
    from swinfuse.errors import ConfigError
    from swinfuse.training.trainer import train

    with pytest.raises(ConfigError) as info:
        train(_args(pair_dir, tmp_path / "run", output="blend"))
    assert str(info.value) == "output must be 'direct', 'mix', 'mix-fine' or 'mixed-base', got 'blend'" and not (tmp_path / "run").exists()


def test_init_refuses_a_checkpoint_deeper_than_depths(pair_dir, tmp_path):
    from swinfuse.errors import CheckpointError
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "deep", depths="fusion=2"))
    with pytest.raises(CheckpointError, match="different model than preset 'smoke'"):
        train(_args(pair_dir, tmp_path / "small", init=str(tmp_path / "deep" / "model.safetensors")))


def test_recorded_command_names_swinfuse_for_python_dash_m(monkeypatch):
    from swinfuse.training.provenance import invocation

    monkeypatch.setattr(sys, "argv", ["/x/swinfuse/__main__.py", "train", "--out", "a b"])
    assert invocation() == "swinfuse train --out 'a b'"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/swinfuse", "train"])
    assert invocation() == "swinfuse train"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(pair_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "swinfuse", "train",
           "--data", str(pair_dir), "--out", str(out), "--preset", "smoke", "--steps", "3", "--batch-size", "4",
           "--crop", "16", "--val-count", "2", "--val-crop", "16", "--warmup", "1", "--val-every", "2",
           "--device", "cpu", "--threads", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    assert state["step"] == 3 and len(state["rng"]) == 2
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["type"] == "val"] == [2, 3]


@pytest.mark.parametrize("bad", [(10.0, 20.0), (10.0, -1.0, 20.0), (10.0, float("inf"), 20.0), ("10", "x", "20")])
def test_train_from_python_rejects_bad_loss_weights(pair_dir, tmp_path, bad):
    """TrainArgs from Python gets the CLI's check: one ConfigError before the run folder is made."""
    from swinfuse.errors import ConfigError
    from swinfuse.training.trainer import train

    with pytest.raises(ConfigError, match="loss weights must be 3 non-negative numbers"):
        train(_args(pair_dir, tmp_path / "run", loss_weights=bad))
    assert not (tmp_path / "run").exists()


# ---- several folders, augmentation, other cameras --------------------------------------------------

def _copy_dir(src: Path, dst: Path, scale: float = 1.0) -> Path:
    import cv2

    for sub in ("ir", "vis"):
        (dst / sub).mkdir(parents=True)
        for f in (src / sub).iterdir():
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(dst / sub / f.name), cv2.resize(img, None, fx=scale, fy=scale) if scale != 1 else img)
    return dst


def test_data_spec_parses_weights_and_refuses_bad_ones():
    from swinfuse.errors import InputError
    from swinfuse.training.sampling import DataSpec, as_specs

    assert DataSpec.parse("a/b") == DataSpec("a/b", 1.0)
    assert DataSpec.parse("a/b:0.5") == DataSpec("a/b", 0.5)
    assert DataSpec.parse("c:/x/y") == DataSpec("c:/x/y", 1.0)  # a colon that belongs to the path
    for bad in ("a:0", "a:-1", "a:nan"):
        with pytest.raises(InputError, match="weight"):
            DataSpec.parse(bad)
    with pytest.raises(InputError, match="--data"):
        as_specs(())


def test_folders_are_drawn_by_weight():
    from swinfuse.training.sampling import WeightedPairs

    a, b = [(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))] * 10, [(torch.ones(1, 4, 4), torch.ones(1, 4, 4))]
    pool = WeightedPairs([a, b], [1.0, 3.0])  # one pair in b, but b is drawn 3 times as often as all of a
    rng = np.random.default_rng(0)
    share_b = np.mean([float(pool.draw(rng)[0].mean()) for _ in range(4000)])
    assert 0.72 < share_b < 0.78


def test_random_crop_rescales_and_jitters_each_modality_alone():
    from swinfuse.training.sampling import Augment, random_crop

    ir, vis = _scene(64, 64, seed=1), _scene(64, 64, seed=2)
    plain = random_crop(ir, vis, 16, np.random.default_rng(5), Augment())
    assert plain[0].shape == (1, 16, 16)
    # a plain crop is a piece of the source; a rescaled one (zoomed out 2-4x) is not, but keeps its range
    assert any(torch.equal(plain[0], ir[:, y:y + 16, x:x + 16]) or torch.equal(plain[0].flip(-1), ir[:, y:y + 16, x:x + 16])
               or torch.equal(plain[0].flip(-2), ir[:, y:y + 16, x:x + 16])
               or torch.equal(plain[0].flip(-1).flip(-2), ir[:, y:y + 16, x:x + 16])
               for y in range(49) for x in range(49))
    zoomed = random_crop(ir, vis, 16, np.random.default_rng(5), Augment(rescale=4.0))
    assert zoomed[0].shape == (1, 16, 16) and 0 <= float(zoomed[0].min()) and float(zoomed[0].max()) <= 1
    jit = [random_crop(ir, vis, 16, np.random.default_rng(s), Augment(gamma=0.5, gain=0.3)) for s in range(20)]
    ratios = [float(j[0].mean() / j[1].mean()) for j in jit]
    assert np.std(ratios) > 0.05  # the two modalities are jittered independently


def test_signed_gradient_target_wants_the_polarity_of_the_stronger_edge():
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1.0
    ir, vis = step, 1 - step * 0.5  # the same edge, opposite polarity, ir's stronger
    for target, expect_zero in (("magnitude", True), ("signed", False)):
        _, t_flipped = fusion_loss(ir, vis, 1 - step, {"ssim": 0, "intensity": 0, "gradient": 1}, target)
        _, t_right = fusion_loss(ir, vis, step, {"ssim": 0, "intensity": 0, "gradient": 1}, target)
        assert float(t_right["gradient"]) == 0
        assert (float(t_flipped["gradient"]) == 0) == expect_zero


def test_train_on_several_folders_validates_other_cameras(pair_dir, tmp_path):
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.training.trainer import train

    second = _copy_dir(pair_dir, tmp_path / "second", scale=0.75)
    other = _copy_dir(pair_dir, tmp_path / "other_camera")
    train(_args((str(pair_dir), f"{second}:2"), tmp_path / "run", val_data=(str(other),),
                rescale=1.5, gamma_jitter=0.2, gain_jitter=0.2, clean_share=0.5, gradient_target="signed"))
    prov = load_checkpoint(tmp_path / "run" / "model.safetensors")[1]["provenance"]
    assert [(Path(d["path"]).name, d["weight"], d["pairs"]) for d in prov["data"]] == [("pairs", 1.0, 4), ("second", 2.0, 6)]
    assert [Path(d["path"]).name for d in prov["val_data"]] == ["other_camera"]
    assert prov["gradient_target"] == "signed" and prov["augment"]["rescale"] == 1.5
    val = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()][-1]
    assert set(val["val_clean_by_folder"]) == {"other_camera"} and np.isfinite(val["val_clean_by_folder"]["other_camera"])


def test_train_refuses_an_existing_run_without_resume_or_overwrite(pair_dir, tmp_path):
    from swinfuse.errors import InputError
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "run", steps=1))
    before = (tmp_path / "run" / "trainer_state.pt").read_bytes()
    with pytest.raises(InputError, match="--resume.*--overwrite"):
        train(_args(pair_dir, tmp_path / "run", steps=2))
    assert (tmp_path / "run" / "trainer_state.pt").read_bytes() == before
    train(_args(pair_dir, tmp_path / "run", steps=2, overwrite=True))
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [(r["type"], r["step"]) for r in records] == [("train", 1), ("train", 2), ("val", 2)]  # no old lines


def test_pyramid_target_keeps_the_stronger_detail_and_the_mean_base():
    from swinfuse.training.losses import fusion_loss, pyramid_fusion

    flat = torch.full((1, 1, 32, 32), 0.2)
    edge = flat.clone()
    edge[..., :, 16:] = 0.8  # a strong vertical edge in one source
    fused = pyramid_fusion(flat, edge)
    assert fused.shape == flat.shape
    assert abs(fused.mean().item() - 0.35) < 0.02  # the base averages the two sources' brightness (0.2, 0.5)
    assert fused[..., 16:].mean() - fused[..., :16].mean() > 0.4  # the edge survives at (nearly) full strength
    torch.testing.assert_close(pyramid_fusion(edge, edge), edge, atol=1e-5, rtol=0)  # one image in, itself out
    _, off = fusion_loss(flat, edge, fused)
    _, on = fusion_loss(flat, edge, fused, {"pyramid": 5.0})
    assert "pyramid" not in off and on["pyramid"] < 1e-6  # the target itself has no pyramid loss


def test_loss_weights_take_an_optional_fourth_and_fifth():
    from swinfuse.errors import ConfigError
    from swinfuse.training.args import check_loss_weights

    assert check_loss_weights([10, 20, 20]) == {"ssim": 10, "intensity": 20, "gradient": 20}
    assert check_loss_weights([10, 10, 60, 20])["pyramid"] == 20
    assert check_loss_weights([10, 10, 60, 0, 5]) == {"ssim": 10, "intensity": 10, "gradient": 60, "pyramid": 0,
                                                      "scd": 5}
    with pytest.raises(ConfigError, match="pyramid, scd"):
        check_loss_weights([1, 2, 3, 4, 5, 6])


def test_scd_term_is_the_metric_and_prefers_keeping_both_sources():
    from swinfuse.metrics.structure import scd as scd_metric
    from swinfuse.training.losses import fusion_loss, scd

    ir, vis = _scene(seed=1)[None].flip(-1) * 0.9, _scene(seed=2)[None]  # (1, 1, H, W), each brighter in places
    for fused in ((ir + vis) / 2, torch.maximum(ir, vis), 0.3 * ir + 0.9 * vis):
        assert float(scd(fused, ir, vis)) == pytest.approx(scd_metric(fused[0, 0].numpy(), ir[0, 0].numpy(),
                                                                      vis[0, 0].numpy()), abs=1e-4)
    only = {"ssim": 0, "intensity": 0, "gradient": 0, "pyramid": 0}
    _, off = fusion_loss(ir, vis, (ir + vis) / 2, only)
    _, at_mean = fusion_loss(ir, vis, (ir + vis) / 2, {**only, "scd": 1.0})
    _, at_max = fusion_loss(ir, vis, torch.maximum(ir, vis), {**only, "scd": 1.0})
    assert "scd" not in off
    assert 0 <= float(at_mean["scd"]) < float(at_max["scd"])  # the average keeps both; the max drops one
    flat = torch.full_like(ir, 0.5)
    assert torch.isfinite(scd(vis, flat, vis)).all()  # F == vis: a flat difference counts 0, not NaN
    fused = flat.clone().requires_grad_()  # a flat crop of flat sources: the loss and its gradient stay finite
    total, _ = fusion_loss(flat, flat, fused, {**only, "scd": 1.0})
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(fused.grad).all()


def test_max_matched_intensity_target_has_the_brighter_source_mean():
    ir, vis = _scene(seed=1)[None].flip(-1) * 0.9, _scene(seed=2)[None]  # each brighter in places
    brighter = torch.maximum(ir, vis)
    assert float(brighter.mean()) > max(float(ir.mean()), float(vis.mean())) + 0.02
    shifted = (brighter - (brighter.mean() - max(ir.mean(), vis.mean()))).clamp(0, 1)
    only = {"ssim": 0, "intensity": 1, "gradient": 0}
    _, at_max = fusion_loss(ir, vis, brighter, only, intensity_target="max")
    _, at_shift = fusion_loss(ir, vis, shifted, only, intensity_target="max-matched")
    _, max_under_matched = fusion_loss(ir, vis, brighter, only, intensity_target="max-matched")
    assert float(at_max["intensity"]) == 0 and float(at_shift["intensity"]) < 1e-6
    assert float(max_under_matched["intensity"]) > 1e-3  # the plain max is now too bright
    assert abs(float(shifted.mean()) - max(float(ir.mean()), float(vis.mean()))) < 0.01
    with pytest.raises(ValueError, match="intensity_target"):
        fusion_loss(ir, vis, brighter, only, intensity_target="min")


def test_mixed_intensity_target_adds_both_sources_deviations():
    from swinfuse.errors import ConfigError
    from swinfuse.training.args import TrainArgs, normalised
    from swinfuse.training.losses import deviation_gain, intensity_share

    ir, vis = _scene(seed=1)[None].flip(-1) * 0.9, _scene(seed=2)[None]
    only = {"ssim": 0, "intensity": 1, "gradient": 0}
    top = max(float(ir.mean()), float(vis.mean()))
    matched = torch.maximum(ir, vis)
    matched = (matched - (matched.mean() - top)).clamp(0, 1)
    both = (top + 0.7 * ((ir - ir.mean()) + (vis - vis.mean()))).clamp(0, 1)
    for target, share in (("mixed", 0.3), ("mixed:0.5", 0.5), ("mixed:0", 0.0)):
        expected = (1 - share) * matched + share * both
        _, at = fusion_loss(ir, vis, expected, only, intensity_target=target)
        assert float(at["intensity"]) < 1e-6, target
    _, matched_under_mixed = fusion_loss(ir, vis, matched, only, intensity_target="mixed")
    assert float(matched_under_mixed["intensity"]) > 1e-3  # the share moves the target off the matched max
    assert intensity_share("max-matched") == 0 and intensity_share("mixed:1") == 1
    gained = (top + 1.0 * ((ir - ir.mean()) + (vis - vis.mean()))).clamp(0, 1)
    _, at = fusion_loss(ir, vis, 0.5 * matched + 0.5 * gained, only, intensity_target="mixed:0.5:1.0")
    assert float(at["intensity"]) < 1e-6 and deviation_gain("mixed-frame:0.3:1") == 1.0
    assert deviation_gain("mixed") == 0.7
    for bad in ("mixed:1.5", "mixed:x", "max:0.3", "min", "mixed:0.3:2.5", "mixed:0.3:x", "max-matched:0.3:1"):
        with pytest.raises(ValueError, match="intensity_target"):
            intensity_share(bad)
    with pytest.raises(ConfigError, match="intensity target"):
        normalised(TrainArgs(data=("x",), out="o", intensity_target="mixed:2"))


def _halves(h: int = 40, w: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """A frame whose infrared is bright on the left and whose visible is bright on the right."""
    ir, vis = _scene(h, w, seed=1) * 0.5, _scene(h, w, seed=2) * 0.5
    ir[..., : w // 2] += 0.45
    vis[..., w // 2:] += 0.45
    return ir.clamp(0, 1), vis.clamp(0, 1)


def test_frame_shift_is_read_from_the_whole_jittered_frame_with_the_same_draws():
    from swinfuse.training.sampling import Augment, random_crop, whole_frame_stats

    def frame_shift(ir, vis):
        return whole_frame_stats(ir, vis)[0]

    ir, vis = _halves()
    whole = float(torch.maximum(ir.mean(), vis.mean()) - torch.maximum(ir, vis).mean())
    assert abs(frame_shift(ir, vis) - whole) < 1e-6 and whole < -0.1
    crop_ir, crop_vis, (shift, mean_ir, mean_vis) = random_crop(ir, vis, 16, np.random.default_rng(3), Augment(),
                                                                frame_stats=True)
    own = float(torch.maximum(crop_ir.mean(), crop_vis.mean()) - torch.maximum(crop_ir, crop_vis).mean())
    assert shift == frame_shift(ir, vis) and abs(own - shift) > 0.05  # a 16-pixel crop sits in one half
    assert abs(mean_ir - float(ir.mean())) < 1e-6 and abs(mean_vis - float(vis.mean())) < 1e-6
    aug = Augment(rescale=1.5, gamma=0.5, gain=0.3)
    for seed in range(5):  # the crops are those drawn without frame statistics
        a = random_crop(ir, vis, 16, np.random.default_rng(seed), aug)
        b = random_crop(ir, vis, 16, np.random.default_rng(seed), aug, frame_stats=True)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # a crop that is the whole frame: its shift under the jitter is the jittered crop's own
    sq_ir, sq_vis = ir[:, :, :40], vis[:, :, 20:60]
    for seed in range(5):
        c_ir, c_vis, (shift, mean_ir, mean_vis) = random_crop(sq_ir, sq_vis, 40, np.random.default_rng(seed),
                                                              Augment(gamma=0.5, gain=0.3), frame_stats=True)
        own = float(torch.maximum(c_ir.mean(), c_vis.mean()) - torch.maximum(c_ir, c_vis).mean())
        assert abs(own - shift) < 1e-5
        assert abs(mean_ir - float(c_ir.mean())) < 1e-5 and abs(mean_vis - float(c_vis.mean())) < 1e-5
    big_ir, big_vis = (F.interpolate(t[None], scale_factor=8, mode="nearest")[0] for t in (ir, vis))
    assert abs(frame_shift(big_ir, big_vis) - whole) < 1e-4  # a large frame is read downsampled (exact for constant 8x8 blocks)


def test_max_frame_intensity_target_uses_the_frame_shift_per_image():
    from swinfuse.training.batches import make_batch, make_sample

    ir, vis = _scene(seed=1)[None].flip(-1) * 0.9, _scene(seed=2)[None]
    ir, vis = torch.cat([ir, ir]), torch.cat([vis, vis])
    only = {"ssim": 0, "intensity": 1, "gradient": 0}
    brighter = torch.maximum(ir, vis)
    own = (torch.maximum(ir.mean((1, 2, 3)), vis.mean((1, 2, 3))) - brighter.mean((1, 2, 3))).view(-1, 1, 1, 1)
    nan = float("nan")
    frame = torch.tensor([[-0.2, 0.3, 0.4], [nan] * 3])  # the first image's frame is darker; the second has none
    expected = torch.cat([(brighter[:1] - 0.2).clamp(0, 1), (brighter[1:] + own[1:]).clamp(0, 1)])
    _, at = fusion_loss(ir, vis, expected, only, intensity_target="max-frame", frame=frame)
    _, matched = fusion_loss(ir, vis, expected, only, intensity_target="max-matched", frame=frame)
    assert float(at["intensity"]) < 1e-6 and float(matched["intensity"]) > 1e-3
    _, no_shift = fusion_loss(ir, vis, (brighter + own).clamp(0, 1), only, intensity_target="max-frame")
    assert float(no_shift["intensity"]) < 1e-6  # without frame shifts it is max-matched
    images = [_halves()]
    assert len(make_batch(images, 16, 0, 0, 8, 0, 1, 0.0)) == 7
    *_, stats = make_batch(images, 16, 0, 0, 8, 0, 1, 0.0, clean_share=1.0, frame_match=True)
    assert stats.shape == (8, 3) and not stats.isnan().any()
    given = [make_sample(images, 16, (0, 0, i), 0.0, clean_share=0.3, neutral_share=1.0, frame_match=True)
             for i in range(30)]
    assert {kind == "none" for *_, kind, _, _ in given} == {True, False}
    for *_, kind, _, stats in given:  # the degraded sources as the target: no frame statistics for them
        assert len(stats) == 3 and all(math.isnan(v) == (kind != "none") for v in stats)


def test_mixed_frame_intensity_target_takes_every_mean_from_the_frame():
    from swinfuse.training.losses import DEVIATION_GAIN, intensity_share, uses_frame_stats

    ir, vis = _scene(seed=1)[None].flip(-1) * 0.9, _scene(seed=2)[None]
    only = {"ssim": 0, "intensity": 1, "gradient": 0}
    shift, m_ir, m_vis = -0.1, 0.2, 0.6  # a frame whose visible is brighter than this crop's
    matched = (torch.maximum(ir, vis) + shift).clamp(0, 1)
    both = (m_vis + DEVIATION_GAIN * ((ir - m_ir) + (vis - m_vis))).clamp(0, 1)
    expected = 0.5 * matched + 0.5 * both
    frame = torch.tensor([[shift, m_ir, m_vis]])
    _, at = fusion_loss(ir, vis, expected, only, intensity_target="mixed-frame:0.5", frame=frame)
    _, crop_means = fusion_loss(ir, vis, expected, only, intensity_target="mixed:0.5", frame=frame)
    assert float(at["intensity"]) < 1e-6 and float(crop_means["intensity"]) > 1e-3
    own = [fusion_loss(ir, vis, expected, only, intensity_target=t, frame=f)[1]["intensity"]
           for t, f in (("mixed-frame:0.5", torch.full((1, 3), float("nan"))), ("mixed:0.5", None))]
    assert float(own[0]) == float(own[1])  # a frame without statistics falls back to the crop's own means
    assert uses_frame_stats("mixed-frame:0.2") and uses_frame_stats("max-frame") and not uses_frame_stats("mixed")
    assert intensity_share("mixed-frame") == 0.3 and intensity_share("mixed-frame:0.5") == 0.5
    with pytest.raises(ValueError):
        intensity_share("max-frame:0.5")


def test_wrong_prompt_share_names_another_degradation_and_keeps_the_draws_without_it():
    from swinfuse.training.batches import make_sample

    images = [(_scene(40, 40, 1), _scene(40, 40, 2))]
    plain = [make_sample(images, 32, (0, 0, i), 0.0, clean_share=0.3) for i in range(40)]
    off = [make_sample(images, 32, (0, 0, i), 0.0, clean_share=0.3, wrong_share=0.0) for i in range(40)]
    assert [s[4] for s in plain] == [s[4] for s in off]  # share 0: the runs made before it repeat exactly
    wrong = [make_sample(images, 32, (0, 0, i), 0.0, clean_share=0.3, wrong_share=1.0) for i in range(40)]
    corpus = {k: set(P.CORPUS[k]) for k in P.CORPUS}
    for ir_in, vis_in, ir, vis, prompt, kind, said in wrong:
        assert prompt not in corpus[kind] and prompt not in corpus["none"] and prompt in corpus[said]
    assert any(kind == "none" for *_, kind, _ in wrong)  # clean inputs get degradation prompts too


def test_wrong_prompts_on_clean_inputs_only_leave_every_degraded_input_its_own_prompt():
    from swinfuse.errors import ConfigError
    from swinfuse.training.args import TrainArgs, normalised
    from swinfuse.training.batches import make_sample

    images = [(_scene(40, 40, 1), _scene(40, 40, 2))]
    anywhere = [make_sample(images, 32, (0, 0, i), 0.0, clean_share=0.3, wrong_share=1.0) for i in range(60)]
    clean = [make_sample(images, 32, (0, 0, i), 0.0, clean_share=0.3, wrong_share=1.0, wrong_on="clean")
             for i in range(60)]
    assert any(kind not in ("none", said) for *_, kind, said in anywhere)  # 'any' lies to degraded inputs
    assert all(said == kind for *_, kind, said in clean if kind != "none")
    assert any(kind == "none" for *_, kind, _ in clean)
    assert all(said != "none" for *_, kind, said in clean)  # every clean input got a degradation's prompt
    with pytest.raises(ConfigError, match="wrong prompt inputs"):
        normalised(TrainArgs(data=("x",), out="o", wrong_prompt_on="degraded"))


def test_make_batch_marks_the_clean_samples_prompted_with_a_degradation():
    from swinfuse.training.batches import make_batch

    images = [(_scene(40, 40, 1), _scene(40, 40, 2))]
    *_, never, _ = make_batch(images, 16, 0, 0, 16, 0, 1, 0.0, clean_share=0.5, wrong_share=0.0)
    *_, prompts, mixed, applies = make_batch(images, 16, 0, 0, 64, 0, 1, 0.0, clean_share=0.5, wrong_share=0.5)
    *_, always, _ = make_batch(images, 16, 0, 0, 8, 0, 1, 0.0, clean_share=1.0, wrong_share=1.0)
    assert never.dtype == torch.bool and not never.any() and always.all()
    assert 0 < int(mixed.sum()) < 64  # about a quarter: clean (1/2) and wrong (1/2)
    for prompt, marked, applied in zip(prompts, mixed, applies.tolist()):
        assert not (marked and prompt in P.CORPUS["none"])
        assert applied == 0.0 if marked else True  # a degradation's prompt on a clean input does not apply
        assert (prompt in P.CORPUS["none"]) == (applied != applied) or applied == 0.0  # NaN: neutral on clean
    assert 0 < int((applies == 1).sum()) and 0 < int((applies == 0).sum()) and bool(applies.isnan().any())


def test_prompt_consistency_is_the_distance_to_the_neutral_fusion_of_the_marked_samples():
    from swinfuse.model.config import FusionConfig
    from swinfuse.model.network import build_model
    from swinfuse.training.trainer import _consistency

    torch.manual_seed(0)
    model = build_model(FusionConfig.preset("smoke", img_size=16)).train()
    ir, vis = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        neutral = model(ir, vis, [P.canonical_prompt("none")])
    model.train()
    mask = torch.tensor([True, False, True])
    out = neutral.clone()
    out[1] += 0.5  # an unmarked sample's difference does not count
    assert float(_consistency(model, out, ir, vis, mask, False)) == pytest.approx(0.0, abs=1e-6)
    out[0] += 0.2
    assert float(_consistency(model, out, ir, vis, mask, False)) == pytest.approx(0.1, abs=1e-5)
    assert model.training  # the reference's eval mode does not leak
    assert float(_consistency(model, out, ir, vis, torch.zeros(3, dtype=torch.bool), False)) == 0.0


def test_train_with_prompt_consistency_logs_the_term_and_refuses_it_without_wrong_clean_samples(pair_dir, tmp_path):
    from swinfuse.errors import ConfigError
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "run", clean_share=1.0, wrong_prompt_share=1.0, prompt_consistency=5.0))
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(r["consistency"] >= 0 for r in records if r["type"] == "train")
    assert any(r["consistency"] > 0 for r in records if r["type"] == "train")
    _, meta = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert meta["provenance"]["augment"]["prompt_consistency"] == 5.0
    with pytest.raises(ConfigError, match="clean-share"):
        train(_args(pair_dir, tmp_path / "other", prompt_consistency=5.0))


def test_a_closed_prompt_gate_gives_the_neutral_fusion_and_the_neutral_prompt_ignores_the_gate():
    from swinfuse.model.config import FusionConfig
    from swinfuse.model.gate import REFERENCE_PROMPT
    from swinfuse.model.network import build_model, count_parameters

    assert REFERENCE_PROMPT == P.canonical_prompt("none")
    torch.manual_seed(0)
    model = build_model(FusionConfig.preset("smoke", img_size=16, prompt_gate=True)).eval()
    for film in model.decoder.film:  # a prompt path that does something
        torch.nn.init.normal_(film.to_film[-1].weight, std=0.5)
    ir, vis = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        neutral = model(ir, vis, REFERENCE_PROMPT)
        noisy_open = model(ir, vis, "the visible image is noisy")
        assert float(model.last_gate.min()) > 0.95  # a new gate starts open
        torch.nn.init.constant_(model.gate.net[-1].bias, -40.0)  # closed
        noisy_closed = model(ir, vis, "the visible image is noisy")
        neutral_closed = model(ir, vis, REFERENCE_PROMPT)
    assert float((noisy_open - neutral).abs().max()) > 1e-3
    assert torch.allclose(noisy_closed, neutral, atol=1e-6) and torch.allclose(neutral_closed, neutral, atol=1e-6)
    assert count_parameters(model)["prompt gate"] == sum(p.numel() for p in model.gate.parameters()) > 0


def test_gate_loss_is_the_cross_entropy_of_the_samples_whose_prompt_names_a_degradation():
    from swinfuse.training.trainer import _gate_loss

    gate = torch.tensor([[0.9], [0.2], [0.5]])
    expected = -(math.log(0.9) + math.log(0.8)) / 2
    assert float(_gate_loss(gate, torch.tensor([1.0, 0.0, float("nan")]))) == pytest.approx(expected, rel=1e-5)
    assert float(_gate_loss(gate, torch.full((3,), float("nan")))) == 0.0


def test_train_adds_a_prompt_gate_to_a_warm_start_without_one_and_supervises_it(pair_dir, tmp_path):
    from swinfuse.errors import CheckpointError, ConfigError
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "plain"))
    plain = str(tmp_path / "plain" / "model.safetensors")
    train(_args(pair_dir, tmp_path / "gated", init=plain, prompt_gate=True, gate_weight=1.0, clean_share=0.5,
                wrong_prompt_share=0.5, steps=6))
    records = [json.loads(line) for line in (tmp_path / "gated" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("gate", 0) > 0 for r in records if r["type"] == "train")
    model, meta = load_checkpoint(tmp_path / "gated" / "model.safetensors")
    assert model.config.prompt_gate and model.gate is not None
    assert meta["provenance"]["init"]["converted"]["prompt_gate"] == [False, True]
    assert meta["provenance"]["augment"]["gate_weight"] == 1.0
    with pytest.raises(CheckpointError, match="different model"):  # a gate cannot be dropped silently
        train(_args(pair_dir, tmp_path / "back", init=str(tmp_path / "gated" / "model.safetensors")))
    with pytest.raises(ConfigError, match="--prompt-gate"):
        train(_args(pair_dir, tmp_path / "nogate", gate_weight=1.0))


def test_the_prompt_gate_trains_in_its_own_faster_group_and_reads_the_network_without_gradient():
    from swinfuse.model.config import FusionConfig
    from swinfuse.model.gate import LR_SCALE
    from swinfuse.model.network import build_model
    from swinfuse.training.schedule import make_optimizer
    from swinfuse.training.trainer import _gate_loss

    model = build_model(FusionConfig.preset("smoke", img_size=16, prompt_gate=True)).train()
    optimizer, _ = make_optimizer(model, _args("d", "o", lr=1e-3))
    assert len(optimizer.param_groups) == 3
    assert {id(p) for p in optimizer.param_groups[2]["params"]} == {id(p) for p in model.gate.parameters()}
    assert optimizer.param_groups[2]["lr"] == pytest.approx(1e-3 * LR_SCALE)
    plain, _ = make_optimizer(build_model(FusionConfig.preset("smoke", img_size=16)), _args("d", "o"))
    assert len(plain.param_groups) == 2  # runs without a gate keep their optimizer layout
    model(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16), ["the visible image is noisy"] * 2)
    _gate_loss(model.last_gate, torch.tensor([1.0, 0.0])).backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("gate."))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.gate.parameters())


def test_a_degraded_input_with_a_neutral_prompt_is_fused_as_given():
    from swinfuse.training.batches import make_batch, make_sample

    images = [(_scene(40, 40, 1), _scene(40, 40, 2))]
    plain = [make_sample(images, 32, (0, 0, i), 0.0, clean_share=0.3) for i in range(30)]
    off = [make_sample(images, 32, (0, 0, i), 0.0, clean_share=0.3, neutral_share=0.0) for i in range(30)]
    assert [s[4] for s in plain] == [s[4] for s in off]  # share 0 draws as before
    given = [make_sample(images, 32, (0, 0, i), 0.0, clean_share=0.3, neutral_share=1.0) for i in range(30)]
    assert any(kind != "none" for *_, kind, _ in given)
    for ir_in, vis_in, ir, vis, prompt, kind, said in given:
        if kind != "none":
            assert said == "none" and prompt in P.CORPUS["none"]
            assert torch.equal(ir, ir_in) and torch.equal(vis, vis_in)  # the target is what the network sees
    *_, applies = make_batch(images, 16, 0, 0, 8, 0, 1, 0.0, clean_share=0.0, neutral_share=1.0)
    assert bool(applies.isnan().all())  # no gate target for a neutral prompt


def test_gate_only_fits_the_gate_of_a_trained_network_and_nothing_else(pair_dir, tmp_path):
    from safetensors.torch import load_file

    from swinfuse.errors import ConfigError
    from swinfuse.model.checkpoint import read_metadata
    from swinfuse.training.trainer import train

    train(_args(pair_dir, tmp_path / "gated", prompt_gate=True, gate_weight=1.0, clean_share=0.5,
                wrong_prompt_share=0.5))
    start = str(tmp_path / "gated" / "model.safetensors")
    result = train(_args(pair_dir, tmp_path / "fit", init=start, prompt_gate=True, gate_only=True, steps=4, lr=1e-2))
    assert result.finished
    before, after = load_file(start), load_file(tmp_path / "fit" / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("gate.") for k in changed)  # the gate moved, nothing else did
    records = [json.loads(line) for line in (tmp_path / "fit" / "log.jsonl").read_text().splitlines()]
    assert all(r["loss"] == pytest.approx(r["gate"]) for r in records if r["type"] == "train")
    assert read_metadata(tmp_path / "fit" / "model.safetensors")["provenance"]["gate_only"]["crops"]
    for missing in ({"init": start}, {"prompt_gate": True}):
        with pytest.raises(ConfigError, match="--gate-only"):
            train(_args(pair_dir, tmp_path / "bad", gate_only=True, **missing))


def test_gate_samples_come_in_several_sizes_and_whole_frames_with_both_targets():
    from swinfuse.training import batches

    images = [(_scene(300, 420, 1), _scene(300, 420, 2)), (_scene(80, 80, 3), _scene(80, 80, 4))]
    samples = batches.make_gate_batch(images, 0, 0, 200, 0, 1, 0.0)
    sizes = {tuple(ir.shape[-2:]) for ir, *_ in samples}
    assert {(300, 420), (80, 80)} <= sizes  # whole frames, as a user's forward reads them
    assert {(64, 64), (256, 256)} <= sizes  # crops of several sizes; none larger than its frame's short side
    assert all(ir.shape == vis.shape and ir.dim() == 4 for ir, vis, *_ in samples)
    applies = [a for *_, a in samples]
    assert 0.3 < sum(applies) / len(applies) < 0.6  # GATE_SHARES: 45 % of prompts apply
    assert all(p not in P.CORPUS["none"] for _, _, p, _ in samples)  # the gate has nothing to learn from a neutral one
    again = batches.make_gate_batch(images, 0, 0, 200, 0, 1, 0.0)
    assert all(torch.equal(a[0], b[0]) and a[2] == b[2] for a, b in zip(samples, again))  # seeded per sample
