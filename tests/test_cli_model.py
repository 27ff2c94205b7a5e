"""`swinfuse profile` and `swinfuse summary` (swinfuse/cli/model.py): shapes, parameters, memory and latency as
JSON, config options reaching the api, summary rows that add up."""

import json

from typer.testing import CliRunner

from swinfuse import api
from swinfuse.cli import app

runner = CliRunner()


def test_profile_json_reports_shapes_params_memory_latency():
    result = runner.invoke(app, ["profile", "--preset", "smoke", "--size", "64", "--json", "--repetitions", "2",
                                 "--warmup", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (size,) = data["sizes"]
    assert size["output_shape"] == [1, 1, 128, 128] and size["shape_ok"]
    assert data["params"]["total"] == sum(v for k, v in data["params"].items() if k != "total")
    assert size["rss_mb"]["peak"] >= size["rss_mb"]["before"] > 0
    assert size["latency_ms"]["min"] <= size["latency_ms"]["median"] <= size["latency_ms"]["p95"]
    assert size["gflops"] > 0


def test_profile_odd_size_and_sweep():
    result = runner.invoke(app, ["profile", "--preset", "smoke", "--sizes", "67,20x36", "--json", "--repetitions", "1",
                                 "--warmup", "0"])
    assert result.exit_code == 0, result.output
    shapes = [s["output_shape"] for s in json.loads(result.stdout)["sizes"]]
    assert shapes == [[1, 1, 134, 134], [1, 1, 40, 72]]


def test_profile_config_options_reach_the_api(monkeypatch):
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(api, "profile_model", fake)
    runner.invoke(app, ["profile", "--embed-dim", "12", "--ex-depths", "2,2", "--ex-num-heads", "1,1",
                        "--no-qkv-bias", "--window-size", "8", "--preset", "default", "--batch", "3"])
    assert seen["overrides"] == {"embed_dim": 12, "ex_depths": (2, 2), "ex_num_heads": (1, 1), "qkv_bias": False,
                                 "window_size": 8}
    assert seen["preset"] == "default" and seen["batch"] == 3 and seen["sizes"] == ["64"]


def test_summary_json_params_add_up_to_profile_total():
    s = runner.invoke(app, ["summary", "--json"])
    p = runner.invoke(app, ["profile", "--preset", "smoke", "--json", "--repetitions", "1", "--warmup", "0"])
    assert s.exit_code == 0 and p.exit_code == 0, s.output + p.output
    summary, profile = json.loads(s.stdout), json.loads(p.stdout)
    assert sum(row["own_params"] for row in summary["layers"]) == summary["total_params"]
    assert summary["total_params"] == profile["params"]["total"]
    names = [row["name"] for row in summary["layers"]]
    assert "decoder.film.0" in names and "fusion.reduce" in names and "decoder.head" in names


def test_summary_counts_modules_torchinfo_cannot_see():
    # The default preset has two FiLM layers in a list the decoder calls item by item, between its Re stages.
    for depth in ("1", "2"):
        data = json.loads(runner.invoke(app, ["summary", "--json", "--preset", "default", "--size", "16",
                                              "--depth", depth]).stdout)
        assert sum(r["own_params"] for r in data["layers"]) == data["total_params"]
        assert ("decoder.film" in [r["name"] for r in data["layers"]]) == (depth == "2")


def test_summary_depth_collapses():
    deep = json.loads(runner.invoke(app, ["summary", "--json", "--depth", "4"]).stdout)
    shallow = json.loads(runner.invoke(app, ["summary", "--json", "--depth", "1"]).stdout)
    assert max(r["depth"] for r in shallow["layers"]) == 1
    assert len(deep["layers"]) > len(shallow["layers"])
    assert sum(r["own_params"] for r in shallow["layers"]) == shallow["total_params"]


def test_profile_defaults_to_the_shipped_model_with_the_smoke_preset_one_option_away():
    shipped = runner.invoke(app, ["profile", "--size", "32", "--json", "--repetitions", "1", "--warmup", "0"])
    assert shipped.exit_code == 0, shipped.output
    data = json.loads(shipped.stdout)
    assert data["source"] == str(api.default_weights_path()) and data["sizes"][0]["output_shape"] == [1, 1, 32, 32]
    smoke = runner.invoke(app, ["profile", "--preset", "smoke", "--json", "--repetitions", "1", "--warmup", "0"])
    assert json.loads(smoke.stdout)["source"] == "preset:smoke"
