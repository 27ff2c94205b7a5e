"""The shipped model's forward against SeAFusion's on the same machine, in one run (issue 11's speed constraint).

SeAFusion comes from VIF-Benchmark's published checkpoint, imported at run time from --seafusion-root (a
checkout of github.com/Linfeng-Tang/VIF-Benchmark; see tools/seafusion_peer.py; its code never enters this
repository). Ours: --weights (default: the shipped checkpoint) with the neutral prompt, whose embedding is
cached by the warm-up, so the timed forward is the fusion network itself. Every measurement is a fresh process:
load, one 64x64 forward, --warmup forwards at --size, then the median of --reps timed forwards under
torch.inference_mode (inputs: the first example pair resized to --size), wall time and the process's CPU
time. --rounds rounds alternate the order
(SeAFusion first in even rounds, ours first in odd ones), so a machine that slows down or speeds up during the
run does not favour either; the summary takes the median over rounds. Pin the run to a core that nothing else
uses (taskset) when the machine is shared.

    taskset -c 1 python benchmarks/bench_vs_seafusion.py --seafusion-root /path/to/VIF-Benchmark --threads 1
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from _common import example_pair, load_model, machine, peak_rss_mb, peer_main, peer_parser, run_peer, table


def child(args, H: int, W: int) -> None:
    ir, vis = example_pair(size=(H, W))
    small = example_pair(size=(64, 64))
    if args.which == "seafusion":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
        from seafusion_peer import SeAFusionPeer

        peer = SeAFusionPeer(args.seafusion_root)
        model, params = peer.net, peer.params
        run = lambda i, v: model(v, i)  # noqa: E731  (visible first, as VIF-Benchmark calls it)
        what = f"SeAFusion, VIF-Benchmark checkpoint sha256:{peer.sha256[:12]}"
    else:
        from swinfuse.training.prompts import canonical_prompt

        model, what = load_model(args.weights, "cpu")
        prompt = canonical_prompt("none")
        params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("text_encoder."))
        run = lambda i, v: model(i, v, prompt)  # noqa: E731
    wall, cpu = [], []
    with torch.inference_mode():
        run(*small)
        for _ in range(args.warmup):
            run(ir, vis)
        for _ in range(args.reps):
            t0, c0 = time.perf_counter(), time.process_time()
            run(ir, vis)
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
    print(json.dumps({"ms": statistics.median(wall), "cpu_ms": statistics.median(cpu), "peak_mb": peak_rss_mb(),
                      "params": params, "what": what,
                      "threads": torch.get_num_threads(), "affinity": sorted(os.sched_getaffinity(0)),
                      "machine": machine()}))


def compare(args, H: int, W: int) -> None:
    extra = ["--warmup", str(args.warmup)] + (["--weights", str(args.weights)] if args.weights else [])
    runs = {"seafusion": [], "swinfuse": []}
    for r in range(args.rounds):
        order = ("seafusion", "swinfuse") if r % 2 == 0 else ("swinfuse", "seafusion")
        for which in order:
            res = run_peer("bench_vs_seafusion.py", which, args, H, W, *extra)
            runs[which].append(res)
            print(f"  round {r + 1} {which}: {res['ms'] / 1e3:.3f} s wall, {res['cpu_ms'] / 1e3:.3f} s CPU",
                  flush=True)
    sea, ours = runs["seafusion"][0], runs["swinfuse"][0]
    med = {k: statistics.median(r["ms"] for r in v) for k, v in runs.items()}
    med_cpu = {k: statistics.median(r["cpu_ms"] for r in v) for k, v in runs.items()}
    print(f"bench_vs_seafusion: {ours['machine']}; process affinity {ours['affinity']}, {ours['threads']} torch "
          f"thread(s) (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    print(f"one forward at {W}x{H}: median of {args.reps} after {args.warmup} warm-up, each in a fresh process, "
          f"{args.rounds} rounds alternating the order; summary = median over rounds")
    rows = [[name, f"{r['params'] / 1e6:.3f}", " ".join(f"{x['ms'] / 1e3:.2f}" for x in runs[k]),
             f"{med[k] / 1e3:.2f}", f"{med_cpu[k] / 1e3:.2f}", f"{max(x['peak_mb'] for x in runs[k]):.0f}"]
            for k, name, r in (("seafusion", f"SeAFusion ({sea['what']})", sea),
                               ("swinfuse", f"swinfuse ({ours['what']})", ours))]
    print(table(["network", "M params", "per round s (wall)", "median s (wall)", "median s (CPU)", "peak RSS MB"],
                rows))
    ratio = med["swinfuse"] / med["seafusion"]
    per_round = [o["ms"] / s["ms"] for o, s in zip(runs["swinfuse"], runs["seafusion"])]
    print(f"ratio ours / SeAFusion = {ratio:.2f} (per round: {' '.join(f'{x:.2f}' for x in per_round)}); "
          f"{'ours is faster' if ratio < 1 else 'ours is NOT faster'} (issue 11: must stay below 1)")
    cpu_ratio = med_cpu["swinfuse"] / med_cpu["seafusion"]
    print(f"CPU-time ratio ours / SeAFusion = {cpu_ratio:.2f} (process CPU time of the timed forwards: with one "
          "thread it leaves out the time other processes held the core; wall time is the number that counts on "
          "an idle machine)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"size": [H, W], "runs": runs, "median_ms": med,
                                                   "median_cpu_ms": med_cpu,
                                                   "ratio": ratio, "cpu_ratio": cpu_ratio,
                                                   "per_round_ratio": per_round}, indent=1))


def main() -> None:
    p = peer_parser(__doc__, ("--seafusion-root", "VIF-Benchmark checkout (see tools/seafusion_peer.py)"), reps=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards at --size before the timed ones")
    p.add_argument("--rounds", type=int, default=3, help="fresh-process pairs, alternating the order")
    p.add_argument("--json-out", default=None)
    peer_main(p, child, compare)


if __name__ == "__main__":
    main()
