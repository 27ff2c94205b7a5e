"""`api.evaluate` and the `evaluate` command: pairing by stem, layouts, CSV, --json on stdout only, the exact
one-line errors and exit codes; several methods in one table (best marked, missing images, Markdown and
LaTeX parsed back, ranks); and each named convention on a hand-computable case."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from swinfuse import api, evaluate_cmd
from swinfuse.errors import InputError
from swinfuse.metrics import METRIC_NAMES


def evaluate_images(*, fused, sources=None, ir_dir=None, vis_dir=None, workers=1, csv=None):
    """One method, as `swinfuse evaluate FUSED SOURCES` scores it."""
    return api.evaluate(methods=[("fused", fused)], sources=sources, ir_dir=ir_dir, vis_dir=vis_dir,
                        workers=workers, csv=csv).methods[0]

H, W = 48, 64  # VIF needs at least 41 px a side


def _image(seed: int, shape=(H, W)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(cv2.GaussianBlur(rng.uniform(0, 255, shape), (0, 0), 2.0) * 3 - 250, 0, 255).astype(np.uint8)


@pytest.fixture
def dataset(tmp_path):
    """tmp/src/{ir,vis}/{a,b,c} and tmp/fused/{a,b,extra}: c has no fused image, extra no sources."""
    for kind in ("src/ir", "src/vis", "fused"):
        (tmp_path / kind).mkdir(parents=True)
    for i, stem in enumerate("abc"):
        ir, vis = _image(i), _image(10 + i)
        cv2.imwrite(str(tmp_path / "src/ir" / f"{stem}.png"), ir)
        cv2.imwrite(str(tmp_path / "src/vis" / f"{stem}.png"), vis)
        if stem != "c":
            cv2.imwrite(str(tmp_path / "fused" / f"{stem}.png"), ((ir.astype(int) + vis) // 2).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "fused" / "extra.png"), _image(99))
    return tmp_path


def test_evaluate_images_matches_by_stem_and_reports_the_rest(dataset):
    out_csv = dataset / "scores.csv"
    report = evaluate_images(fused=dataset / "fused", sources=dataset / "src", workers=1, csv=out_csv)
    assert report.count == 2
    assert [r["name"] for r in report.images] == ["a", "b"]
    assert report.unmatched == ["extra"] and report.missing == ["c"] and report.failed == []
    assert report.mean["EN"] == pytest.approx((report.images[0]["EN"] + report.images[1]["EN"]) / 2)
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["image", *METRIC_NAMES]
    assert [r[0] for r in rows[1:]] == ["a", "b", "mean"]
    assert float(rows[3][1]) == pytest.approx(report.mean["EN"], abs=1e-6)


def test_one_fused_file_and_a_case_insensitive_layout(dataset):
    (dataset / "src/ir").rename(dataset / "src/Infrared")
    (dataset / "src/vis").rename(dataset / "src/VISIBLE")
    report = evaluate_images(fused=dataset / "fused/b.png", sources=dataset / "src", workers=1)
    assert [r["name"] for r in report.images] == ["b"] and report.missing == []


def test_explicit_folders_give_the_same_numbers(dataset):
    by_layout = evaluate_images(fused=dataset / "fused", sources=dataset / "src", workers=1)
    by_dirs = evaluate_images(fused=dataset / "fused", ir_dir=dataset / "src/ir",
                                           vis_dir=dataset / "src/vis", workers=2)
    assert by_dirs.images == by_layout.images


def test_size_mismatch_names_both_sizes(dataset):
    cv2.imwrite(str(dataset / "fused/a.png"), _image(5, (H, W + 8)))
    with pytest.raises(InputError, match=r"^a: fused image is 72x48 but infrared is 64x48"):
        evaluate_images(fused=dataset / "fused/a.png", sources=dataset / "src", workers=1)


def test_no_matching_names(dataset):
    with pytest.raises(InputError, match="no fused image has the name of a source pair"):
        evaluate_images(fused=dataset / "fused/extra.png", sources=dataset / "src", workers=1)


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root():  # a group, so the command is called by name as in the real CLI
        pass

    evaluate_cmd.register(app)
    return app


def test_cli_json_is_the_only_stdout(dataset):
    result = CliRunner().invoke(_app(), ["evaluate", str(dataset / "fused"), str(dataset / "src"),
                                         "--json", "--workers", "1"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["metrics"] == list(METRIC_NAMES)
    assert [r["name"] for r in data["images"]] == ["a", "b"]
    assert set(data["mean"]) == set(METRIC_NAMES)
    assert "1 fused images without a source pair: extra" in result.stderr


def test_cli_table_and_help_state_the_conventions(dataset):
    runner = CliRunner()
    table = runner.invoke(_app(), ["evaluate", str(dataset / "fused"), str(dataset / "src"), "--workers", "1"])
    assert table.exit_code == 0 and "mean (2)" in table.stdout and "Qabf" in table.stdout
    help_text = " ".join(runner.invoke(_app(), ["evaluate", "--help"]).stdout.split())
    for phrase in ("0..255", "summed over", "CDDFuse"):
        assert phrase in help_text


def _main(monkeypatch, capsys, args):
    """The real entry point: usage errors exit 2, library errors print one `Error:` line and exit 1."""
    from swinfuse.cli import main

    monkeypatch.setattr("sys.argv", ["swinfuse", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr()


def test_cli_missing_folder_is_one_error_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "fused").mkdir()
    cv2.imwrite(str(tmp_path / "fused/a.png"), _image(0))
    missing = tmp_path / "nope"
    code, out = _main(monkeypatch, capsys, ["evaluate", tmp_path / "fused", missing])
    assert code == 1 and out.err == f"Error: {missing}: no such folder\n" and out.out == ""
    code, out = _main(monkeypatch, capsys, ["evaluate", missing, tmp_path])
    assert code == 1 and out.err == f"Error: {missing}: no such file or folder\n"


def test_cli_table_in_80_columns_cuts_no_number(tmp_path):
    import os
    import subprocess
    import sys

    for kind in ("src/ir", "src/vis", "fused"):
        (tmp_path / kind).mkdir(parents=True)
    for i, stem in enumerate(["FLIR_video_01425", "FLIR_09624"]):
        ir, vis = _image(i), _image(10 + i)
        cv2.imwrite(str(tmp_path / "src/ir" / f"{stem}.png"), ir)
        cv2.imwrite(str(tmp_path / "src/vis" / f"{stem}.png"), vis)
        cv2.imwrite(str(tmp_path / "fused" / f"{stem}.png"), ((ir.astype(int) + vis) // 2).astype(np.uint8))
    command = [sys.executable, "-m", "swinfuse", "evaluate", str(tmp_path / "fused"), str(tmp_path / "src"),
               "--workers", "1"]
    data = json.loads(subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120).stdout)
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout and max(len(line) for line in out.stdout.splitlines()) <= 80
    for record in [*data["images"], data["mean"]]:
        for name in METRIC_NAMES:
            assert f"{record[name]:.4f}" in out.stdout
    assert "FLIR_video_01425" in out.stdout
