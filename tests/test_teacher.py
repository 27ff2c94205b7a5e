"""`swinfuse train --teacher seafusion:ROOT` (swinfuse/training/teacher.py): the teacher's network comes from a
VIF-Benchmark-shaped folder at run time; its target is shifted to the brighter source's mean; its term is
logged and recorded; every bad spec is one line and creates nothing. A stand-in network is written into a
temporary folder laid out like the checkout, so nothing here needs SeAFusion itself."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open

from swinfuse.errors import InputError
from swinfuse.training.teacher import Teacher
from test_cli_train import TINY, _main
from test_training import pair_dir  # noqa: F401  (the training tests' tiny pairs)

FUSIONNET = """
import torch
from torch import nn


class FusionNet(nn.Module):
    # visible first, output in [0, 1], as VIF-Benchmark's SeAFusion
    def __init__(self, output=1):
        super().__init__()
        self.conv = nn.Conv2d(2, output, 3, padding=1)

    def forward(self, vis, ir):
        return torch.tanh(self.conv(torch.cat([vis, ir], 1))) / 2 + 0.5
"""


@pytest.fixture
def vif_root(tmp_path):
    """A folder laid out like a VIF-Benchmark checkout: SeAFusion/FusionNet.py and its checkpoint."""
    root = tmp_path / "VIF-Benchmark"
    (root / "SeAFusion").mkdir(parents=True)
    (root / "SeAFusion" / "FusionNet.py").write_text(FUSIONNET)
    namespace: dict = {}
    exec(FUSIONNET, namespace)
    torch.manual_seed(0)
    net = namespace["FusionNet"](output=1)
    (root / "Checkpoint" / "SeAFusion").mkdir(parents=True)
    torch.save(net.state_dict(), root / "Checkpoint" / "SeAFusion" / "SeAFusion.pth")
    return root


def test_the_target_is_the_teachers_output_shifted_to_the_brighter_sources_mean(vif_root):
    teacher = Teacher.parse(f"seafusion:{vif_root}")
    torch.manual_seed(1)
    ir, vis = torch.rand(3, 1, 16, 16) * 0.4 + 0.3, torch.rand(3, 1, 16, 16) * 0.2 + 0.2
    target = teacher.target(ir, vis)
    raw = teacher.net(vis, ir)
    assert target.shape == ir.shape and 0 <= float(target.min()) and float(target.max()) <= 1
    brighter = torch.maximum(ir.mean((1, 2, 3)), vis.mean((1, 2, 3)))
    torch.testing.assert_close(target.mean((1, 2, 3)), brighter, atol=1e-5, rtol=0)  # no clipping at these levels
    torch.testing.assert_close(target - target.mean((1, 2, 3), keepdim=True),
                               raw - raw.mean((1, 2, 3), keepdim=True), atol=1e-5, rtol=0)  # its structure kept
    assert not any(p.requires_grad for p in teacher.net.parameters())
    assert not any("SeAFusion" in p for p in sys.path)  # its folder's utils.py must not shadow anything
    up = teacher.target(ir, vis, (32, 32))  # a model that upscales is compared at its output's size
    assert up.shape[-2:] == (32, 32) and abs(float(up.mean() - target.mean())) < 0.01


@pytest.mark.parametrize("spec, message", [
    ("seafusion", "--teacher takes KIND:PATH"),
    ("tardal:{root}", "--teacher takes KIND:PATH with KIND one of seafusion"),
    ("seafusion:{tmp}/nowhere", "{tmp}/nowhere: expected SeAFusion/FusionNet.py and Checkpoint/SeAFusion/SeAFusion.pth"),
])
def test_bad_teacher_specs_are_one_line(spec, message, vif_root, tmp_path):
    with pytest.raises(InputError) as info:
        Teacher.parse(spec.format(root=vif_root, tmp=tmp_path))
    assert str(info.value).startswith(message.format(tmp=tmp_path)) and "\n" not in str(info.value)


def test_a_git_lfs_pointer_or_a_mismatched_checkpoint_is_one_line(vif_root):
    ckpt = vif_root / "Checkpoint" / "SeAFusion" / "SeAFusion.pth"
    torch.save({"conv.weight": torch.zeros(1, 1, 3, 3)}, ckpt)
    with pytest.raises(InputError, match=r"could not load SeAFusion .*RuntimeError"):
        Teacher.parse(f"seafusion:{vif_root}")
    ckpt.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 682000\n")
    with pytest.raises(InputError, match="is a Git LFS pointer"):
        Teacher.parse(f"seafusion:{vif_root}")


def test_training_with_a_teacher_logs_its_term_and_records_it(vif_root, pair_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(run), "--steps", "2",
                            "--teacher", f"seafusion:{vif_root}", "--teacher-weight", "5", *TINY],
                           monkeypatch, capsys)
    assert code == 0, err
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    assert train and all(r["teacher"] > 0 for r in train)
    assert all(abs(r["loss"] - r["ssim"] - r["intensity"] - r["gradient"] - r["teacher"]) < 1e-4 for r in train)
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        teacher = json.loads(f.metadata()["provenance"])["teacher"]
    assert teacher["kind"] == "seafusion" and teacher["weight"] == 5.0 and len(teacher["checkpoint_sha256"]) == 64


@pytest.mark.parametrize("extra", [["--teacher", "seafusion:{root}"], ["--teacher-weight", "3"],
                                   ["--teacher", "seafusion:{tmp}/nowhere", "--teacher-weight", "3"]])
def test_a_teacher_without_a_weight_or_a_weight_without_a_teacher_makes_nothing(extra, vif_root, pair_dir, tmp_path,
                                                                                monkeypatch, capsys):
    run = tmp_path / "run"
    argv = [a.format(root=vif_root, tmp=tmp_path) for a in extra]
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(run), "--steps", "2", *argv, *TINY],
                           monkeypatch, capsys)
    assert code == 1 and out == "" and err.startswith("Error: ") and err.count("\n") == 1, err
    assert not run.exists()


def test_a_negative_teacher_weight_is_a_usage_error(pair_dir, tmp_path, monkeypatch, capsys):
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(tmp_path / "run"),
                            "--teacher-weight", "-1", *TINY], monkeypatch, capsys)
    assert code == 2 and out == "" and not (tmp_path / "run").exists()


def test_the_frame_shift_subtracts_the_frames_offset_and_falls_back_to_the_crops_own_where_unknown(vif_root):
    teacher = Teacher.parse(f"seafusion:{vif_root}", shift="frame")
    torch.manual_seed(2)
    ir, vis = torch.rand(3, 1, 16, 16) * 0.4 + 0.3, torch.rand(3, 1, 16, 16) * 0.2 + 0.2
    raw = teacher.net(vis, ir)
    offset = torch.tensor([0.05, float("nan"), -0.02])
    target = teacher.target(ir, vis, offset=offset)
    torch.testing.assert_close(target[0], raw[0] - 0.05, atol=1e-6, rtol=0)
    torch.testing.assert_close(target[2], raw[2] + 0.02, atol=1e-6, rtol=0)
    torch.testing.assert_close(target[1], teacher.target(ir, vis)[1], atol=1e-6, rtol=0)  # NaN: per crop


def test_the_frame_offset_is_the_teachers_mean_over_the_brighter_sources_on_the_downsampled_frame(vif_root):
    from swinfuse.training.teacher import FRAME_SIDE

    teacher = Teacher.parse(f"seafusion:{vif_root}", shift="frame")
    torch.manual_seed(3)
    ir, vis = torch.rand(1, 96, 128), torch.rand(1, 96, 128) * 0.5
    small = torch.nn.functional.adaptive_avg_pool2d(torch.stack([ir, vis]), (48, FRAME_SIDE))
    expected = teacher.net(small[1:2], small[0:1]).mean() - max(small[0].mean(), small[1].mean())
    assert abs(teacher.frame_offset(ir, vis) - float(expected)) < 1e-6
    tiny = torch.rand(1, 20, 30)  # smaller than FRAME_SIDE: read as it is
    expected = teacher.net(tiny[None], tiny[None]).mean() - tiny.mean()
    assert abs(teacher.frame_offset(tiny, tiny) - float(expected)) < 1e-6


def test_the_frame_offset_rides_along_with_the_frame_stats_of_a_batch():
    from swinfuse.training.batches import make_batch

    torch.manual_seed(4)
    pairs = [(torch.rand(1, 40, 56), torch.rand(1, 40, 56)) for _ in range(3)]
    seen = []

    def extra(a, b):
        seen.append((a.shape, b.shape))
        return float(a.mean() + 10 * b.mean())

    *_, plain = make_batch(pairs, 16, 0, 1, 4, 0, 1, 0.0, frame_match=True)
    *_, stats = make_batch(pairs, 16, 0, 1, 4, 0, 1, 0.0, frame_match=True, frame_extra=extra)
    assert plain.shape == (4, 3) and stats.shape == (4, 4) and len(seen) == 4
    torch.testing.assert_close(stats[:, :3], plain)  # the same draws
    torch.testing.assert_close(stats[:, 3], stats[:, 1] + 10 * stats[:, 2])  # the frame the means come from


def test_training_with_a_frame_shifted_teacher_records_it(vif_root, pair_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(run), "--steps", "2",
                            "--teacher", f"seafusion:{vif_root}", "--teacher-weight", "5", "--teacher-shift", "frame",
                            *TINY], monkeypatch, capsys)
    assert code == 0, err
    train = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(r["teacher"] > 0 for r in train if r["type"] == "train")
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        teacher = json.loads(f.metadata()["provenance"])["teacher"]
    assert teacher["shift"] == "frame" and "whole frame" in teacher["target"]


def test_an_unknown_teacher_shift_makes_nothing(vif_root, pair_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    code, out, err = _main(["train", "--data", str(pair_dir), "--out", str(run), "--steps", "2",
                            "--teacher", f"seafusion:{vif_root}", "--teacher-weight", "5", "--teacher-shift", "tile",
                            *TINY], monkeypatch, capsys)
    assert code == 1 and err.startswith("Error: teacher shift must be 'crop' or 'frame'") and err.count("\n") == 1
    assert not run.exists()
