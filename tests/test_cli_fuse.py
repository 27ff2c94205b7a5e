"""`swinfuse fuse` and `swinfuse batch` (swinfuse/cli/fuse.py): one option per FuseOptions field handed to the
api as one record, JSON on stdout, exit codes, one-line errors before any work, interrupts, tables that fit."""

import dataclasses
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import asset_pair, run_main, strict_json
from swinfuse import api
from swinfuse.api import FuseOptions
from swinfuse.cli import app

runner = CliRunner()
ASSETS = Path(__file__).parent / "assets"
FIELDS = [f.name for f in dataclasses.fields(FuseOptions)]


def _params(command: str) -> dict:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}


def test_fuse_without_default_weights_refuses_random_ones(monkeypatch, tmp_path, capsys):
    from swinfuse.cli import main

    monkeypatch.setenv("SWINFUSE_WEIGHTS", str(tmp_path / "none.safetensors"))
    ir, vis = asset_pair()
    monkeypatch.setattr("sys.argv", ["swinfuse", "fuse", str(ir), str(vis), "-o", str(tmp_path / "out.png")])
    with pytest.raises(SystemExit):
        main()
    assert "Error: SWINFUSE_WEIGHTS names" in capsys.readouterr().err


def test_fuse_json_with_a_checkpoint(tiny_checkpoint, tmp_path):
    assets = ASSETS
    ir = sorted((assets / "ir").iterdir())[0]
    vis = assets / "vis" / ir.name
    out = tmp_path / "fused.png"
    result = runner.invoke(app, ["fuse", str(ir), str(vis), "-p", "low light", "-o", str(out),
                                 "--weights", str(tiny_checkpoint), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert out.exists() and data["outputs"][0]["path"] == str(out)
    assert set(data["latency_ms"]) >= {"weights", "forward", "write"}
    assert data["weights_short_hash"] and data["params"] > 0


def test_batch_json_and_exit_code(tiny_checkpoint, tmp_path):
    import shutil

    assets = ASSETS
    root = tmp_path / "data"
    shutil.copytree(assets, root)
    (root / "vis" / "broken.png").write_bytes(b"not an image")
    (root / "ir" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(root), "-o", str(out), "--weights", str(tiny_checkpoint), "--json"])
    assert result.exit_code == 1  # one pair failed
    data = json.loads(result.stdout)
    assert data["failed"] == 1 and data["written"] == data["pairs_found"] - 1
    again = runner.invoke(app, ["batch", str(root), "-o", str(out), "--weights", str(tiny_checkpoint), "--json"])
    assert json.loads(again.stdout)["skipped"] == data["written"]


def test_fuse_bad_inputs_give_one_line_and_write_nothing(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import cv2
    import numpy as np

    ir, vis = asset_pair()
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((20, 30), np.uint8))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    out = tmp_path / "o.png"
    cases = [
        ([str(tmp_path / "missing.png"), str(vis)], "missing.png"),
        ([str(ir), str(small)], "20×30"),
        ([str(empty), str(vis)], "empty"),
        ([str(tmp_path), str(vis)], "directory"),
    ]
    for pair, fragment in cases:
        code, captured = run_main(monkeypatch, capsys,
                                   ["fuse", *pair, "-o", str(out), "--weights", str(tiny_checkpoint)])
        assert code == 1 and captured.err.startswith("Error: ") and fragment in captured.err
        assert captured.err.count("\n") == 1 and captured.out == ""
        assert not out.exists()


def test_fuse_checks_paths_and_images_before_loading_the_model(tmp_path, monkeypatch, capsys):
    import shutil

    def no_model(**kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(api, "load_model", no_model)
    ir, vis = asset_pair()
    vis_copy = shutil.copy(vis, tmp_path / "vis.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    cases = [
        ([str(tmp_path / "missing.png"), str(vis)], "missing.png: no such file"),
        ([str(broken), str(vis)], "not a readable image"),
        ([str(ir), str(vis), "-o", str(tmp_path / "out.webp")], "unsupported output format"),
        ([str(ir), str(vis_copy), "-o", str(vis_copy)], f"{vis_copy}: output would overwrite an input image"),
    ]
    for args, fragment in cases:
        code, captured = run_main(monkeypatch, capsys, ["fuse", *args, "--device", "cpu"])
        assert code == 1 and captured.err.startswith("Error: ") and fragment in captured.err, captured.err
    assert (tmp_path / "vis.png").read_bytes() == vis.read_bytes()


def test_fuse_output_folder_with_several_prompts(tiny_checkpoint, tmp_path):
    ir, vis = asset_pair()
    folder = tmp_path / "fused"
    result = runner.invoke(app, ["fuse", str(ir), str(vis), "-p", "A", "-p", "B", "-o", str(folder),
                                 "--weights", str(tiny_checkpoint), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    names = [f"{vis.stem}_fused_p1-a.png", f"{vis.stem}_fused_p2-b.png"]
    assert [o["path"] for o in json.loads(result.stdout)["outputs"]] == [str(folder / n) for n in names]
    assert sorted(p.name for p in folder.iterdir()) == names


def test_batch_empty_folder_and_bad_shard(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    (tmp_path / "ir").mkdir()
    (tmp_path / "vis").mkdir()
    code, captured = run_main(monkeypatch, capsys, ["batch", str(tmp_path), "--weights", str(tiny_checkpoint)])
    assert code == 1 and captured.err.startswith("Error: ") and "no" in captured.err.lower()
    ir, vis = asset_pair()
    import shutil

    shutil.copy(ir, tmp_path / "ir")
    shutil.copy(vis, tmp_path / "vis")
    code, captured = run_main(monkeypatch, capsys, ["batch", str(tmp_path), "--shard", "5/4",
                                                     "--weights", str(tiny_checkpoint)])
    assert code == 2 and "5/4" in captured.err  # a usage error, before the model loads


def test_wrong_checkpoint_is_named(tmp_path, monkeypatch, capsys):
    ir, vis = asset_pair()
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"garbage")
    code, captured = run_main(monkeypatch, capsys, ["fuse", str(ir), str(vis), "--weights", str(bad)])
    assert code == 1 and captured.err == f"Error: {bad} is not a safetensors file (a swinfuse checkpoint is one)\n"


def test_batch_metrics_adds_scores(tiny_checkpoint, tmp_path):
    import cv2
    import numpy as np

    rng = np.random.default_rng(1)
    for sub in ("ir", "vis"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(tmp_path / "d" / "ir" / f"{i}.png"), rng.integers(0, 255, (48, 64), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "d" / "vis" / f"{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    result = runner.invoke(app, ["batch", str(tmp_path / "d"), "-o", str(tmp_path / "o"), "--metrics", "--json",
                                 "--weights", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)["metrics"]
    assert len(scores["images"]) == 2 and scores["mean"]["EN"] > 0 and "Qabf" in scores["mean"]
    from swinfuse.metrics import compute_metrics, read_gray

    direct = compute_metrics(read_gray(tmp_path / "o" / "0.png"), read_gray(tmp_path / "d" / "ir" / "0.png"),
                             read_gray(tmp_path / "d" / "vis" / "0.png"))
    assert abs(scores["images"][0]["EN"] - direct["EN"]) < 1e-5  # JSON keeps 6 decimals


def test_batch_takes_several_prompts_one_output_set_each_as_fuse_names_them(tiny_checkpoint, tmp_path, monkeypatch):
    loads = []
    real = api.load_model
    monkeypatch.setattr(api, "load_model", lambda **k: loads.append(1) or real(**k))
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(ASSETS), "-o", str(out), "-p", "low light", "-p", "",
                                 "--weights", str(tiny_checkpoint), "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    assert [r["prompt"] for r in reports] == ["low light", ""] and len(loads) == 1  # the model loads once
    stems = sorted(p.stem for p in (ASSETS / "vis").iterdir())
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        [f"{s}_p1-low-light.png" for s in stems] + [f"{s}_p2-empty.png" for s in stems])
    manifest = json.loads((out / "manifest.json").read_text())  # one manifest: what made each output
    assert {manifest["made_with"][i]["prompt"] for i in manifest["outputs"].values()} == {"low light", ""}


def test_batch_ext_writes_that_format(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(ASSETS), "-o", str(out), "--ext", "jpg", "--weights",
                                 str(tiny_checkpoint), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.suffix for p in out.iterdir() if p.name != "manifest.json") == [".jpg"] * len(list(
        (ASSETS / "vis").iterdir()))
    result = runner.invoke(app, ["batch", str(ASSETS), "-o", str(out), "--ext", "gif"])
    assert result.exit_code == 2 and "'gif' is not one of png, jpg, tif" in result.output


def test_batch_passes_its_one_prompt(batch_arguments, tmp_path):
    seen = batch_arguments
    runner.invoke(app, ["batch", str(tmp_path), "-p", "low light"])
    assert seen["prompt"] == "low light"
    runner.invoke(app, ["batch", str(tmp_path)])
    assert seen["prompt"] == ""


def test_batch_metrics_table_in_80_columns_cuts_no_number(tiny_checkpoint, tmp_path, monkeypatch):
    import cv2
    import numpy as np

    from swinfuse.cli import render

    rng = np.random.default_rng(2)
    for sub in ("ir", "vis"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "d" / "ir" / "0.png"), rng.integers(0, 255, (48, 64), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "d" / "vis" / "0.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    args = ["batch", str(tmp_path / "d"), "-o", str(tmp_path / "o"), "--metrics", "--weights", str(tiny_checkpoint)]
    mean = json.loads(runner.invoke(app, [*args, "--json"]).stdout)["metrics"]["mean"]
    monkeypatch.setattr(render.stdout, "width", 80)
    result = runner.invoke(app, args)  # the rerun skips the output and scores it again
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout and max(len(line) for line in result.stdout.splitlines()) <= 80
    assert all(render.fmt(v) in result.stdout for v in mean.values())


def test_tiles_too_small_to_blend_are_refused_before_anything_is_written(tiny_checkpoint, tmp_path, monkeypatch,
                                                                       capsys):
    ir, vis = asset_pair()
    out = tmp_path / "out.png"
    code, captured = run_main(monkeypatch, capsys, ["fuse", str(ir), str(vis), "-o", str(out), "--tile", "7",
                                                     "--weights", str(tiny_checkpoint), "--device", "cpu"])
    assert code == 1 and captured.err.startswith("Error: --tile 7 is too small to blend tiles without seams: "
                                                 "the minimum is 20") and captured.err.count("\n") == 1
    assert not out.exists()
    code, captured = run_main(monkeypatch, capsys, ["batch", str(ir.parent.parent), "-o", str(tmp_path / "b"),
                                                     "--tile-overlap", "100", "--tile", "24",
                                                     "--weights", str(tiny_checkpoint), "--device", "cpu"])
    assert code == 1 and captured.err == "Error: --tile-overlap 100 does not fit --tile 24: at most 20 (one " \
                                         "window of 4 less than the tile), or a larger tile\n"
    assert not (tmp_path / "b").exists()
    code, captured = run_main(monkeypatch, capsys, ["fuse", str(ir), str(vis), "--tile", "-8"])
    assert code == 2 and "Traceback" not in captured.err


def test_fuse_reports_the_tiles_used(tiny_checkpoint, tmp_path):
    ir, vis = asset_pair()
    result = runner.invoke(app, ["fuse", str(ir), str(vis), "-o", str(tmp_path / "o.png"), "--tile", "24",
                                 "--weights", str(tiny_checkpoint), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert any(n.startswith("fused in ") and "tiles of at most 24×24 pixels, overlapping by 16" in n for n in notes)


def test_batch_metrics_json_of_flat_sources_is_strict_json(tiny_checkpoint, tmp_path):
    """Black sources leave Qabf and SCD undefined (0/0): they are null in the JSON, never NaN."""
    import cv2
    import numpy as np

    for sub in ("ir", "vis"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "d" / "ir" / "0.png"), np.zeros((48, 64), np.uint8))
    cv2.imwrite(str(tmp_path / "d" / "vis" / "0.png"), np.zeros((48, 64, 3), np.uint8))
    result = runner.invoke(app, ["batch", str(tmp_path / "d"), "-o", str(tmp_path / "o"), "--metrics", "--json",
                                 "--weights", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output
    scores = strict_json(result.stdout)["metrics"]
    assert scores["images"][0]["Qabf"] is None and scores["mean"]["Qabf"] is None
    assert scores["images"][0]["SCD"] is None and scores["images"][0]["EN"] is not None


def test_a_long_prompt_is_one_line_in_the_table_and_one_warning(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import warnings

    from swinfuse.cli import main

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() installs its own; restore it
    monkeypatch.setenv("COLUMNS", "80")
    prompt = ("the visible image is dark " * 200)[:5000]
    ir, vis = asset_pair()
    monkeypatch.setattr("sys.argv", ["swinfuse", "fuse", str(ir), str(vis), "-p", prompt, "--device", "cpu",
                                     "-o", str(tmp_path / "out.png"), "--weights", str(tiny_checkpoint)])
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        with pytest.raises(SystemExit) as info:
            main()
    out, err = capsys.readouterr()
    assert info.value.code in (0, None)
    assert "(5,000 characters)" in out and prompt not in out
    assert len(out.splitlines()) < 30  # was 160 lines: the prompt, folded into the table
    warning_lines = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("Warning: prompt has ")
    assert "UserWarning" not in err and "forward_call" not in err


def test_batch_interrupt_says_what_was_written_and_how_to_resume(monkeypatch, capsys, tmp_path):
    from pathlib import Path
    from types import SimpleNamespace

    from swinfuse.fusing import BatchInterrupted

    def interrupted(**kwargs):
        raise BatchInterrupted(SimpleNamespace(written=3, manifest=Path(kwargs["output_dir"]) / "manifest.json"))

    monkeypatch.setattr(api, "fuse_batch", interrupted)
    code, captured = run_main(monkeypatch, capsys, ["batch", str(tmp_path), "-o", str(tmp_path / "out")])
    assert code == 130 and captured.out == "" and "Traceback" not in captured.err
    manifest = tmp_path / "out" / "manifest.json"
    assert captured.err == (f"interrupted: 3 outputs written this run, recorded in {manifest}; "
                            "rerun the same command to resume (existing outputs are skipped)\n")

    def before_any(**kwargs):  # Ctrl-C while the model loads: nothing written
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "fuse_batch", before_any)
    code, captured = run_main(monkeypatch, capsys, ["batch", str(tmp_path)])
    assert code == 130 and captured.err.startswith("interrupted: 0 outputs written this run; rerun the same command")


def test_batch_rerun_warns_once_of_skipped_outputs_made_with_another_prompt(tiny_checkpoint, tmp_path, monkeypatch,
                                                                            capsys):
    import shutil
    from pathlib import Path

    root, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(Path(__file__).parent / "assets", root)
    args = ["batch", str(root), "-o", str(out), "--weights", str(tiny_checkpoint), "--json"]
    first = runner.invoke(app, args + ["-p", "A"])
    assert first.exit_code == 0, first.output
    count = json.loads(first.stdout)["written"]
    code, captured = run_main(monkeypatch, capsys, args + ["-p", "B"])
    assert code == 0 and json.loads(captured.out)["skipped"] == count
    warning = [line for line in captured.err.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1 and f"{count} skipped output" in warning[0] and "--overwrite" in warning[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["prompt"] == "B" and [m["prompt"] for m in manifest["made_with"]] == ["A"]


@pytest.mark.parametrize("command", ["fuse", "batch"])
def test_every_field_is_an_option_of_both_commands_with_its_help(command):
    params = _params(command)
    for f in dataclasses.fields(FuseOptions):
        assert f.name in params, f.name
        assert params[f.name].default == f.default, f.name
        if f.metadata["help"]:  # threads and device: the option every command shares
            assert params[f.name].help == f.metadata["help"], f.name
    assert params["threads"].help == _params("profile")["threads"].help
    assert params["device"].help == _params("profile")["device"].help
    assert params["compile"].opts == ["--compile"] and not params["compile"].secondary_opts


def test_the_cli_hands_one_options_record_to_the_api(batch_arguments, tmp_path):
    from typer.testing import CliRunner

    seen = batch_arguments
    CliRunner().invoke(app, ["batch", str(tmp_path), "--gray", "--bit-depth", "16", "--resize", "--device", "cpu",
                             "--threads", "2", "--stretch", "--tone", "off"])
    assert seen["options"] == FuseOptions(gray=True, bit_depth=16, resize=True, device="cpu", threads=2, stretch=True,
                                          tone="off")
    assert not set(FIELDS) & set(seen)  # the fields travel in the record, nowhere else


def test_an_unknown_tone_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["batch", str(tmp_path), "--tone", "darker"])
    assert result.exit_code == 2 and "'darker' is not one of cap, off" in result.output



# -- check first, write nothing on failure (issue 21) ---------------------------------------------------------
def _read_only(monkeypatch, folder: Path) -> None:
    """os.access says `folder` and what is under it cannot be written (a read-only file system, as root sees one)."""
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if (mode & os.W_OK and str(Path(p).resolve())
                                                                         .startswith(str(folder.resolve())))
                        else real(p, mode, *a, **k))


def _no_model(monkeypatch):
    def loaded(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(api, "load_model", loaded)


def test_batch_into_a_read_only_folder_fails_before_the_model_loads(monkeypatch, capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    _no_model(monkeypatch)
    code, captured = run_main(monkeypatch, capsys, ["batch", str(ASSETS), "-o", str(ro)])
    assert code == 1 and captured.err == f"Error: {ro}: folder is not writable\n"
    code, captured = run_main(monkeypatch, capsys, ["batch", str(ASSETS), "-o", str(ro / "new" / "deeper")])
    assert code == 1 and captured.err == f"Error: {ro / 'new' / 'deeper'}: its folder {ro} is not writable\n"
    assert list(ro.iterdir()) == []


def test_fuse_checks_the_sheet_path_before_anything_is_written(monkeypatch, capsys, tmp_path):
    ir, vis = asset_pair()
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    _no_model(monkeypatch)
    code, captured = run_main(monkeypatch, capsys, ["fuse", ir, vis, "-o", tmp_path / "x.png", "--sheet", ro / "s.png"])
    assert code == 1 and captured.err == f"Error: {ro / 's.png'}: folder {ro} is not writable\n"
    code, captured = run_main(monkeypatch, capsys, ["fuse", ir, vis, "-o", tmp_path / "s.png", "--sheet", tmp_path / "s.png"])
    assert code == 1 and "the sheet would overwrite the fused image" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro"]


def test_a_batch_with_every_output_present_loads_neither_model_nor_torch(tiny_checkpoint, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    first = runner.invoke(app, ["batch", str(ASSETS), "-o", str(out), "--weights", str(tiny_checkpoint)])
    assert first.exit_code == 0, first.output
    code = ("import sys; from swinfuse.cli import main; sys.argv = ['swinfuse', 'batch', sys.argv[1], '-o', "
            "sys.argv[2], '--weights', sys.argv[3], '--json', '--threads', '1']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(ASSETS), str(out), str(tiny_checkpoint)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.rsplit("\n", 2)[0])
    assert report["skipped"] == report["pairs_selected"] > 0 and report["written"] == 0
    assert done.stdout.split("\n")[-2] == "False"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"]["sha256"] == api.checkpoint_record(tiny_checkpoint)["sha256"]
    from swinfuse.model.checkpoint import load_checkpoint
    assert manifest["weights"]["sha256"] == load_checkpoint(tiny_checkpoint)[1]["sha256"]
    assert manifest["config"]["embed_dim"] == load_checkpoint(tiny_checkpoint)[1]["config"].embed_dim
