"""`swinfuse video` in the library: tiny videos made here (moving shapes, 32x48, a few frames), fused with the
stand-in model of test_fusing (its output is known exactly) or a tiny random checkpoint."""

from __future__ import annotations

import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from swinfuse.errors import ConfigError, InputError, OutputError
from swinfuse.video.matching import parse_offset, plan_pairs
from swinfuse.video.pipeline import fuse_video, open_video
from swinfuse.video.results import VideoInterrupted
from test_fusing import META, StandIn

H, W = 32, 48


def scene(n: int, colour: bool = True, seed: int = 0, step: int = 2) -> list[np.ndarray]:
    """n frames of a square moving right over a textured background (BGR uint8, or gray)."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (5, 5), 0)
    frames = []
    for i in range(n):
        f = background.copy()
        cv2.rectangle(f, (2 + step * i, 8), (12 + step * i, 20), (40, 200, 250), -1)
        frames.append(f if colour else cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    return frames


def write_video(path: Path, frames, fps: float = 25.0, codec: str = "FFV1") -> Path:
    """FFV1 (lossless) in .avi unless asked otherwise, so decoded frames equal the frames written."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*codec), fps, (w, h), True)
    assert writer.isOpened()
    for f in frames:
        writer.write(f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def write_frames(folder: Path, frames) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        assert cv2.imwrite(str(folder / f"frame_{i}.png"), f)  # frame_10 after frame_9: natural order
    return folder


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps, frames = capture.get(cv2.CAP_PROP_FPS), []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    return frames, fps


def run(tmp_path, ir, vis, output, model=None, **kwargs):
    """open_video then fuse_video, as the api runs them: FuseOptions fields go to both."""
    import dataclasses

    from swinfuse.fusing.options import FuseOptions

    fields = [f.name for f in dataclasses.fields(FuseOptions)]
    options = FuseOptions(device="cpu", **{k: kwargs.pop(k) for k in fields if k in kwargs})
    run_kwargs = {k: kwargs.pop(k) for k in ("metrics", "temporal_smoothing", "progress") if k in kwargs}
    opened = open_video(ir=ir, vis=vis, output=output, options=options, **kwargs)
    return fuse_video(opened, prompt="p", model=model or StandIn(), meta=META, options=options, **run_kwargs)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --- videos and frame folders ----------------------------------------------------------------------

def test_videos_in_video_out_keeps_the_visible_rate_and_length(tmp_path):
    ir = write_video(tmp_path / "ir.avi", scene(6, colour=False, seed=1), fps=12.5)
    vis = write_video(tmp_path / "vis.avi", scene(6), fps=12.5)
    report = run(tmp_path, ir, vis, tmp_path / "out" / "fused.mp4")
    frames, fps = read_video(tmp_path / "out" / "fused.mp4")
    assert len(frames) == report.frames == report.planned == 6 and fps == pytest.approx(12.5)
    assert frames[0].shape == (H, W, 3) and report.codec == "mp4v" and report.fps_out == pytest.approx(12.5)
    assert report.output == tmp_path / "out" / "fused.mp4" and not report.interrupted
    assert set(report.latency_ms) == {"decode", "forward", "write"} and report.throughput_fps > 0
    assert leftovers(tmp_path / "out") == []


def test_frame_folders_in_png_frames_out_are_fused_as_fuse_does(tmp_path):
    """The stand-in fuses max(IR, Y): the PNG frames are that Y, its tone capped, with the visible's chroma,
    exactly as `fuse` writes them."""
    from swinfuse.data.io import compose_output, infrared_from_array, visible_from_array
    from swinfuse.fusing.forward import cap_tone

    ir_frames, vis_frames = scene(4, colour=False, seed=1), scene(4)
    ir = write_frames(tmp_path / "ir", ir_frames)
    vis = write_frames(tmp_path / "vis", vis_frames)
    report = run(tmp_path, ir, vis, tmp_path / "fused", fps=10)
    written = sorted((tmp_path / "fused").iterdir())
    assert [p.name for p in written] == [f"{k:06d}.png" for k in range(4)] and report.kind == "frames"
    for path, ir_f, vis_f in zip(written, ir_frames, vis_frames):
        visible = visible_from_array(vis_f, 8)
        ir_y = infrared_from_array(ir_f, 8)[0]
        expected = compose_output(cap_tone(np.maximum(ir_y, visible.y), ir_y, visible.y), visible)
        np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), expected)
    assert report.fps_out == 10 and report.fps_in == {"infrared": None, "visible": None}


