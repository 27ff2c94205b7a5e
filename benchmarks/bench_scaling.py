"""Latency and peak memory of one forward against image size: is the cost linear in pixels?

Memory: each size runs in a fresh process (a clean peak RSS): the model is built (or loaded), warmed up at
64x64, the resident memory taken as the baseline, the frame fused once (whole, or in tiles when it exceeds
the free-memory budget, as `swinfuse fuse` does), then once more under torch.profiler. Per-pixel memory is
given twice: the peak torch allocated during that forward (the CPU counterpart of CUDA's
max_memory_allocated) and (peak RSS - baseline), which adds what glibc's heap holds on to.

Time: one more process fuses every size once (warm-up), then `--rounds` rounds of all sizes in turn, so a
slow spell of this shared machine lands on every size alike instead of on whichever ran then. Per-pixel
time is the median over rounds / pixels (the minimum is printed too). The kernel's share of the CPU time
(page faults: zeroing fresh memory) is printed as well. Linear scaling shows as flat per-pixel columns; the
last lines give max/min of each over the square sizes.

    python benchmarks/bench_scaling.py --threads 2 [--sizes 256,512,1024,2048,480x640] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch

from _common import (add_common_args, inputs, load_model, machine, peak_allocated_mb, peak_rss_mb, rss_mb, run_child,
                     setup, table)


def _sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in (s.split("x") if "x" in s else (s, s))) for s in text.split(",")]


def child_memory(args) -> None:
    from swinfuse.tiling import fuse_frame

    device = setup(args)
    H, W = args.child_memory
    model, source = load_model(args.weights, device)
    ir, vis = inputs(H, W)
    with torch.inference_mode():
        text = model.encode_prompts([""])
        fuse_frame(model, *inputs(64, 64), text, tile=None)
        base = rss_mb()
        frame = fuse_frame(model, ir, vis, text, tile=0)  # the tiling decision, and the peak RSS of one forward
        peak_mb = peak_rss_mb()  # before the profiled forward: the profiler's own records add to RSS
        alloc_mb = peak_allocated_mb(lambda: fuse_frame(model, ir, vis, text, tile=0))
    print(json.dumps({"H": H, "W": W, "peak_mb": peak_mb, "base_mb": base, "alloc_mb": alloc_mb, "tile": frame.tile,
                      "tiles": frame.tiles, "source": source, "machine": machine()}))


def child_timing(args) -> None:
    from swinfuse.tiling import fuse_frame

    device = setup(args)
    model, _ = load_model(args.weights, device)
    sizes = _sizes(args.sizes)
    pairs = {s: inputs(*s) for s in sizes}
    ms = {s: [] for s in sizes}
    cpu = {s: [0.0, 0.0] for s in sizes}  # user, system seconds
    with torch.inference_mode():
        text = model.encode_prompts([""])
        for s in sizes:  # warm-up: caches per shape, the heap grown to the largest frame
            fuse_frame(model, *pairs[s], text, tile=0)
        for _ in range(args.rounds):
            for s in sizes:
                r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                fuse_frame(model, *pairs[s], text, tile=0)
                t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
                ms[s].append((t1 - t0) * 1e3)
                cpu[s][0] += r1.ru_utime - r0.ru_utime
                cpu[s][1] += r1.ru_stime - r0.ru_stime
    print(json.dumps([{"H": H, "W": W, "ms": ms[(H, W)], "kernel_share": cpu[(H, W)][1] / max(sum(cpu[(H, W)]), 1e-9)}
                      for H, W in sizes]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--sizes", default="256,512,1024,2048,480x640")
    p.add_argument("--rounds", type=int, default=5, help="timing rounds over all sizes (default 5)")
    p.add_argument("--child-memory", type=int, nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--child-timing", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_memory:
        return child_memory(args)
    if args.child_timing:
        return child_timing(args)
    extra = ["--threads", str(args.threads), "--device", args.device]
    if args.weights:
        extra += ["--weights", str(args.weights)]
    memory = []
    for H, W in _sizes(args.sizes):
        memory.append(run_child("bench_scaling.py", "--child-memory", str(H), str(W), *extra))
        print(f"  memory {W}x{H}: peak RSS {memory[-1]['peak_mb']:.0f} MB", flush=True)
    print(f"  timing {args.rounds} rounds of {args.sizes} ...", flush=True)
    timing = run_child("bench_scaling.py", "--child-timing", "--sizes", args.sizes, "--rounds", str(args.rounds), *extra)
    rows, squares = [], []
    for m, t in zip(memory, timing):
        H, W = m["H"], m["W"]
        px = H * W
        med, best = statistics.median(t["ms"]), min(t["ms"])
        ns_px, ns_px_min = med * 1e6 / px, best * 1e6 / px
        a_px = m["alloc_mb"] * 2 ** 20 / px
        b_px = (m["peak_mb"] - m["base_mb"]) * 2 ** 20 / px
        rows.append([f"{W}x{H}", f"{px / 1e6:.3f}", f"{med:.0f}", f"{ns_px:.0f}", f"{ns_px_min:.0f}",
                     f"{100 * t['kernel_share']:.0f}%", f"{m['alloc_mb']:.0f}", f"{a_px:.0f}", f"{m['peak_mb']:.0f}",
                     f"{b_px:.0f}", m["tile"] or "whole", m["tiles"]])
        if H == W:
            squares.append((ns_px, ns_px_min, a_px, b_px))
    print(f"bench_scaling: {memory[0]['source']}; {memory[0]['machine']}")
    print(f"latency = median (and min) of {args.rounds} rounds over all sizes in one process, after a warm-up round; "
          "kernel = system share of that CPU time; allocated = peak torch allocated in one forward "
          "(torch.profiler); RSS = peak RSS of a fresh process per size, per pixel above its post-warm-up baseline")
    print(table(["size (WxH)", "Mpx", "latency ms", "ns/px", "ns/px (min)", "kernel", "peak allocated MB",
                 "allocated bytes/px", "peak RSS MB", "RSS bytes/px above baseline", "tile", "tiles"], rows))
    if len(squares) > 1:
        ratio = [max(col) / min(col) for col in zip(*squares)]
        print(f"square sizes, max/min per pixel: time {ratio[0]:.2f} (min times {ratio[1]:.2f}), allocated memory "
              f"{ratio[2]:.2f}, RSS above baseline {ratio[3]:.2f} (goal: <= 1.3)")
        # RSS as fixed + per-pixel: a least-squares line through (pixels, MB above baseline) of the square
        # sizes, and the marginal cost between consecutive square sizes (flat when growth is linear).
        sq = sorted((m["H"] * m["W"], (m["peak_mb"] - m["base_mb"]) * 2 ** 20) for m in memory if m["H"] == m["W"])
        slope, fixed = np.polyfit([p for p, _ in sq], [b for _, b in sq], 1)
        marginal = [(b1 - b0) / (p1 - p0) for (p0, b0), (p1, b1) in zip(sq, sq[1:])]
        print(f"RSS above baseline ~ {fixed / 2 ** 20:.0f} MB fixed + {slope:.0f} bytes/px (least squares over the "
              f"square sizes); marginal bytes/px between consecutive square sizes: "
              f"{', '.join(f'{v:.0f}' for v in marginal)}")


if __name__ == "__main__":
    main()
