"""Achieved GFLOP/s of one forward as a fraction of torch's own large-matmul GFLOP/s, measured in this run.

FLOPs come from torch.utils.flop_counter (swinfuse_cli.profiling.count_flops, which adds the formula torch
lacks for the CPU fused attention op). The forward is timed (median of --reps after a warm-up) at --size;
the matmul rate is a (2048 x 2048) @ (2048 x 2048) fp32 product timed right before and right after, and
the better of the two is the machine's limit. --compile adds a row for the same forward under torch.compile
(the FLOPs of the eager graph). Then torch.profiler shows where the eager forward's time goes.

    python benchmarks/bench_flops.py --threads 2 [--size 480x640]
"""

from __future__ import annotations

import argparse

import torch

from _common import add_common_args, inputs, load_model, machine, matmul_gflops, setup, table, time_ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--size", default="480x640")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--preset", default="default")
    p.add_argument("--profile-rows", type=int, default=12)
    p.add_argument("--compile", action="store_true", help="also time the forward under torch.compile")
    args = p.parse_args()
    device = setup(args)
    from swinfuse_cli.profiling import count_flops

    H, W = (int(v) for v in (args.size.split("x") if "x" in args.size else (args.size, args.size)))
    model, source = load_model(args.weights, device, args.preset)
    ir, vis = inputs(H, W, device)
    peak_before = matmul_gflops(device)
    with torch.inference_mode():
        text = model.encode_prompts([""]).to(device)
        flops = count_flops(model, ir, vis, text)
        ms = time_ms(lambda: model(ir, vis, text), device, warmup=1, repetitions=args.reps)
        if args.compile:
            compiled = torch.compile(model)
            ms_c = time_ms(lambda: compiled(ir, vis, text), device, warmup=1, repetitions=args.reps)
    peak_after = matmul_gflops(device)
    peak = max(peak_before, peak_after)
    achieved = flops / (ms * 1e-3) / 1e9
    rows = [[f"{W}x{H}", "eager", f"{flops / 1e9:.2f}", f"{ms:.0f}", f"{achieved:.1f}", f"{peak:.1f}",
             f"{achieved / peak:.1%}"]]
    if args.compile:
        rows.append([f"{W}x{H}", "torch.compile", f"{flops / 1e9:.2f}", f"{ms_c:.0f}",
                     f"{flops / (ms_c * 1e-3) / 1e9:.1f}", f"{peak:.1f}", f"{flops / (ms_c * 1e-3) / 1e9 / peak:.1%}"])
    print(f"bench_flops: {source}; {machine()}")
    print(f"one forward at {W}x{H}: FLOPs from torch.utils.flop_counter; latency median of {args.reps} after a "
          f"warm-up; matmul limit = best of a 2048^3 fp32 matmul before ({peak_before:.1f}) and after "
          f"({peak_after:.1f} GFLOP/s) the forward")
    print(table(["size (WxH)", "mode", "GFLOP", "latency ms", "achieved GFLOP/s", "matmul GFLOP/s", "ratio"], rows))
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