def test_gray_writes_the_fused_y_and_a_model_with_upscale_a_larger_video(tmp_path):
    ir = write_video(tmp_path / "ir.avi", scene(3, colour=False))
    vis = write_video(tmp_path / "vis.avi", scene(3))
    report = run(tmp_path, ir, vis, tmp_path / "g", model=StandIn(upscale=2), gray=True)
    frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((tmp_path / "g").iterdir())]
    assert frames[0].shape == (2 * H, 2 * W) and report.size_out == (2 * H, 2 * W)


def test_odd_sizes_lose_a_row_in_a_video_with_a_note_and_webm_writes_quietly(tmp_path, capfd):
    ir = write_frames(tmp_path / "ir", [f[:17, :23] for f in scene(3, colour=False)])
    vis = write_frames(tmp_path / "vis", [f[:17, :23] for f in scene(3)])
    report = run(tmp_path, ir, vis, tmp_path / "o.webm")
    frames, _ = read_video(tmp_path / "o.webm")
    assert len(frames) == 3 and frames[0].shape == (16, 22, 3) and report.size_out == (16, 22)
    assert any("even sizes" in n for n in report.notes) and report.codec == "VP80"
    assert "OpenCV" not in capfd.readouterr().err  # its note that WebM takes no codec tag stays off the terminal


def test_start_and_frames_fuse_a_part(tmp_path):
    ir = write_frames(tmp_path / "ir", scene(8, colour=False))
    vis = write_frames(tmp_path / "vis", scene(8))
    report = run(tmp_path, ir, vis, tmp_path / "part", model=StandIn("vis"), start=3, frames=2)
    assert report.frames == 2 and report.start == 3
    first = cv2.imread(str(tmp_path / "part" / "000000.png"))
    assert np.abs(first.astype(int) - scene(8)[3]).max() <= 1  # fused Y == visible Y: frame 3 comes back


# --- pairing: rates, lengths, offsets ----------------------------------------------------------------

def test_different_rates_are_refused_naming_both_unless_matched(tmp_path):
    ir = write_video(tmp_path / "ir.avi", scene(10, colour=False), fps=25)
    vis = write_video(tmp_path / "vis.avi", scene(12), fps=30)
    with pytest.raises(InputError, match=r"frame rates differ: infrared .*ir.avi is 25 fps, visible .*vis.avi is "
                                         r"30 fps; --match-rate"):
        open_video(ir=ir, vis=vis, output=tmp_path / "o.mp4")
    report = run(tmp_path, ir, vis, tmp_path / "o.mp4", match_rate=True)
    assert report.frames == 12 and report.fps_out == 30 and any("nearest in time" in n for n in report.notes)


