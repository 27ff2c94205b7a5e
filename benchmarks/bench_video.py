"""`swinfuse video`: its throughput against `batch` on the same frames, the flicker and warping error of each
clip (before and after --temporal-smoothing), and its memory on a short and a long input.

    python benchmarks/bench_video.py ../shared/data/video --threads 1 [--frames 8] [--clip-frames 30]
    python benchmarks/bench_video.py ../shared/data/video --threads 1 --parts strip

- throughput: the first --frames frames of the first clip (480x640). Video: swinfuse.video's pipeline on the
  two video files, as `swinfuse video` runs it (decode, forward, colour, temporal measures, mp4v encode);
  batch: fusing.fuse_batch on the same frames written beforehand as PNG pairs (read, forward, colour, PNG
  write). Both warmed up; --rounds rounds of batch then video, the ratio taken within each round (a slow spell
  of a shared machine lowers both sides of it), the median reported.
- flicker: each clip's first --clip-frames frames (CLIP/ir.mp4 + CLIP/vis.mp4), fused once; the same forward
  outputs are then replayed through the pipeline with --temporal-smoothing, so the two rows differ by the
  smoothing alone. Figures in grey levels of 255 (swinfuse.metrics.temporal).
- strip (--parts strip): docs/video_strip.png, infrared / visible / `swinfuse video`'s output at four moments of
  --strip-clip (each fused by the pipeline with --start t --frames 1).
- memory: a synthetic moving-shapes video pair of 10 and of --long frames (--memory-size), each fused by
  api.fuse_video in a fresh process: the process's peak RSS (model, libraries and frames in flight).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import add_common_args, load_model, machine, run_child, setup, table


class Replay(torch.nn.Module):
    """The model, recording its outputs on the first pass and replaying them on the next (smoothing compared
    on identical forwards, at no second forward's cost)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.outputs, self.replaying = model, model.config, [], False

    def encode_prompts(self, prompts):
        return self.model.encode_prompts(prompts)

    def rewind(self):
        self.replaying, self._next = True, iter(self.outputs)

    def forward(self, ir, vis, text):
        if self.replaying:
            return next(self._next)
        out = self.model(ir, vis, text)
        self.outputs.append(out.clone())
        return out


def _clips(root: Path) -> list[Path]:
    clips = sorted(p for p in root.iterdir() if (p / "ir.mp4").exists() and (p / "vis.mp4").exists())
    if not clips:
        sys.exit(f"{root}: no CLIP/ir.mp4 + CLIP/vis.mp4 found")
    return clips


def _fuse(clip: Path, out: Path, model, options, frames: int, smoothing: float = 0.0):
    from swinfuse.video.pipeline import fuse_video, open_video

    opened = open_video(ir=clip / "ir.mp4", vis=clip / "vis.mp4", output=out, options=options, frames=frames,
                        overwrite=True)
    return fuse_video(opened, model=model, meta={}, options=options, temporal_smoothing=smoothing)


def throughput(args, model, options, clip: Path, tmp: Path) -> None:
    import cv2

    from swinfuse.fusing import fuse_batch

    for sub, name in (("ir", "ir.mp4"), ("vis", "vis.mp4")):
        (tmp / "pairs" / sub).mkdir(parents=True)
        capture = cv2.VideoCapture(str(clip / name))
        for k in range(args.frames):
            cv2.imwrite(str(tmp / "pairs" / sub / f"{k:06d}.png"), capture.read()[1])
    meta = {"config": model.config, "provenance": {}, "sha256": None, "path": None}
    _fuse(clip, tmp / "warm.mp4", model, options, 2)  # warm-up: the first forwards allocate
    rows, ratios = [], []
    for r in range(args.rounds):
        batch = fuse_batch(root=tmp / "pairs", output_dir=tmp / f"batch{r}", prompt="", model=model, meta=meta,
                           options=options)
        assert batch.written == args.frames, batch.records
        video = _fuse(clip, tmp / f"video{r}.mp4", model, options, args.frames)
        ratios.append(video.throughput_fps / batch.throughput_pairs_per_s)
        rows.append((batch.throughput_pairs_per_s, video.throughput_fps, video.latency_ms))
    b = statistics.median(x[0] for x in rows)
    v = statistics.median(x[1] for x in rows)
    lat = rows[-1][2]
    print(f"\nthroughput: {clip.name}, first {args.frames} frames (480x640); {args.rounds} rounds of batch then "
          f"video, medians; video / batch = median of the per-round ratios ({', '.join(f'{x:.1%}' for x in ratios)})")
    print(table(["frames", "batch frames/s", "video frames/s", "video / batch",
                 "video ms/frame: decode / forward / write (+measures)"],
                [[args.frames, f"{b:.3f}", f"{v:.3f}", f"{statistics.median(ratios):.1%}",
                  " / ".join(f"{lat[k]:.0f}" for k in ("decode", "forward", "write"))]]))


def _smoothing_ms(clip: Path, outputs, strength: float) -> float:
    """The smoother's own time per frame, on the recorded fused frames and the clip's decoded sources."""
    from swinfuse.video.matching import plan_pairs
    from swinfuse.video.smoothing import SourceGatedSmoother
    from swinfuse.video.sources import decode_pairs, open_source, split_pair

    ir, vis = open_source(clip / "ir.mp4", "infrared"), open_source(clip / "vis.mp4", "visible")
    plan = plan_pairs(ir_count=ir.count, vis_count=vis.count, ir_fps=ir.fps, vis_fps=vis.fps, trim=True,
                      frames=len(outputs))
    frames = [split_pair(item, ir.path, vis.path, False) for item in decode_pairs(ir, vis, plan)]
    smoother, spent = SourceGatedSmoother(strength), 0.0
    for out, (_, ir_y, visible, _) in zip(outputs, frames):
        y = out[0, 0].numpy()
        t0 = time.perf_counter()
        smoother(y, ir_y, visible.y)
        spent += time.perf_counter() - t0
    return spent / len(frames) * 1e3


def flicker(args, model, options, clips: list[Path], tmp: Path) -> None:
    rows = []
    for clip in clips:
        replay = Replay(model)
        plain = _fuse(clip, tmp / f"{clip.name}.mp4", replay, options, args.clip_frames)
        replay.rewind()
        smooth = _fuse(clip, tmp / f"{clip.name}_s.mp4", replay, options, args.clip_frames, args.smoothing)
        smooth_ms = _smoothing_ms(clip, replay.outputs, args.smoothing)
        for label, report in (("plain", plain), (f"smoothing {args.smoothing:g}", smooth)):
            f, w = report.temporal["flicker"], report.temporal["warping_error"]
            rows.append([clip.name, label, report.frames, f"{report.fps_out:g}",
                         *(f"{f[k]:.3f}" for k in ("fused", "infrared", "visible", "mean_of_sources")),
                         *(f"{w[k]:.3f}" for k in ("fused", "infrared", "visible", "mean_of_sources")),
                         f"{report.temporal['valid_fraction']:.2f}",
                         f"{smooth_ms:.1f} ms ({smooth_ms / plain.latency_ms['forward']:.2%} of a forward)"
                         if report is smooth else "-"])
    print(f"\nflicker and warping error (grey levels of 255), first {args.clip_frames} frames of each clip, empty "
          "prompt; the smoothed row replays the same forwards")
    print(table(["clip", "output", "frames", "fps",
                 "flicker fused", "flicker IR", "flicker VIS", "flicker mean(IR,VIS)",
                 "warp fused", "warp IR", "warp VIS", "warp mean(IR,VIS)", "flow valid", "smoothing cost"], rows))


def strip(args, model, options, clip: Path, tmp: Path) -> None:
    import cv2
    import numpy as np

    from swinfuse.video.pipeline import fuse_video, open_video
    from swinfuse.video.sources import open_source

    source = open_source(clip / "vis.mp4", "visible")
    times = [round(k * (source.count - 1) * 0.96 / 3) for k in range(4)]
    columns = []
    for t in times:
        opened = open_video(ir=clip / "ir.mp4", vis=clip / "vis.mp4", output=tmp / f"strip{t}", options=options,
                            start=t, frames=1)
        fuse_video(opened, model=model, meta={}, options=options, metrics=False)
        fused = cv2.imread(str(tmp / f"strip{t}" / "000000.png"))
        ir, vis = (cv2.VideoCapture(str(clip / name)) for name in ("ir.mp4", "vis.mp4"))
        for _ in range(t):
            ir.grab(), vis.grab()
        rows = [ir.read()[1], vis.read()[1], fused]
        columns.append(np.vstack([cv2.resize(x, None, fx=args.strip_scale, fy=args.strip_scale,
                                             interpolation=cv2.INTER_AREA) for x in rows]))
    gap, label_w, top = 4, 70, 18
    h, w = columns[0].shape[0] // 3, columns[0].shape[1]
    canvas = np.full((top + 3 * h, label_w + 4 * w + 3 * gap, 3), 255, np.uint8)
    for k, (t, column) in enumerate(zip(times, columns)):
        x = label_w + k * (w + gap)
        canvas[top:, x:x + w] = column
        cv2.putText(canvas, f"frame {t} ({t / source.fps:.1f} s)", (x + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    (0, 0, 0), 1, cv2.LINE_AA)
    for r, name in enumerate(("infrared", "visible", "fused")):
        cv2.putText(canvas, name, (4, top + r * h + h // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
    out = Path(__file__).resolve().parent.parent / "docs" / "video_strip.png"
    cv2.imwrite(str(out), canvas, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"\nstrip: {out.name} from {clip.name}, frames {times}, {out.stat().st_size / 1e3:.0f} KB")


def _synthetic(folder: Path, frames: int, size: tuple[int, int]) -> tuple[Path, Path]:
    """A moving-shapes infrared/visible pair of videos (MJPG .avi), written frame by frame."""
    import cv2
    import numpy as np

    h, w = size
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (7, 7), 0)
    paths = folder / "ir.avi", folder / "vis.avi"
    writers = [cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 25, (w, h)) for p in paths]
    for t in range(frames):
        f = background.copy()
        x = (3 * t) % w
        cv2.circle(f, (x, h // 2), h // 6, (30, 220, 250), -1)
        writers[0].write(cv2.cvtColor(cv2.cvtColor(255 - f, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR))
        writers[1].write(f)
    for wr in writers:
        wr.release()
    return paths


def memory_child(args) -> None:
    from swinfuse import api
    from swinfuse.fusing.options import FuseOptions
    from swinfuse.memory import peak_rss_mb

    with tempfile.TemporaryDirectory() as tmp:
        ir, vis = _synthetic(Path(tmp), args.memory_child, tuple(args.memory_size))
        opts = FuseOptions(device=args.device, threads=args.threads)
        report = api.fuse_video(ir=ir, vis=vis, output=Path(tmp) / "out.mp4", weights=args.weights, options=opts)
    print(json.dumps({"frames": report.frames, "peak_rss_mb": peak_rss_mb(), "fps": report.throughput_fps,
                      "wall_s": report.wall_s}))


def memory(args) -> None:
    rows = []
    for n in (10, args.long):
        extra = ["--weights", str(args.weights)] if args.weights else []
        r = run_child("bench_video.py", "--memory-child", str(n), "--memory-size", *map(str, args.memory_size),
                      "--threads", str(args.threads), "--device", args.device, *extra)
        rows.append([r["frames"], f"{r['peak_rss_mb']:.0f}", f"{r['fps']:.2f}", f"{r['wall_s']:.0f}"])
    h, w = args.memory_size
    print(f"\nmemory: synthetic {h}x{w} moving-shapes pair (MJPG .avi), api.fuse_video to mp4v with the temporal "
          "measures, one fresh process each")
    print(table(["frames", "peak RSS MiB (whole process)", "frames/s", "wall s"], rows))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("video_dir", type=Path, nargs="?", help="folder of clips, each CLIP/ir.mp4 + CLIP/vis.mp4")
    p.add_argument("--parts", default="throughput,flicker,memory")
    p.add_argument("--frames", type=int, default=8, help="frames for the throughput comparison")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clip-frames", type=int, default=30, help="frames of each clip for the flicker figures")
    p.add_argument("--smoothing", type=float, default=0.8, help="--temporal-smoothing compared")
    p.add_argument("--strip-clip", default="0117_1605", help="the clip of --parts strip")
    p.add_argument("--strip-scale", type=float, default=0.25)
    p.add_argument("--long", type=int, default=1000, help="frames of the long memory input")
    p.add_argument("--memory-size", type=int, nargs=2, default=(120, 160), metavar=("H", "W"))
    p.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    device = setup(args)
    if args.memory_child:
        return memory_child(args)
    from swinfuse.fusing.options import FuseOptions

    parts = set(args.parts.split(","))
    print(f"bench_video: {machine()}")
    if parts & {"throughput", "flicker", "strip"}:
        if args.video_dir is None:
            sys.exit("give the folder of clips (e.g. ../shared/data/video)")
        clips = _clips(args.video_dir)
        model, source = load_model(args.weights, device)
        print(f"model: {source}")
        options = FuseOptions(device=str(device), threads=args.threads, tile=None)  # whole 480x640 frames
        with tempfile.TemporaryDirectory() as tmp:
            if "throughput" in parts:
                throughput(args, model, options, clips[0], Path(tmp))
            if "flicker" in parts:
                flicker(args, model, options, clips, Path(tmp))
            if "strip" in parts:
                strip(args, model, options, args.video_dir / args.strip_clip, Path(tmp))
    if "memory" in parts:
        memory(args)


if __name__ == "__main__":
    main()
