"""Latency and fused-image difference of each precision against fp32, on one real pair.

The first examples/ pair is resized to --size. Rows: fp32; bf16 with the model cast to bfloat16 (what
`--precision bf16` does); bf16 under CPU autocast with the model left in fp32 (for comparison); fp16 on
CUDA when a GPU is present; fp32 under torch.compile with --compile (opt-in, compile time printed).
Latency is the median of --reps forwards after a warm-up; PSNR compares the fused image (clamped to
[0, 1]) with the fp32 one.

    python benchmarks/bench_precision.py --threads 2 [--size 480x640] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import contextlib
import time

import torch

from _common import add_common_args, example_pair, load_model, machine, psnr, setup, table, time_ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--size", default="480x640")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="add an fp32 torch.compile row")
    args = p.parse_args()
    device = setup(args)
    H, W = (int(v) for v in args.size.split("x"))
    model, source = load_model(args.weights, device)
    ir, vis = (t.to(device) for t in example_pair(size=(H, W)))
    variants = [("fp32", model, torch.float32, contextlib.nullcontext),
                ("bf16 (model cast)", copy.deepcopy(model).to(torch.bfloat16), torch.bfloat16, contextlib.nullcontext),
                ("bf16 (CPU autocast)", model, torch.float32,
                 lambda: torch.autocast("cpu", dtype=torch.bfloat16))]
    if torch.cuda.is_available():
        cuda = copy.deepcopy(model).cuda()
        variants.append(("fp16 (CUDA, model cast)", cuda.half(), torch.float16, contextlib.nullcontext))
    if args.compile:
        variants.append(("fp32 + torch.compile", torch.compile(model), torch.float32, contextlib.nullcontext))
    rows, ref = [], None
    for name, m, dtype, ctx in variants:
        dev = next(m.parameters()).device
        a, b = ir.to(dev, dtype), vis.to(dev, dtype)
        with torch.inference_mode(), ctx():
            text = m.encode_prompts([""]).to(dev, dtype)
            t0 = time.perf_counter()
            out = m(a, b, text).float().cpu()  # first call: includes compiling for torch.compile
            first = (time.perf_counter() - t0) * 1e3
            ms = time_ms(lambda: m(a, b, text), dev, warmup=0, repetitions=args.reps)
        ref = out if ref is None else ref
        rows.append([name, str(dev), f"{ms:.0f}", f"{first:.0f}", f"{rows and float(rows[0][2]) / ms or 1:.2f}x",
                     "-" if out is ref else f"{psnr(out, ref):.1f}"])
    print(f"bench_precision: {source}; {machine()}")
    print(f"one forward at {W}x{H} on a real pair (examples/, resized); latency median of {args.reps} after the first "
          "call; speed-up vs fp32; PSNR of the fused image vs fp32")
    print(table(["precision", "device", "latency ms", "first call ms", "speed-up", "PSNR vs fp32 dB"], rows))


if __name__ == "__main__":
    main()
