"""Latency and peak memory of one forward against image size: is the cost linear in pixels?

Each size runs in a fresh process (a clean peak RSS): the model is built (or loaded), warmed up at 64x64,
the resident memory taken as the baseline, then the frame is fused (whole, or in tiles when it exceeds the
free-memory budget, as `swinfuse fuse` does) once untimed and `reps` times timed. Per-pixel time is the
median latency / pixels; per-pixel memory is (peak RSS - baseline) / pixels. Linear scaling shows as flat
per-pixel columns; the last line gives max/min of each over the square sizes.

    python benchmarks/bench_scaling.py --threads 2 [--sizes 256,512,1024,2048,480x640]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from _common import add_common_args, inputs, load_model, machine, peak_rss_mb, rss_mb, run_child, setup, table, time_ms


def child(args) -> None:
    from swinfuse_cli.tiling import fuse_frame

    device = setup(args)
    H, W = args.child
    model, source = load_model(args.weights, device)
    ir, vis = inputs(H, W)
    with torch.inference_mode():
        text = model.encode_prompts([""])
        fuse_frame(model, *inputs(64, 64), text, tile=None)
        base = rss_mb()
        reps = max(3, min(5, int(1.5e6 // (H * W))))  # a median of at least 3: one timing of a big frame is noisy
        frame = fuse_frame(model, ir, vis, text, tile=0)  # warm-up at this size, and the tiling decision
        ms = time_ms(lambda: fuse_frame(model, ir, vis, text, tile=0), device, warmup=0, repetitions=reps)
    print(json.dumps({"H": H, "W": W, "ms": ms, "reps": reps, "peak_mb": peak_rss_mb(), "base_mb": base,
                      "tile": frame.tile, "tiles": frame.tiles, "source": source, "machine": machine()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--sizes", default="256,512,1024,2048,480x640")
    p.add_argument("--child", type=int, nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    extra = ["--threads", str(args.threads), "--device", args.device]
    if args.weights:
        extra += ["--weights", str(args.weights)]
    rows, squares, results = [], [], []
    for s in args.sizes.split(","):
        H, W = (int(v) for v in (s.split("x") if "x" in s else (s, s)))
        r = run_child("bench_scaling.py", str(H), str(W), *extra)
        results.append(r)
        px = H * W
        ns_px = r["ms"] * 1e6 / px
        b_px = (r["peak_mb"] - r["base_mb"]) * 2 ** 20 / px
        rows.append([f"{W}x{H}", f"{px / 1e6:.3f}", f"{r['ms']:.0f}", r["reps"], f"{ns_px:.0f}",
                     f"{r['peak_mb']:.0f}", f"{b_px:.0f}", r["tile"] or "whole", r["tiles"]])
        if H == W:
            squares.append((ns_px, b_px))
        print(f"  {W}x{H}: {r['ms']:.0f} ms", flush=True)
    print(f"bench_scaling: {results[0]['source']}; {results[0]['machine']}")
    print("latency = median of `reps` forwards after one warm-up at that size; memory = peak RSS of a fresh "
          "process, per pixel above its post-warm-up baseline")
    print(table(["size (WxH)", "Mpx", "latency ms", "reps", "ns/px", "peak RSS MB", "bytes/px above baseline",
                 "tile", "tiles"], rows))
    if len(squares) > 1:
        t = [a for a, _ in squares]
        m = [b for _, b in squares]
        print(f"square sizes: per-pixel time max/min = {max(t) / min(t):.2f}, per-pixel memory max/min = "
              f"{max(m) / min(m):.2f} (goal: both <= 1.3)")
        # Memory as fixed + per-pixel: a least-squares line through (pixels, MB above baseline) of the square
        # sizes, and the marginal cost between consecutive square sizes (flat when growth is linear).
        sq = sorted((r["H"] * r["W"], (r["peak_mb"] - r["base_mb"]) * 2 ** 20) for r in results if r["H"] == r["W"])
        slope, fixed = np.polyfit([p for p, _ in sq], [b for _, b in sq], 1)
        marginal = [(b1 - b0) / (p1 - p0) for (p0, b0), (p1, b1) in zip(sq, sq[1:])]
        print(f"memory above baseline ~ {fixed / 2 ** 20:.0f} MB fixed + {slope:.0f} bytes/px (least squares "
              f"over the square sizes); marginal bytes/px between consecutive square sizes: "
              f"{', '.join(f'{v:.0f}' for v in marginal)}")


if __name__ == "__main__":
    main()
