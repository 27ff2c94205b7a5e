"""fuse_pair and fuse_batch with a stand-in model, so these tests exercise the data path alone."""

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from swinfuse.errors import ConfigError, InputError, OutputError
from swinfuse.fusing import FuseOptions, fuse_batch, fuse_pair, open_pair

ASSETS = Path(__file__).parent / "assets"
rng = np.random.default_rng(0)


class StandIn(torch.nn.Module):
    """Fuses by the elementwise max of infrared and visible Y ('max') or returns the visible Y ('vis'),
    so the expected output is known exactly. Records the prompts it was asked to encode."""

    def __init__(self, mode="max", upscale=1, fail_width=None):
        super().__init__()
        self.mode, self.fail_width = mode, fail_width
        self.gain = torch.nn.Parameter(torch.ones(1))
        # upscale, and the fields tiling reads (the default tile, 0, is automatic), as the default preset's
        self.config = SimpleNamespace(upscale=upscale, window_size=8, pad_multiple=8, patch_size=1, embed_dim=16,
                                      mlp_ratio=2.0, upsampler="")
        self.encoded = []

    def encode_prompts(self, prompts):
        self.encoded.append(list(prompts))
        return torch.zeros(len(prompts), 4)

    def forward(self, ir, vis, text):
        assert ir.shape == vis.shape and ir.shape[1] == 1 and text.shape == (1, 4)
        if ir.shape[-1] == self.fail_width:
            raise RuntimeError("stand-in model failure")
        out = (torch.maximum(ir, vis) if self.mode == "max" else vis) * self.gain
        upscale = self.config.upscale
        return F.interpolate(out, scale_factor=upscale, mode="nearest") if upscale > 1 else out


META = {"sha256": "ab" * 32, "config": None, "provenance": {"note": "test"}}


def image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def pair(tmp_path, vis, ir=None, stem="s"):
    h, w = vis.shape[:2]
    ir = rng.integers(0, 256, (h, w), dtype=np.uint8) if ir is None else ir
    return image(tmp_path / "ir" / f"{stem}.png", ir), image(tmp_path / "vis" / f"{stem}.png", vis)


def _options(kwargs: dict) -> FuseOptions:
    """The FuseOptions fields among a test's keyword arguments, taken out of them (device: cpu by default)."""
    fields = {f.name for f in dataclasses.fields(FuseOptions)}
    return FuseOptions(**{"device": "cpu", **{k: kwargs.pop(k) for k in list(kwargs) if k in fields}})


def fuse(ir, vis, tmp_path, model=None, **kwargs):
    options = _options(kwargs)
    opened = open_pair(ir_path=ir, vis_path=vis, prompts=kwargs.pop("prompts", ["p"]),
                       output=kwargs.pop("output", tmp_path / "out.png"), sheet=kwargs.pop("sheet", None),
                       options=options)
    return fuse_pair(opened, model=model or StandIn(), meta=kwargs.pop("meta", META), options=options, **kwargs)


def read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# --- one pair -------------------------------------------------------------------------------------

def test_colour_in_colour_out_keeps_the_visible_chroma(tmp_path):
    vis = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)  # odd sizes keep their size
    result = fuse(*pair(tmp_path, vis), tmp_path, model=StandIn("vis"))
    out = read(result.outputs[0].path)
    assert out.shape == (17, 23, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - vis).max() <= 1  # fused Y == visible Y, so the visible comes back


def test_gray_in_gray_out_is_the_fused_y(tmp_path):
    ir_raw = rng.integers(0, 256, (16, 21), dtype=np.uint8)
    vis_raw = rng.integers(0, 256, (16, 21), dtype=np.uint8)
    result = fuse(*pair(tmp_path, vis_raw, ir_raw), tmp_path, tone="off")
    np.testing.assert_array_equal(read(result.outputs[0].path), np.maximum(ir_raw, vis_raw))