def test_different_lengths_are_refused_unless_trimmed(tmp_path):
    ir = write_video(tmp_path / "ir.avi", scene(7, colour=False))
    vis = write_video(tmp_path / "vis.avi", scene(5))
    with pytest.raises(InputError, match=r"lengths differ: infrared .* has 7 frames \(0.28 s\), visible .* has "
                                         r"5 frames \(0.20 s\); --trim fuses the 5 frames they share"):
        open_video(ir=ir, vis=vis, output=tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()
    assert run(tmp_path, ir, vis, tmp_path / "o.mp4", trim=True).frames == 5


def test_an_infrared_offset_pairs_later_infrared_frames(tmp_path):
    ir = write_frames(tmp_path / "ir", scene(6, colour=False))
    vis = write_frames(tmp_path / "vis", scene(4))
    plan = open_video(ir=ir, vis=vis, output=tmp_path / "o", ir_offset="2").plan
    assert list(plan.ir_indices()) == [2, 3, 4, 5] and list(plan.vis_indices()) == [0, 1, 2, 3]


def test_stretch_is_refused_it_would_flicker(tmp_path):
    from swinfuse.fusing.options import FuseOptions

    ir = write_frames(tmp_path / "ir", scene(2, colour=False))
    vis = write_frames(tmp_path / "vis", scene(2))
    with pytest.raises(ConfigError, match="flickers from frame to frame"):
        open_video(ir=ir, vis=vis, output=tmp_path / "o", options=FuseOptions(stretch=True))


@pytest.mark.parametrize("text, fps, frames", [("3", None, 3), ("-2", 25, -2), ("0.2s", 25, 5), ("-40ms", 25, -1)])
def test_offsets_in_frames_or_time(text, fps, frames):
    assert parse_offset(text, fps) == frames


def test_offset_problems_are_one_line():
    with pytest.raises(ConfigError, match="frames .* or a time"):
        parse_offset("two", 25)
    with pytest.raises(ConfigError, match="a folder of frames has none"):
        parse_offset("1s", None)


def test_plans():
    negative = plan_pairs(ir_count=10, vis_count=12, ir_fps=25, vis_fps=25, offset=-2)
    assert (negative.vis_first, negative.count) == (2, 10)  # the visible's first two frames have no infrared
    faster_ir = plan_pairs(ir_count=20, vis_count=10, ir_fps=50, vis_fps=25, match_rate=True)
    assert list(faster_ir.ir_indices()) == list(range(0, 20, 2))
    with pytest.raises(InputError, match="--start 10 is past the end"):
        plan_pairs(ir_count=10, vis_count=10, ir_fps=25, vis_fps=25, start=10)


def test_different_sizes_follow_fuses_resize_rule(tmp_path):
    ir = write_frames(tmp_path / "ir", [cv2.resize(f, (W * 2, H * 2)) for f in scene(2, colour=False)])
    vis = write_frames(tmp_path / "vis", scene(2))
    with pytest.raises(InputError, match=r"sizes differ: infrared .* is 64×96, visible .* is 32×48 \(H×W\); "
                                         r"--resize"):
        open_video(ir=ir, vis=vis, output=tmp_path / "o")
    report = run(tmp_path, ir, vis, tmp_path / "o", resize=True)
    assert report.frames == 2 and any("resized" in n for n in report.notes)


# --- bad input, existing output, interruption ------------------------------------------------------

def _bad_inputs(tmp_path):
    zero = cv2.VideoWriter(str(tmp_path / "zero.avi"), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 25, (W, H))
    zero.release()
    with wave.open(str(tmp_path / "sound.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(b"\0\0" * 800)
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "nothing").mkdir()
    return {"zero.avi": "has no frames", "sound.wav": "no video stream OpenCV can decode",
            "junk.mp4": "no video stream OpenCV can decode", "empty.mp4": "file is empty",
            "missing.mp4": "no such file", "nothing": "the folder holds no frames"}


def test_bad_inputs_are_one_line_each_and_leave_nothing(tmp_path):
    good = write_video(tmp_path / "good.avi", scene(3))
    for name, problem in _bad_inputs(tmp_path).items():
        with pytest.raises(InputError, match=problem) as info:
            open_video(ir=good, vis=tmp_path / name, output=tmp_path / "out" / "o.mp4")
        assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_truncated_video_fails_when_it_ends_early_and_leaves_no_output(tmp_path):
    write_video(tmp_path / "full.avi", scene(12), codec="MJPG")
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) // 2])  # the header still lists 12 frames
    ir = write_video(tmp_path / "ir.avi", scene(12, colour=False), codec="MJPG")
    with pytest.raises(InputError, match=r"visible video .*cut.avi: ends after \d+ of the 12 frames"):
        run(tmp_path, ir, tmp_path / "cut.avi", tmp_path / "out" / "o.mp4")
    assert list((tmp_path / "out").iterdir()) == []


def test_an_existing_output_is_kept_unless_overwrite(tmp_path):
    ir = write_video(tmp_path / "ir.avi", scene(2, colour=False))
    vis = write_video(tmp_path / "vis.avi", scene(2))
    (tmp_path / "o.mp4").write_bytes(b"keep")
    with pytest.raises(OutputError, match="exists; --overwrite replaces it"):
        open_video(ir=ir, vis=vis, output=tmp_path / "o.mp4")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "x.png").write_bytes(b"keep")
    with pytest.raises(OutputError, match="not empty; --overwrite"):
        open_video(ir=ir, vis=vis, output=tmp_path / "frames")
    run(tmp_path, ir, vis, tmp_path / "frames", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["000000.png", "000001.png"]
    for bad, message in [("o.png", "is an image name"), ("o.xyz", "unsupported video format"),
                         ("ir.avi", "exists")]:
        with pytest.raises(OutputError, match=message):
            open_video(ir=ir, vis=vis, output=tmp_path / bad)


class Interrupting(StandIn):
    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, ir, vis, text):
        if self.calls == self.at:
            raise KeyboardInterrupt
        self.calls += 1
        return super().forward(ir, vis, text)


