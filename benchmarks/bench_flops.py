"""Achieved GFLOP/s of one forward as a fraction of torch's own large-matmul GFLOP/s, measured in this run.

FLOPs come from torch.utils.flop_counter (swinfuse.profiling.count_flops, which adds the formula torch
lacks for the CPU fused attention op). After a warm-up, --reps rounds each time the machine's limit (the
median of three (2048 x 2048) @ (2048 x 2048) fp32 products) and then one forward at --size (after an
untimed one: the products evict the forward's weights and buffers from the caches): the ratio is taken
within each round, next to the forward it judges, and the median round is reported. The best round and
every round's ratio are printed too: the forward is memory-bound, and neighbours on this shared machine
slow it by up to a third while the compute-bound matmul barely moves. --compile adds a row for the same
forward with its LayerNorms compiled (what `--compile` does) and one for the whole model under
torch.compile (the FLOPs of the eager graph), timed in the same rounds, one after the other. Then torch.profiler shows
where the eager forward's time goes.

    python benchmarks/bench_flops.py --threads 2 [--size 480x640]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import add_common_args, inputs, load_model, machine, matmul_gflops, setup, sync, table


def rounds(fns: dict, device, flops: float, reps: int) -> dict:
    """{name: (median forward ms, median matmul GFLOP/s, per-round ratios achieved / matmul)}: each round times
    the matmul limit, then every forward in turn, so the variants see the same spells of the machine."""
    for fn in fns.values():
        fn()  # warm-up (and, for compiled variants, the compilation)
    ms = {name: [] for name in fns}
    peaks, ratios = [], {name: [] for name in fns}
    for _ in range(reps):
        peaks.append(matmul_gflops(device, repetitions=3))
        for name, fn in fns.items():
            fn()  # the matmul leaves its own data in the caches: one untimed forward brings the forward's back
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            ms[name].append((time.perf_counter() - t0) * 1e3)
            ratios[name].append(flops / (ms[name][-1] * 1e-3) / 1e9 / peaks[-1])
    return {name: (statistics.median(ms[name]), statistics.median(peaks), ratios[name]) for name in fns}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--size", default="480x640")
    p.add_argument("--reps", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--preset", default="default")
    p.add_argument("--profile-rows", type=int, default=12)
    p.add_argument("--compile", action="store_true", help="also time the forward with compiled LayerNorms and under whole-model torch.compile")
    args = p.parse_args()
    device = setup(args)
    from swinfuse.model.network import compile_layer_norms
    from swinfuse.profiling import count_flops

    H, W = (int(v) for v in (args.size.split("x") if "x" in args.size else (args.size, args.size)))
    model, source = load_model(args.weights, device, args.preset)
    ir, vis = inputs(H, W, device)
    nets = {"eager": model}
    if args.compile:  # loaded outside inference mode, as the CLI loads them
        nets["compiled LayerNorms"] = load_model(args.weights, device, args.preset)[0]
        compile_layer_norms(nets["compiled LayerNorms"])  # in place, as `--compile` does
        nets["torch.compile (whole)"] = torch.compile(load_model(args.weights, device, args.preset)[0])
    with torch.inference_mode():
        text = model.encode_prompts([""]).to(device)
        flops = count_flops(model, ir, vis, text)
        rows = []
        timed = rounds({name: (lambda net=net: net(ir, vis, text)) for name, net in nets.items()}, device, flops,
                       args.reps)
        for name, (ms, peak, ratios) in timed.items():
            rows.append([f"{W}x{H}", name, f"{flops / 1e9:.2f}", f"{ms:.0f}", f"{flops / (ms * 1e-3) / 1e9:.1f}",
                         f"{peak:.1f}", f"{statistics.median(ratios):.1%}", f"{max(ratios):.1%}",
                         " ".join(f"{r:.1%}" for r in ratios)])
    print(f"bench_flops: {source}; {machine()}")
    print(f"one forward at {W}x{H}: FLOPs from torch.utils.flop_counter; {args.reps} rounds after a warm-up, each "
          f"timing the matmul limit (median of three 2048^3 fp32 products) then each variant's forward after an untimed one; medians over rounds, "
          f"ratio = median of the per-round ratios")
    print(table(["size (WxH)", "mode", "GFLOP", "latency ms", "achieved GFLOP/s", "matmul GFLOP/s", "ratio (median)",
                 "best round", "rounds"], rows))
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model(ir, vis, text)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:args.profile_rows]
    print("where the forward's time goes (torch.profiler, self CPU time):")
    print(table(["op", "calls", "self ms", "share"],
                [[e.key, e.count, f"{e.self_cpu_time_total / 1e3:.1f}", f"{e.self_cpu_time_total / total:.1%}"]
                 for e in rows]))


if __name__ == "__main__":
    main()