def test_tone_cap_brings_a_fusion_brighter_than_both_sources_down_to_the_brighter_one(tmp_path):
    # The stand-in's max(IR, Y) is brighter on average than either source: by default it comes out lowered to
    # the brighter source's mean (black kept black, the order of every level kept, the brightest moved down by
    # the most); a fusion no brighter than that is left alone.
    ir_raw = rng.integers(0, 256, (16, 21), dtype=np.uint8)
    vis_raw = rng.integers(0, 256, (16, 21), dtype=np.uint8)
    ir_raw[0, 0] = vis_raw[0, 0] = 0
    ir_raw[0, 1] = 255
    fused = np.maximum(ir_raw, vis_raw).astype(float)
    out = read(fuse(*pair(tmp_path, vis_raw, ir_raw), tmp_path).outputs[0].path).astype(float)
    ceiling = max(ir_raw.mean(), vis_raw.mean())
    assert fused.mean() - ceiling > 20
    assert abs(out.mean() - ceiling) < 1.0
    assert out[0, 0] == 0 and out[0, 1] < 255 - 20
    order = np.argsort(fused.ravel(), kind="stable")
    assert (np.diff(out.ravel()[order]) >= 0).all()  # a monotone map: no level overtakes another
    assert (out <= fused).all()
    dark = (vis_raw // 2).astype(np.uint8)  # StandIn("vis") returns this dim visible: below the infrared's mean
    out = read(fuse(*pair(tmp_path, dark, ir_raw, stem="d"), tmp_path, model=StandIn("vis"),
                    output=tmp_path / "d.png").outputs[0].path)
    np.testing.assert_array_equal(out, dark)
    with pytest.raises(ConfigError, match="tone"):
        FuseOptions(tone="darker")


def test_gray_flag_writes_y_only(tmp_path):
    result = fuse(*pair(tmp_path, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)), tmp_path, gray=True)
    assert read(result.outputs[0].path).shape == (16, 16)


def test_16bit_in_16bit_out_unless_asked(tmp_path):
    vis = rng.integers(0, 65536, (16, 20, 3), dtype=np.uint16)
    ir, vis_path = pair(tmp_path, vis, rng.integers(0, 65536, (16, 20), dtype=np.uint16))
    result = fuse(ir, vis_path, tmp_path, model=StandIn("vis"))
    out = read(result.outputs[0].path)
    assert out.dtype == np.uint16 and result.outputs[0].bit_depth == 16
    assert np.abs(out.astype(int) - vis).max() <= 1
    assert read(fuse(ir, vis_path, tmp_path, bit_depth=8).outputs[0].path).dtype == np.uint8
    jpeg = fuse(ir, vis_path, tmp_path, output=tmp_path / "out.jpg")
    assert jpeg.outputs[0].bit_depth == 8 and any("16-bit visible written as 8-bit" in n for n in jpeg.notes)


def test_alpha_is_dropped_with_a_note(tmp_path):
    vis = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    ir, vis_path = pair(tmp_path, vis)
    result = fuse(ir, vis_path, tmp_path)
    assert read(result.outputs[0].path).shape == (16, 16, 3)
    assert result.notes == [f"alpha channel of {vis_path} dropped"]


def test_infrared_alpha_gets_the_same_note(tmp_path):
    ir_rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    ir, vis_path = pair(tmp_path, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), ir=ir_rgba)
    assert fuse(ir, vis_path, tmp_path).notes == [f"alpha channel of {ir} dropped"]
    both = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    ir, vis_path = pair(tmp_path / "both", both, ir=ir_rgba)
    assert fuse(ir, vis_path, tmp_path).notes == [f"alpha channel of {ir} dropped",
                                                  f"alpha channel of {vis_path} dropped"]


def test_upscale_gives_a_larger_colour_output(tmp_path):
    result = fuse(*pair(tmp_path, rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)), tmp_path,
                  model=StandIn(upscale=2))
    assert read(result.outputs[0].path).shape == (18, 26, 3) and result.upscale == 2