def test_ctrl_c_keeps_a_playable_partial_named_so(tmp_path):
    ir = write_video(tmp_path / "ir.avi", scene(8, colour=False))
    vis = write_video(tmp_path / "vis.avi", scene(8))
    with pytest.raises(VideoInterrupted) as info:
        run(tmp_path, ir, vis, tmp_path / "out" / "o.mp4", model=Interrupting(3))
    report = info.value.report
    assert report.interrupted and report.frames == 3 and report.output is None
    assert report.partial == tmp_path / "out" / "o.partial.mp4"
    assert len(read_video(report.partial)[0]) == 3  # it plays: the container was finalised
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["o.partial.mp4"]


def test_ctrl_c_before_any_frame_leaves_nothing(tmp_path):
    ir = write_frames(tmp_path / "ir", scene(3, colour=False))
    vis = write_frames(tmp_path / "vis", scene(3))
    with pytest.raises(VideoInterrupted) as info:
        run(tmp_path, ir, vis, tmp_path / "out" / "f", model=Interrupting(0))
    assert info.value.report.partial is None and info.value.report.frames == 0
    assert list((tmp_path / "out").iterdir()) == []


def test_a_killed_runs_temporaries_are_removed(tmp_path):
    ir = write_video(tmp_path / "ir.avi", scene(2, colour=False))
    vis = write_video(tmp_path / "vis.avi", scene(2))
    stale = tmp_path / ".o.mp4.0123abcd.tmp.mp4"
    stale.write_bytes(b"half")
    run(tmp_path, ir, vis, tmp_path / "o.mp4")
    assert not stale.exists() and (tmp_path / "o.mp4").exists()


# --- steadiness ---------------------------------------------------------------------------------------

def test_warping_takes_motion_out_and_flicker_does_not():
    from swinfuse.metrics.temporal import TemporalMeter

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.random((96, 160)).astype(np.float32), (0, 0), 2)
    texture = (texture - texture.min()) / np.ptp(texture)
    meter = TemporalMeter()
    for t in range(4):
        frame = np.ascontiguousarray(texture[16:80, 8 + 2 * t:136 + 2 * t])  # the view pans 2 px a frame
        noisy = np.clip(frame + rng.normal(0, 0.02, frame.shape).astype(np.float32), 0, 1)
        meter.update(noisy, frame, frame)
    stats = meter.stats()
    assert stats.frames == 4 and stats.valid_fraction > 0.5
    assert stats.warping_error["visible"] < 0.3 * stats.flicker["visible"]  # the pan is compensated
    assert stats.warping_error["fused"] > 2 * stats.warping_error["visible"]  # the fused's noise is not


