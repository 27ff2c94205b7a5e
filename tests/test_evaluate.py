"""`api.evaluate` and the `evaluate` command: pairing by stem, layouts, CSV, --json on stdout only, the exact
one-line errors and exit codes; several methods in one table (best marked, missing images, Markdown and
LaTeX parsed back, ranks); and each named convention on a hand-computable case."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import run_main, strict_json
from swinfuse import api
from swinfuse.cli import app
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
    with pytest.raises(InputError, match=r"^a: fused image is 48×72 but infrared is 48×64 \(H×W\)"):
        evaluate_images(fused=dataset / "fused/a.png", sources=dataset / "src", workers=1)


def test_no_matching_names(dataset):
    with pytest.raises(InputError, match="no fused image has the name of a source pair"):
        evaluate_images(fused=dataset / "fused/extra.png", sources=dataset / "src", workers=1)


def test_cli_json_is_the_only_stdout(dataset):
    result = CliRunner().invoke(app, ["evaluate", str(dataset / "fused"), str(dataset / "src"),
                                         "--json", "--workers", "1"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["metrics"] == list(METRIC_NAMES)
    assert [r["name"] for r in data["images"]] == ["a", "b"]
    assert set(data["mean"]) == set(METRIC_NAMES)
    assert "1 fused images without a source pair: extra" in result.stderr


def test_cli_table_has_each_image_and_the_mean(dataset):
    table = CliRunner().invoke(app, ["evaluate", str(dataset / "fused"), str(dataset / "src"), "--workers", "1"])
    assert table.exit_code == 0 and "mean (2)" in table.stdout and "Qabf" in table.stdout


def test_cli_missing_folder_is_one_error_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "fused").mkdir()
    cv2.imwrite(str(tmp_path / "fused/a.png"), _image(0))
    missing = tmp_path / "nope"
    code, out = run_main(monkeypatch, capsys, ["evaluate", tmp_path / "fused", missing])
    assert code == 1 and out.err == f"Error: {missing}: no such folder\n" and out.out == ""
    code, out = run_main(monkeypatch, capsys, ["evaluate", missing, tmp_path])
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


# -- several methods in one table ------------------------------------------------------------------------
@pytest.fixture
def two_methods(dataset):
    """sharp/ = fused/ (a, b: the mean of the sources); blur/ = the same, heavily blurred, for a, b and c.
    Blurring lowers SF and AG, so sharp is best there; sharp lacks c."""
    (dataset / "blur").mkdir()
    for stem in "abc":
        ir = cv2.imread(str(dataset / "src/ir" / f"{stem}.png"), 0).astype(int)
        vis = cv2.imread(str(dataset / "src/vis" / f"{stem}.png"), 0).astype(int)
        mean = ((ir + vis) // 2).astype(np.uint8)
        cv2.imwrite(str(dataset / "blur" / f"{stem}.png"), cv2.GaussianBlur(mean, (0, 0), 3.0))
    (dataset / "fused/extra.png").unlink()
    (dataset / "fused").rename(dataset / "sharp")
    return dataset


def _compare(root, *extra):
    return ["evaluate", root / "src", "--method", f"sharp={root / 'sharp'}", "--method", f"blur={root / 'blur'}",
            "--workers", "1", *extra]


def test_two_methods_best_marked_on_shared_images_with_a_warning(two_methods, monkeypatch, capsys):
    code, out = run_main(monkeypatch, capsys, _compare(two_methods, "--json"))
    assert code in (0, None), out.err
    data = json.loads(out.out)
    assert data["convention"] == "cddfuse" and data["shared_only"] is True
    methods = {m["name"]: m for m in data["methods"]}
    assert methods["sharp"]["count"] == methods["blur"]["count"] == 2  # c only in blur: left out
    assert [r["name"] for r in methods["blur"]["images"]] == ["a", "b"]
    assert methods["sharp"]["mean"]["SF"] > methods["blur"]["mean"]["SF"]
    assert data["best"]["SF"] == ["sharp"] and data["best"]["AG"] == ["sharp"]
    assert data["directions"]["Nabf"] == "lower" and data["directions"]["SF"] == "higher"
    err = " ".join(out.err.split())
    assert "sharp lacks 1 of the 3 images: c" in err and "scored on the 2 images all methods share" in err

    # The same images scored alone give the same numbers: one method's path and several methods' agree.
    alone = evaluate_images(fused=two_methods / "sharp", sources=two_methods / "src")
    assert alone.mean == pytest.approx(methods["sharp"]["mean"])

    code, out = run_main(monkeypatch, capsys, _compare(two_methods, "--json", "--all-images"))
    counts = {m["name"]: m["count"] for m in json.loads(out.out)["methods"]}
    assert counts == {"sharp": 2, "blur": 3}


def test_several_fused_folders_are_named_by_their_folder_and_the_table_marks_the_best(two_methods, monkeypatch,
                                                                                       capsys):
    monkeypatch.setattr("swinfuse.cli.render.stdout.width", 200)
    code, out = run_main(monkeypatch, capsys, ["evaluate", two_methods / "sharp", two_methods / "blur",
                                            two_methods / "src", "--workers", "2", "--rank"])
    assert code in (0, None), out.err
    lines = {line.split("│")[1].strip(): line for line in out.out.splitlines() if line.startswith("│")}
    assert set(lines) >= {"sharp", "blur"}
    sf = [cell.strip() for cell in lines["sharp"].split("│")][5]  # method, images, EN, SD, SF
    assert sf.endswith("*") and "*" not in lines["blur"].split("│")[5]
    assert "SF ↑" in out.out and "Nabf ↓" in out.out and "rank ↓" in out.out


def _markdown_rows(text: str) -> tuple[list[str], dict[str, list[str]]]:
    table = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    return cells[0], {row[0]: row for row in cells[2:]}


def test_markdown_parses_back_to_the_json_numbers(two_methods, monkeypatch, capsys):
    _, out = run_main(monkeypatch, capsys, _compare(two_methods, "--json", "--rank"))
    full = json.loads(out.out)
    data = {m["name"]: m for m in full["methods"]}
    code, out = run_main(monkeypatch, capsys, _compare(two_methods, "--format", "markdown", "--rank"))
    assert code in (0, None)
    head, rows = _markdown_rows(out.out)
    assert head[:3] == ["Method", "Images", "EN ↑"] and "Nabf ↓" in head and head[-1] == "Mean rank ↓"
    for name, row in rows.items():
        assert int(row[1]) == data[name]["count"]
        for metric, cell in zip(METRIC_NAMES, row[2:]):
            mean, std = cell.replace("**", "").split(" ± ")
            assert float(mean) == pytest.approx(data[name]["mean"][metric], abs=1e-4)
            assert float(std) == pytest.approx(data[name]["std"][metric], abs=1e-4)
            assert cell.startswith("**") == (name in full["best"][metric])
        assert float(row[-1].strip("*")) == pytest.approx(data[name]["rank"], abs=1e-2)
    assert rows["sharp"][head.index("SF ↑")].startswith("**")
    assert not rows["blur"][head.index("SF ↑")].startswith("**")
    assert "Convention: cddfuse" in out.out and "↓ lower is better" in out.out
    # Ranks: each metric hands out 1 and 2 between the two methods, so the mean ranks add up to 3.
    assert data["sharp"]["rank"] + data["blur"]["rank"] == pytest.approx(3.0)


def test_latex_parses_back(two_methods, monkeypatch, capsys):
    code, out = run_main(monkeypatch, capsys, _compare(two_methods, "--format", "latex"))
    assert code in (0, None)
    lines = out.out.splitlines()
    assert lines[0].startswith("% swinfuse evaluate:") and r"\begin{tabular}" in out.out
    body = lines[lines.index(r"\midrule") + 1:lines.index(r"\bottomrule")]
    head = lines[lines.index(r"\toprule") + 1].removesuffix(r" \\").split(" & ")
    assert head[2] == r"EN $\uparrow$" and head[-1] == r"Nabf $\downarrow$"
    rows = {cells[0]: cells for cells in (line.removesuffix(r" \\").split(" & ") for line in body)}
    assert set(rows) == {"sharp", "blur"} and rows["sharp"][1] == "2"
    sf = head.index(r"SF $\uparrow$")
    assert rows["sharp"][sf].startswith(r"\textbf{") and not rows["blur"][sf].startswith(r"\textbf{")
    data = {m["name"]: m for m in json.loads(run_main(monkeypatch, capsys, _compare(two_methods, "--json"))[1].out)["methods"]}
    for name, row in rows.items():
        for metric, cell in zip(METRIC_NAMES, row[2:]):
            mean, std = cell.split(r" $\pm$ ")
            assert float(mean.removeprefix(r"\textbf{").removesuffix("}")) == pytest.approx(
                data[name]["mean"][metric], abs=1e-4)
            assert float(std) == pytest.approx(data[name]["std"][metric], abs=1e-4)


def test_latex_escapes_method_names(two_methods):
    report = api.evaluate(methods={"ours_v2 & 50%": two_methods / "sharp", "blur": two_methods / "blur"},
                          sources=two_methods / "src", workers=1)
    assert r"ours\_v2 \& 50\%" in report.to_latex()


def test_csv_format_has_mean_and_std_per_metric(two_methods, monkeypatch, capsys):
    code, out = run_main(monkeypatch, capsys, _compare(two_methods, "--format", "csv"))
    assert code in (0, None)
    rows = list(csv.DictReader(out.out.splitlines()))
    assert [r["method"] for r in rows] == ["sharp", "blur"] and rows[0]["images"] == "2"
    assert float(rows[0]["SF"]) > float(rows[1]["SF"]) and "SF_std" in rows[0]


# -- exit codes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra,fragment", [
    (["--format", "pdf"], "'pdf' is not one of table, markdown, latex, csv, json"),
    (["--convention", "nope"], "'nope' is not one of cddfuse"),
    (["--method", "no-equals-sign"], "expected NAME=FOLDER"),
    (["--workers", "-1"], "--workers"),
])
def test_usage_errors_exit_2(two_methods, monkeypatch, capsys, extra, fragment):
    code, out = run_main(monkeypatch, capsys, ["evaluate", two_methods / "src", *extra])
    assert code == 2 and fragment in " ".join(out.err.replace("│", " ").split()) and out.out == ""


def test_runtime_errors_exit_1_in_one_line(two_methods, monkeypatch, capsys):
    (two_methods / "other").mkdir()
    cv2.imwrite(str(two_methods / "other/zzz.png"), _image(3))
    code, out = run_main(monkeypatch, capsys, ["evaluate", two_methods / "src", "--method", f"x={two_methods / 'other'}"])
    assert code == 1 and out.err.startswith("Error: ") and out.err.count("\n") == 1 and out.out == ""
    cv2.imwrite(str(two_methods / "other/c.png"), _image(3))  # other has c only, sharp has a and b
    code, out = run_main(monkeypatch, capsys, ["evaluate", two_methods / "src", "--method", f"x={two_methods / 'other'}",
                                            "--method", f"y={two_methods / 'sharp'}"])
    assert code == 1 and "Error: the methods have no image in common" in out.err


def test_help_names_every_convention_the_command_accepts():
    help_text = " ".join(CliRunner().invoke(app, ["evaluate", "--help"], env={"COLUMNS": "200"}).stdout.split())
    for name in api.conventions():
        assert name in help_text


# -- conventions on hand-computable cases ----------------------------------------------------------------
def test_conventions_on_a_copy_of_both_sources():
    """F = A = B, half black and half white: MI per source is H = ln 2 nats = 1 bit, VIF and SSIM per source
    are 1. cddfuse sums (2 ln 2, 2, 2); mean-bits averages, in bits (1, 1, 1)."""
    import math

    from swinfuse.metrics import compute_metrics

    img = np.zeros((H, W), np.uint8)
    img[:, W // 2:] = 255
    cdd = compute_metrics(img, img, img, "cddfuse")
    mean_bits = compute_metrics(img, img, img, "mean-bits")
    assert cdd["MI"] == pytest.approx(2 * math.log(2)) and mean_bits["MI"] == pytest.approx(1.0)
    assert cdd["VIF"] == pytest.approx(2.0) and mean_bits["VIF"] == pytest.approx(1.0)
    assert cdd["SSIM"] == pytest.approx(2.0) and mean_bits["SSIM"] == pytest.approx(1.0)
    for same in ("EN", "SD", "SF", "AG", "Qabf", "Nabf"):  # no convention touches these
        assert cdd[same] == mean_bits[same]
    assert cdd["EN"] == pytest.approx(1.0)


def test_ssim_data_range_on_flat_images():
    """Two flat images p and q: SSIM = (2pq + C1) / (p^2 + q^2 + C1), C1 = (0.01 L)^2 (the contrast term is
    C2 / C2). L = 2 (scikit-image 0.19's float default, cddfuse) vs L = 255 (cddfuse-255)."""
    from swinfuse.metrics import compute_metrics, ssim

    p, q = 100.0, 110.0
    a, b = np.full((H, W), p), np.full((H, W), q)
    for data_range in (2.0, 255.0):
        c1 = (0.01 * data_range) ** 2
        assert ssim(a, b, data_range=data_range) == pytest.approx((2 * p * q + c1) / (p * p + q * q + c1), rel=1e-6)
    cdd = compute_metrics(a, b, b, "cddfuse")["SSIM"]
    wide = compute_metrics(a, b, b, "cddfuse-255")["SSIM"]
    assert cdd == pytest.approx(2 * (22000 + 4e-4) / (22100 + 4e-4), rel=1e-6)
    assert wide == pytest.approx(2 * (22000 + 2.55 ** 2) / (22100 + 2.55 ** 2), rel=1e-6)


def test_the_json_names_the_convention(dataset, monkeypatch, capsys):
    code, out = run_main(monkeypatch, capsys, ["evaluate", dataset / "fused", dataset / "src", "--json", "--workers", "1",
                                            "--convention", "mean-bits"])
    data = json.loads(out.out)
    assert data["convention"] == "mean-bits" and "bits" in data["conventions"]
    default = json.loads(run_main(monkeypatch, capsys, ["evaluate", dataset / "fused", dataset / "src", "--json",
                                                     "--workers", "1"])[1].out)
    assert default["convention"] == "cddfuse"
    for new, old in zip(data["images"], default["images"]):
        assert new["EN"] == old["EN"] and new["SSIM"] < old["SSIM"]  # mean of two, about half the sum


def test_csv_file_keeps_per_image_rows_of_every_method(two_methods, monkeypatch, capsys):
    out_csv = two_methods / "rows.csv"
    code, out = run_main(monkeypatch, capsys, _compare(two_methods, "--csv", out_csv, "--all-images"))
    assert code in (0, None) and f"wrote {out_csv}" in " ".join(out.err.split())
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["method", "image", *METRIC_NAMES]
    assert [(r[0], r[1]) for r in rows[1:]] == [("sharp", "a"), ("sharp", "b"), ("sharp", "mean"),
                                                ("blur", "a"), ("blur", "b"), ("blur", "c"), ("blur", "mean")]


def test_evaluate_json_of_flat_sources_is_strict_json(tmp_path, monkeypatch, capsys):
    for sub in ("src/ir", "src/vis", "fused"):
        (tmp_path / sub).mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "src/ir/0.png"), np.zeros((48, 64), np.uint8))
    cv2.imwrite(str(tmp_path / "src/vis/0.png"), np.zeros((48, 64), np.uint8))
    cv2.imwrite(str(tmp_path / "fused/0.png"), np.full((48, 64), 115, np.uint8))
    code, out = run_main(monkeypatch, capsys, ["evaluate", tmp_path / "fused", tmp_path / "src", "--json",
                                               "--workers", "1"])
    assert code in (0, None)
    data = strict_json(out.out)
    assert data["images"][0]["Qabf"] is None and data["mean"]["SCD"] is None
