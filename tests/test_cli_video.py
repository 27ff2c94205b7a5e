"""`swinfuse video` and `swinfuse evaluate --video` on the command line (swinfuse/cli/video.py): the options it
hands the api, the table and --json, one-line errors, usage errors, Ctrl-C."""

from __future__ import annotations

import json

import pytest

from conftest import run_main
from swinfuse import api
from test_video import scene, write_frames, write_video


@pytest.fixture
def clip(tmp_path):
    ir = write_video(tmp_path / "ir.avi", scene(3, colour=False, seed=1))
    vis = write_video(tmp_path / "vis.avi", scene(3))
    return ir, vis


def test_video_writes_a_video_and_its_json_report(tmp_path, clip, tiny_checkpoint, monkeypatch, capsys):
    code, out = run_main(monkeypatch, capsys, ["video", *map(str, clip), "-o", str(tmp_path / "o.mp4"), "--weights",
                                               str(tiny_checkpoint), "--device", "cpu", "--threads", "1", "--json"])
    assert code == 0, out.err
    report = json.loads(out.out)
    assert report["frames"] == 3 and report["fps_out"] == 25 and report["codec"] == "mp4v"
    assert set(report["temporal"]["flicker"]) == {"fused", "infrared", "visible", "mean_of_sources"}
    assert (tmp_path / "o.mp4").exists()


def test_video_table(tmp_path, clip, tiny_checkpoint, monkeypatch, capsys):
    code, out = run_main(monkeypatch, capsys, ["video", *map(str, clip), "-o", str(tmp_path / "f"), "--weights",
                                               str(tiny_checkpoint), "--device", "cpu", "--threads", "1"])
    assert code == 0, out.err
    assert "swinfuse video" in out.out and "warping error" in out.out and "mean(IR, VIS)" in out.out


def test_the_options_reach_the_api(tmp_path, clip, monkeypatch, capsys):
    seen = {}

    def record(**kwargs):
        seen.update(kwargs)
        raise api.ConfigError("stop here")

    monkeypatch.setattr(api, "fuse_video", record)
    code, out = run_main(monkeypatch, capsys, [
        "video", *map(str, clip), "-o", "x.avi", "-p", "haze", "--start", "2", "--frames", "5", "--ir-offset", "0.5s",
        "--trim", "--match-rate", "--codec", "XVID", "--overwrite", "--temporal-smoothing", "0.8", "--no-metrics",
        "--gray", "--tile", "64", "--device", "cpu"])
    assert code == 1 and out.err == "Error: stop here\n"
    assert seen["prompt"] == "haze" and (seen["start"], seen["frames"], seen["ir_offset"]) == (2, 5, "0.5s")
    assert seen["trim"] and seen["match_rate"] and seen["overwrite"] and not seen["metrics"]
    assert seen["codec"] == "XVID" and seen["temporal_smoothing"] == 0.8
    assert seen["options"].gray and seen["options"].tile == 64 and seen["options"].device == "cpu"


@pytest.mark.parametrize("args, fragment", [
    (["--frames", "0"], "--frames"), (["--temporal-smoothing", "1.5"], "--temporal-smoothing"),
    (["-p", "a", "-p", "b"], "video takes one prompt"), (["--start", "-1"], "--start"),
    (["--stretch"], "No such option: --stretch")])
def test_usage_errors_exit_2(clip, args, fragment, monkeypatch, capsys):
    code, out = run_main(monkeypatch, capsys, ["video", *map(str, clip), *args])
    assert code == 2 and fragment in out.out + out.err


def test_bad_input_is_one_line_and_exit_1(tmp_path, clip, monkeypatch, capsys):
    (tmp_path / "sound.mp4").write_bytes(b"\0" * 100)
    code, out = run_main(monkeypatch, capsys, ["video", str(clip[0]), str(tmp_path / "sound.mp4"), "-o",
                                               str(tmp_path / "o.mp4")])
    assert code == 1 and out.err.startswith("Error: visible video") and out.err.count("\n") == 1
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("partial", [True, False])
def test_ctrl_c_says_what_was_kept_and_exits_130(tmp_path, clip, monkeypatch, capsys, partial):
    from types import SimpleNamespace

    def interrupted(**kwargs):
        exc = KeyboardInterrupt()
        exc.report = SimpleNamespace(frames=3 if partial else 0,
                                     partial=tmp_path / "o.partial.mp4" if partial else None)
        raise exc

    monkeypatch.setattr(api, "fuse_video", interrupted)
    code, out = run_main(monkeypatch, capsys, ["video", *map(str, clip), "-o", str(tmp_path / "o.mp4")])
    assert code == 130
    expected = (f"interrupted: 3 frames written, kept as {tmp_path / 'o.partial.mp4'} (playable)" if partial
                else "interrupted: 0 frames written, nothing kept")
    assert out.err.strip().splitlines()[-1] == expected


def test_evaluate_video_over_a_folder_of_fused_frames(tmp_path, monkeypatch, capsys):
    frames = scene(4)
    write_frames(tmp_path / "clip" / "ir", [f[:, :, 0] for f in frames])
    write_frames(tmp_path / "clip" / "vis", frames)
    write_frames(tmp_path / "fused", frames)
    code, out = run_main(monkeypatch, capsys, ["evaluate", "--video", str(tmp_path / "fused"), str(tmp_path / "clip"),
                                               "--json"])
    assert code == 0, out.err
    report = json.loads(out.out)
    assert report["frames"] == 4
    assert report["temporal"]["flicker"]["fused"] == pytest.approx(report["temporal"]["flicker"]["visible"], abs=1e-3)
    clip = tmp_path / "clip"
    code, out = run_main(monkeypatch, capsys, ["evaluate", "--video", tmp_path / "fused",
                                               "--ir-dir", clip / "ir", "--vis-dir", clip / "vis"])
    assert code == 0 and "warping error" in out.out