def test_the_report_carries_the_measures_and_evaluate_video_finds_them_again(tmp_path):
    from swinfuse import api

    ir = write_frames(tmp_path / "clip" / "ir", scene(5, colour=False, seed=1))
    vis = write_frames(tmp_path / "clip" / "vis", scene(5))
    report = run(tmp_path, ir, vis, tmp_path / "fused")
    temporal = report.temporal
    assert temporal["frames"] == 5 and set(temporal["flicker"]) == {"fused", "infrared", "visible", "mean_of_sources"}
    again = api.evaluate_video(fused=tmp_path / "fused", sources=tmp_path / "clip")
    assert again.frames == 5
    for kind in ("flicker", "warping_error"):
        for stream, value in temporal[kind].items():  # the written frames are the measured ones, quantised
            assert again.temporal[kind][stream] == pytest.approx(value, abs=0.05), (kind, stream)


def test_smoothing_calms_a_flickering_model_on_a_still_scene_and_lets_motion_through(tmp_path):
    from swinfuse.video.smoothing import SourceGatedSmoother

    rng = np.random.default_rng(0)
    still = np.full((H, W), 0.5, np.float32)
    smoother = SourceGatedSmoother(0.8)
    outputs = [smoother(still + rng.normal(0, 0.05, still.shape).astype(np.float32), still, still) for _ in range(8)]
    assert np.std(np.diff(outputs[2:], axis=0)) < 0.5 * 0.05 * np.sqrt(2)  # the model's noise, calmed
    moved = still.copy()
    moved[8:16, 8:16] = 1.0  # a source changes: the fused value there passes as it is
    out = smoother(moved, moved, still)
    np.testing.assert_allclose(out[10:14, 10:14], 1.0, atol=1e-3)


class Noisy(StandIn):
    """Fuses the visible Y plus fresh noise each frame: flickers where the sources do not."""

    def __init__(self):
        super().__init__()
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, ir, vis, text):
        return (vis + 0.05 * torch.randn(vis.shape, generator=self.generator)).clamp(0, 1)


def test_temporal_smoothing_lowers_the_measured_flicker(tmp_path):
    ir = write_frames(tmp_path / "ir", [scene(1, colour=False)[0]] * 6)
    vis = write_frames(tmp_path / "vis", [scene(1)[0]] * 6)
    plain = run(tmp_path, ir, vis, tmp_path / "a", model=Noisy()).temporal["flicker"]
    smooth = run(tmp_path, ir, vis, tmp_path / "b", model=Noisy(), temporal_smoothing=0.8).temporal["flicker"]
    assert plain["fused"] > 5 * plain["visible"] and smooth["fused"] < 0.6 * plain["fused"]
    with pytest.raises(ConfigError, match=r"--temporal-smoothing must be in \[0, 1\)"):
        run(tmp_path, ir, vis, tmp_path / "c", temporal_smoothing=1.0)


# --- the api, end to end with a real (tiny) checkpoint -------------------------------------------------

def test_api_fuse_video_with_a_checkpoint(tmp_path, tiny_checkpoint):
    from swinfuse import api
    from swinfuse.fusing.options import FuseOptions

    ir = write_video(tmp_path / "ir.avi", scene(3, colour=False))
    vis = write_video(tmp_path / "vis.avi", scene(3))
    seen = []
    report = api.fuse_video(ir=ir, vis=vis, output=tmp_path / "o.avi", weights=tiny_checkpoint,
                            options=FuseOptions(device="cpu"),
                            progress=lambda done, total: seen.append((done, total)))
    assert report.frames == 3 and report.codec == "MJPG" and report.weights == Path(tiny_checkpoint)
    assert seen[0] == (0, 3) and seen[-1] == (3, 3) and len(read_video(tmp_path / "o.avi")[0]) == 3
    assert report.to_dict()["temporal"]["frames"] == 3


def test_api_refuses_bad_input_before_loading_weights(tmp_path):
    from swinfuse import api

    vis = write_video(tmp_path / "vis.avi", scene(2))
    with pytest.raises(InputError, match="no such file"):
        api.fuse_video(ir=tmp_path / "nope.avi", vis=vis, output=tmp_path / "o.mp4", weights=tmp_path / "none")


def test_the_report_types_load_without_torch_or_opencv():
    import subprocess
    import sys

    code = "import sys, swinfuse.video, swinfuse.api; print([m for m in ('torch', 'cv2', 'numpy') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