def test_mismatched_sizes_name_both_unless_resize(tmp_path):
    ir = image(tmp_path / "ir.png", rng.integers(0, 256, (20, 30), dtype=np.uint8))
    vis = image(tmp_path / "vis.png", rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    with pytest.raises(InputError) as info:
        fuse(ir, vis, tmp_path)
    assert str(info.value) == (f"sizes differ: infrared {ir} is 20×30, visible {vis} is 16×24 (H×W); "
                               "--resize resizes the infrared to the visible")
    assert not (tmp_path / "out.png").exists()
    result = fuse(ir, vis, tmp_path, resize=True)
    assert result.ir_shape == (20, 30) and result.vis_shape == (16, 24, 3)
    assert read(result.outputs[0].path).shape == (16, 24, 3)
    assert result.notes == ["infrared resized from 20×30 to 16×24"]


def test_bad_output_paths_fail_before_any_work(tmp_path):
    ir, vis = pair(tmp_path, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    model = StandIn()
    with pytest.raises(OutputError, match=r"out\.webp: unsupported output format '\.webp'"):
        fuse(ir, vis, tmp_path, model=model, output=tmp_path / "out.webp")
    with pytest.raises(OutputError, match=r"out\.jpg: \.jpg cannot store 16-bit images; use \.png or \.tif$"):
        fuse(ir, vis, tmp_path, model=model, output=tmp_path / "out.jpg", bit_depth=16)
    assert model.encoded == [] and sorted(p.name for p in tmp_path.iterdir()) == ["ir", "vis"]


@pytest.mark.parametrize("target", ["ir", "vis"])
def test_output_never_overwrites_a_source(tmp_path, target):
    ir, vis = pair(tmp_path, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    source = {"ir": ir, "vis": vis}[target]
    before = source.read_bytes()
    model = StandIn()
    with pytest.raises(OutputError) as info:
        fuse(ir, vis, tmp_path, model=model, output=source)
    assert str(info.value) == f"{source}: output would overwrite an input image"
    with pytest.raises(OutputError, match="would overwrite an input image"):
        fuse(ir, vis, tmp_path, model=model, sheet=source)
    assert source.read_bytes() == before and model.encoded == []


@pytest.mark.parametrize("prompts", [["p"], ["a", "b"]])
@pytest.mark.parametrize("exists", [True, False])
def test_output_folder_for_one_prompt_or_many(tmp_path, prompts, exists):
    ir, vis = pair(tmp_path, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), stem="FLIR_1")
    folder = tmp_path / "fused"
    if exists:
        folder.mkdir()
    result = fuse(ir, vis, tmp_path, output=folder, prompts=prompts)
    names = ["FLIR_1_fused.png"] if len(prompts) == 1 else ["FLIR_1_fused_p1-a.png", "FLIR_1_fused_p2-b.png"]
    assert [o.path for o in result.outputs] == [folder / n for n in names]
    assert sorted(p.name for p in folder.iterdir()) == names


def test_default_output_name(tmp_path, monkeypatch):
    ir, vis = pair(tmp_path, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), stem="FLIR_1")
    monkeypatch.chdir(tmp_path)
    result = fuse(ir, vis, tmp_path, output=None)
    assert result.outputs[0].path == Path("FLIR_1_fused.png") and (tmp_path / "FLIR_1_fused.png").is_file()


def test_several_prompts_give_traceable_outputs_and_a_sheet(tmp_path):
    ir, vis = pair(tmp_path, rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    model = StandIn()
    prompts = ["Visible image is in extremely LOW light!", ""]
    result = fuse(ir, vis, tmp_path, model=model, prompts=prompts, sheet=tmp_path / "sheet.png")
    assert [o.path.name for o in result.outputs] == ["out_p1-visible-image-is-in-extremely-low-light.png",
                                                     "out_p2-empty.png"]
    assert all(o.path.is_file() and o.shape == (16, 24, 3) for o in result.outputs)
    assert model.encoded == [prompts]  # every prompt encoded in one call
    sheet = read(tmp_path / "sheet.png")
    assert sheet.ndim == 3 and sheet.shape[1] == 4 * 24 + 3 * 4 and sheet.shape[0] > 16  # 4 tiles, 3 gaps


def test_result_reports_shapes_weights_latency_and_memory(tmp_path):
    ir, vis = pair(tmp_path, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    result = fuse(ir, vis, tmp_path, weights="w.safetensors")
    assert result.ir_shape == (16, 16) and result.vis_shape == (16, 16, 3)
    assert result.params == 1 and result.weights_short_hash == "ab" * 6 and result.device == "cpu"
    assert set(result.latency_ms) == {"load", "preprocess", "forward", "write", "total"}
    assert all(v >= 0 for v in result.latency_ms.values())
    assert result.peak_rss_mb > 0 and result.peak_gpu_mb is None
    data = json.loads(json.dumps(result.to_dict()))
    assert data["weights"] == "w.safetensors" and data["outputs"][0]["shape"] == [16, 16, 3]


def test_bad_input_file_is_an_input_error(tmp_path):
    ir, vis = pair(tmp_path, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    vis.write_bytes(b"")
    with pytest.raises(InputError, match=r"^visible image .*s\.png: file is empty \(0 bytes\)$"):
        fuse(ir, vis, tmp_path)
    assert not (tmp_path / "out.png").exists()


# --- a folder -------------------------------------------------------------------------------------

def make_folder(root, count=5, size=(16, 20)):
    for k in range(count):
        pair(root, rng.integers(0, 256, (*size, 3), dtype=np.uint8), stem=f"{k:03d}")
    return root


def batch(root, out, model=None, **kwargs):
    options = kwargs.pop("options", None) or _options(kwargs)
    return fuse_batch(root=root, output_dir=out, prompt=kwargs.pop("prompt", "p"), model=model or StandIn(),
                      meta=kwargs.pop("meta", META), options=options, **kwargs)


def test_batch_writes_every_pair_once_and_a_manifest(tmp_path):
    root = make_folder(tmp_path / "data")
    image(root / "vis" / "lonely.png", np.zeros((4, 4), np.uint8))
    model, calls = StandIn(), []
    report = batch(root, tmp_path / "out", model=model, progress=lambda *a: calls.append(a))
    assert [r.status for r in report.records] == ["written"] * 5 and report.written == 5
    assert [r.rel for r in report.records] == [f"{k:03d}" for k in range(5)]
    assert all(read(r.output).shape == (16, 20, 3) for r in report.records)
    assert report.unmatched_vis == [root / "vis" / "lonely.png"] and report.unmatched_ir == []
    assert model.encoded == [["p"]]  # the prompt is encoded once for the whole batch
    assert calls[0] == (0, 5, None) and [c[0] for c in calls[1:]] == [1, 2, 3, 4, 5]
    assert report.mean_latency_ms > 0 and report.throughput_pairs_per_s > 0
    manifest = json.loads(report.manifest.read_text())
    assert report.manifest.name == "manifest.json"
    assert manifest["weights"]["sha256"] == META["sha256"] and manifest["prompt"] == "p"
    assert manifest["summary"]["written"] == 5 and set(manifest["versions"]) >= {"swinfuse", "torch"}
    assert json.dumps(report.to_dict())


def test_batch_skips_existing_outputs_unless_overwrite(tmp_path):
    root = make_folder(tmp_path / "data", count=3)
    out = tmp_path / "out"
    first = batch(root, out)
    (out / "001.png").unlink()
    stamp = (out / "000.png").stat().st_mtime_ns
    resumed = batch(root, out)
    assert [r.status for r in resumed.records] == ["skipped", "written", "skipped"]
    assert (out / "000.png").stat().st_mtime_ns == stamp
    again = batch(root, out, overwrite=True)
    assert again.written == 3 and again.skipped == 0 and first.written == 3


def test_batch_removes_the_temporaries_a_killed_run_left_for_its_outputs(tmp_path):
    """A SIGKILL mid-write leaves .<output>.<8 hex>.tmp; the next run over those outputs removes them, and
    nothing else: not another file's temporary, not a user's hidden file that only looks alike."""
    root = make_folder(tmp_path / "data", count=2)
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".000.png.0123abcd.tmp", out / ".001.png.deadbeef.tmp"]
    kept = [out / ".other.png.0123abcd.tmp", out / ".000.png.notahex!.tmp", out / ".000.png.0123abcd.tmp.bak"]
    for p in stale + kept:
        p.write_bytes(b"half")
    report = batch(root, out)
    assert report.written == 2
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_a_failing_pair_leaves_no_file_and_the_rest_are_written(tmp_path):
    root = make_folder(tmp_path / "data", count=5)
    data = (root / "vis" / "002.png").read_bytes()
    (root / "vis" / "002.png").write_bytes(data[: len(data) // 2])  # truncated
    image(root / "ir" / "003.png", np.zeros((10, 10), np.uint8))  # size mismatch
    report = batch(root, tmp_path / "out")
    assert [r.status for r in report.records] == ["written", "written", "failed", "failed", "written"]
    assert report.records[2].reason == f"visible image {root / 'vis' / '002.png'}: file is truncated (PNG data ends early)"
    assert report.records[3].reason.startswith("sizes differ: infrared")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["000.png", "001.png", "004.png", "manifest.json"]
    manifest = json.loads(report.manifest.read_text())
    assert [f["rel"] for f in manifest["failed"]] == ["002", "003"]


def test_a_model_error_fails_that_pair_only(tmp_path):
    root = make_folder(tmp_path / "data", count=2)
    pair(root, rng.integers(0, 256, (16, 13, 3), dtype=np.uint8), stem="odd")
    report = batch(root, tmp_path / "out", model=StandIn(fail_width=13))
    assert [(r.rel, r.status, r.reason) for r in report.records] == [
        ("000", "written", None), ("001", "written", None), ("odd", "failed", "stand-in model failure")]
    assert not (tmp_path / "out" / "odd.png").exists()


def test_shards_split_the_outputs(tmp_path):
    root = make_folder(tmp_path / "data", count=5)
    out = tmp_path / "out"
    first, second = batch(root, out, shard="1/2"), batch(root, out, shard=(2, 2))
    names = [{r.rel for r in report.records} for report in (first, second)]
    assert not names[0] & names[1] and names[0] | names[1] == {f"{k:03d}" for k in range(5)}
    assert first.pairs_found == 5 and first.pairs_selected + second.pairs_selected == 5
    assert (out / "manifest-shard-1-of-2.json").is_file() and (out / "manifest-shard-2-of-2.json").is_file()
    with pytest.raises(InputError, match=r"^shard '3/2' is out of range"):
        batch(root, out, shard="3/2")


def test_recursive_batch_mirrors_the_tree(tmp_path):
    root = tmp_path / "data"
    for side in ("ir", "vis"):
        image(root / side / "night" / "a.png", np.zeros((8, 8), np.uint8))
    report = batch(root, tmp_path / "out", recursive=True)
    assert report.written == 1 and (tmp_path / "out" / "night" / "a.png").is_file()


def test_batch_output_problems(tmp_path):
    root = make_folder(tmp_path / "data", count=1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"file: is a file, expected an output folder$"):
        batch(root, tmp_path / "file")
    with pytest.raises(OutputError, match=r"\.jpg cannot store 16-bit images; use \.png or \.tif$"):
        batch(root, tmp_path / "out", ext=".jpg", bit_depth=16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no image pairs found"):
        batch(None, tmp_path / "out", ir_dir=root / "ir", vis_dir=tmp_path / "empty")


def test_batch_over_the_real_assets(tmp_path):
    root = tmp_path / "assets"
    shutil.copytree(ASSETS, root)
    report = batch(root, tmp_path / "out", prompt="")
    assert report.written == 3 and report.failed == 0
    assert all(read(r.output).shape == (40, 60, 3) for r in report.records)


def test_a_real_checkpoint_through_the_library(tmp_path):
    from swinfuse.model.checkpoint import load_checkpoint, save_checkpoint
    from swinfuse.model.config import FusionConfig, TextEncoderSpec
    from swinfuse.model.network import SwinFuse

    torch.manual_seed(0)
    config = FusionConfig.smoke(use_checkpoint=False, text_dim=16,  # upscale 2, pixelshuffledirect
                                text=TextEncoderSpec(width=16, layers=1, heads=2, context_length=16))
    path = save_checkpoint(SwinFuse(config), tmp_path / "tiny.safetensors")
    model, meta = load_checkpoint(path)
    ir, vis = pair(tmp_path, rng.integers(0, 256, (13, 18, 3), dtype=np.uint8))
    result = fuse(ir, vis, tmp_path, model=model, meta=meta, prompts=["stripe noise in the infrared image", ""])
    assert [read(o.path).shape for o in result.outputs] == [(26, 36, 3)] * 2
    assert result.weights == path and result.weights_short_hash == meta["sha256"][:12]
    report = batch(tmp_path, tmp_path / "out", model=model, meta=meta)
    assert report.written == 1 and json.loads(report.manifest.read_text())["config"]["upscale"] == 2


@pytest.mark.parametrize("inside", ["vis", "ir", "vis/sub"])
def test_batch_into_an_input_folder_writes_nothing(tmp_path, inside):
    root = make_folder(tmp_path / "data", count=2)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(OutputError, match="the input folder .*; choose another -o$"):
        batch(root, root / inside)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # no manifest, no folder, no image


def made(out):
    """Each output's record in the manifest: output name -> (prompt, weights sha256), None where unknown."""
    manifest = json.loads((out / "manifest.json").read_text())
    records = manifest["made_with"]
    return {name: None if i is None else (records[i]["prompt"], records[i]["weights_sha256"])
            for name, i in manifest["outputs"].items()}


def test_a_rerun_records_what_made_each_output_and_warns_of_skipped_ones_made_otherwise(tmp_path, recwarn):
    import warnings

    root, out = make_folder(tmp_path / "data", count=3), tmp_path / "out"
    batch(root, out, prompt="a")
    (out / "001.png").unlink()
    other = {**META, "sha256": "cd" * 32}
    with pytest.warns(UserWarning, match=r"^2 skipped outputs in .* were made with other weights, prompt or "
                                         r"settings than this run .*rerun with --overwrite"):
        report = batch(root, out, prompt="b", meta=other)
    assert report.written == 1 and report.skipped == 2
    a, b = ("a", META["sha256"]), ("b", other["sha256"])
    assert made(out) == {"000.png": a, "001.png": b, "002.png": a}  # not the top level's "b" for all three
    assert json.loads((out / "manifest.json").read_text())["prompt"] == "b"  # the top level is this run
    with pytest.warns(UserWarning, match=r"^1 skipped output in .* was made with other"):
        batch(root, out, prompt="a")
    assert made(out) == {"000.png": a, "001.png": b, "002.png": a}
    with pytest.warns(UserWarning, match=r"^3 skipped outputs"):
        batch(root, out, prompt="a", gray=True)  # a setting that shapes the image counts too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch(root, out, prompt="a", overwrite=True)
        assert made(out) == {"000.png": a, "001.png": a, "002.png": a}
        assert batch(root, out, prompt="a").skipped == 3  # a rerun under the same settings: no warning


def test_an_older_manifest_without_per_output_records_still_reads(tmp_path):
    root, out = make_folder(tmp_path / "data", count=2), tmp_path / "out"
    batch(root, out, prompt="old")
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["outputs"], manifest["made_with"]  # as the manifests before per-output records
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=r"^2 skipped outputs"):
        batch(root, out, prompt="new")
    assert made(out) == {"000.png": ("old", META["sha256"]), "001.png": ("old", META["sha256"])}
    (out / "manifest.json").write_text("{not json")  # unreadable: nothing known, nothing claimed
    batch(root, out, prompt="new")
    assert made(out) == {"000.png": None, "001.png": None}


class Interrupting(StandIn):
    """Ctrl-C arrives during the forward of the pair at index `at`."""

    def __init__(self, at):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, ir, vis, text):
        self.calls += 1
        if self.calls > self.at:
            raise KeyboardInterrupt
        return super().forward(ir, vis, text)


def test_an_interrupted_batch_writes_its_manifest_for_what_it_wrote(tmp_path):
    from swinfuse.fusing import BatchInterrupted

    root, out = make_folder(tmp_path / "data", count=5), tmp_path / "out"
    with pytest.raises(KeyboardInterrupt) as info:
        batch(root, out, model=Interrupting(at=2))
    assert isinstance(info.value, BatchInterrupted) and info.value.report.written == 2
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "manifest.json"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["written"] == 2 and manifest["summary"]["interrupted"] is True
    assert sorted(manifest["outputs"]) == ["000.png", "001.png"]
    resumed = batch(root, out)
    assert [r.status for r in resumed.records] == ["skipped"] * 2 + ["written"] * 3
    assert sorted(made(out)) == [f"{k:03d}.png" for k in range(5)]


# --- the manifest's settings: the folder's and the FuseOptions, old manifests still read ---------------------

# The settings keys manifests carry besides the options' fields; a rerun reads manifests by these names.
FOLDER_SETTING_KEYS = {"root", "ir_dir", "vis_dir", "recursive", "overwrite", "shard", "resize", "gray", "bit_depth",
                    "ext", "device", "tile", "tile_overlap"}


def test_the_manifest_records_the_options_beside_the_folder_settings(tmp_path):
    import dataclasses

    from swinfuse.fusing import FuseOptions

    root = make_folder(tmp_path / "data", count=1)
    options = FuseOptions(gray=True, bit_depth=16, tile=None, device="cpu")
    report = batch(root, tmp_path / "out", options=options)
    settings = json.loads(report.manifest.read_text())["settings"]
    assert set(settings) == FOLDER_SETTING_KEYS | {f.name for f in dataclasses.fields(FuseOptions)}
    shown = ("gray", "bit_depth", "tile", "precision", "compile", "threads", "device", "ext")
    assert {k: settings[k] for k in shown} == \
        {"gray": True, "bit_depth": 16, "tile": None, "precision": "fp32", "compile": False, "threads": None,
         "device": "cpu", "ext": ".png"}


def _old_manifest(prompt: str, rel_names, per_output: bool) -> dict:
    """A manifest as the code before FuseOptions wrote it (settings without precision, compile, threads)."""
    settings = {"root": "data", "ir_dir": None, "vis_dir": None, "recursive": False, "overwrite": False,
                "shard": None, "resize": False, "gray": False, "bit_depth": None, "ext": ".png", "device": "cpu",
                "tile": 0, "tile_overlap": None}
    manifest = {"date": "2024-01-01T00:00:00+00:00", "versions": {"swinfuse": "0.1.0"},
                "weights": {"path": None, "sha256": META["sha256"]}, "config": None, "provenance": {},
                "prompt": prompt, "settings": settings, "summary": {"written": len(rel_names)}, "failed": []}
    if per_output:
        making = {k: settings[k] for k in ("resize", "gray", "bit_depth", "tile_overlap")} | {"tile": None}
        manifest["made_with"] = [{"weights_sha256": META["sha256"], "prompt": prompt, "settings": making}]
        manifest["outputs"] = {f"{rel}.png": 0 for rel in rel_names}
    return manifest


@pytest.mark.parametrize("per_output", [True, False], ids=["per-output records", "top-level record only"])
def test_a_rerun_reads_a_manifest_written_before_fuse_options(tmp_path, per_output):
    import warnings

    root, out = make_folder(tmp_path / "data", count=2), tmp_path / "out"
    batch(root, out, prompt="old")
    (out / "manifest.json").write_text(json.dumps(_old_manifest("old", ["000", "001"], per_output)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same weights, prompt and image settings: nothing to warn of
        # outputs made before the tone cap existed are the network's own: tone off matches them
        report = batch(root, out, prompt="old", precision="fp32", threads=None, tone="off")
    assert report.skipped == 2
    assert made(out) == {"000.png": ("old", META["sha256"]), "001.png": ("old", META["sha256"])}
    (out / "manifest.json").write_text(json.dumps(_old_manifest("old", ["000", "001"], per_output)))
    with pytest.warns(UserWarning, match=r"^2 skipped outputs in .* were made with other"):
        batch(root, out, prompt="old", gray=True, tone="off")  # an image setting differs from the old record's
    with pytest.warns(UserWarning, match=r"^2 skipped outputs in .* were made with other"):
        batch(root, out, prompt="old")  # the default caps the tone: not what the old outputs had


def _bomb_header(path: Path, height: int, width: int) -> Path:
    """A small real PNG whose header claims height x width (its CRC no longer matches: never decoded)."""
    data = bytearray(cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes())
    data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    from swinfuse.fusing.options import MAX_PIXELS

    ir = _bomb_header(tmp_path / "ir.png", 20000, 20000)
    vis = image(tmp_path / "vis.png", np.zeros((16, 20), np.uint8))
    with pytest.raises(InputError) as err:
        fuse(ir, vis, tmp_path)
    assert str(err.value) == (f"infrared image {ir} is 20000×20000 (400 Mpx), over the limit of "
                              f"{MAX_PIXELS / 1e6:g} Mpx (--max-pixels; 0: no limit)")
    assert not (tmp_path / "out.png").exists()
    with pytest.raises(InputError, match=r"infrared image .* is 16×20 \(0 Mpx\), over the limit of 0.0001 Mpx"):
        fuse(image(tmp_path / "ir2.png", np.zeros((16, 20), np.uint8)), vis, tmp_path, max_pixels=100)
    fuse(tmp_path / "ir2.png", vis, tmp_path, max_pixels=320)  # exactly at the limit: fused


def test_batch_lists_a_pair_over_the_pixel_limit_as_failed_and_goes_on(tmp_path):
    root = make_folder(tmp_path / "data", count=3)
    _bomb_header(root / "vis" / "001.png", 30000, 20000)
    report = batch(root, tmp_path / "out")
    assert [r.status for r in report.records] == ["written", "failed", "written"]
    assert "is 30000×20000 (600 Mpx), over the limit" in report.records[1].reason


# --- --stretch: one global min-max to the full range, off by default ------------------------------------

def test_stretch_spans_the_full_range_with_one_min_max_over_every_channel(tmp_path):
    # A dim colour visible (20..100) fused as itself: plain, the output keeps its range; stretched, the
    # whole image spans 0..top, one min-max for all channels (a channel-wise stretch would move the hue).
    vis = rng.integers(20, 101, (16, 20, 3), dtype=np.uint8)
    ir, vis_path = pair(tmp_path, vis)
    plain = read(fuse(ir, vis_path, tmp_path, model=StandIn("vis"), output=tmp_path / "plain.png").outputs[0].path)
    assert plain.min() >= 18 and plain.max() <= 102
    out = read(fuse(ir, vis_path, tmp_path, model=StandIn("vis"), stretch=True).outputs[0].path).astype(float)
    assert out.min() == 0 and out.max() == 255
    lo, hi = plain.min(), plain.max()
    np.testing.assert_allclose(out, (plain - lo) / (hi - lo) * 255, atol=2.5)
    wide = read(fuse(ir, vis_path, tmp_path, model=StandIn("vis"), stretch=True, bit_depth=16,
                     output=tmp_path / "wide.png").outputs[0].path)
    assert wide.dtype == np.uint16 and wide.min() == 0 and wide.max() == 65535


def test_stretch_of_a_gray_output_and_of_a_constant_one(tmp_path):
    ir_raw = np.full((16, 16), 40, np.uint8)
    vis_raw = rng.integers(30, 61, (16, 16), dtype=np.uint8)
    out = read(fuse(*pair(tmp_path, vis_raw, ir_raw), tmp_path, stretch=True).outputs[0].path)
    assert out.min() == 0 and out.max() == 255
    flat = np.full((16, 16), 77, np.uint8)
    out = read(fuse(*pair(tmp_path, flat, flat, stem="flat"), tmp_path, stretch=True).outputs[0].path)
    assert (out == 77).all()  # nothing to stretch: left as it is


def test_batch_stretch_is_written_and_recorded_in_the_manifest(tmp_path):
    root = make_folder(tmp_path / "data", count=2)
    report = batch(root, tmp_path / "out", model=StandIn("vis"), stretch=True)
    for record in report.records:
        out = read(record.output)
        assert out.min() == 0 and out.max() == 255
    manifest = json.loads(report.manifest.read_text())
    assert manifest["settings"]["stretch"] is True
    assert manifest["made_with"][0]["settings"]["stretch"] is True
    with pytest.warns(UserWarning, match="made with other"):  # a rerun without it skips outputs made otherwise
        batch(root, tmp_path / "out", model=StandIn("vis"))
