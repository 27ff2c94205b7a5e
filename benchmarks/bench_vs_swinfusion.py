"""Our network against SwinFusion's reference code at the same configuration, in one run.

SwinFusion's test configuration (models/network_swinfusion1.py as test_swinfusion.py builds it): embed_dim
60, Ex_depths [4], Fusion_depths [2, 2], Re_depths [4], 6 heads, window 8, mlp_ratio 2, upscale 1,
upsampler None. Ours: FusionConfig.swinfusion() (the same numbers, plus the prompt's FiLM layers), random
weights, prompt given as a vector. The reference is imported at run time from --swinfusion PATH (a checkout
of github.com/Linfeng-Tang/SwinFusion; its code never enters this repository). Each network runs in a fresh
process: built, warmed up at 64x64, its resident memory taken as the baseline, then one forward (--reps)
at --size under torch.inference_mode. Peak memory = peak RSS of that process; above baseline = what the
forward itself needed.

    python benchmarks/bench_vs_swinfusion.py --swinfusion /tmp/swinfusion --threads 2 [--size 480x640]
"""

from __future__ import annotations

import json
import sys

import torch

from _common import inputs, machine, peak_rss_mb, peer_main, peer_parser, rss_mb, run_peer, table, time_ms


def _reference(path: str):
    sys.path.insert(0, path)
    from models.network_swinfusion1 import SwinFusion  # SwinFusion's own test-time module

    model = SwinFusion(upscale=1, in_chans=1, img_size=128, window_size=8, img_range=1.0, embed_dim=60,
                       mlp_ratio=2, upsampler=None, resi_connection="1conv")
    return model.eval(), lambda ir, vis: model(ir, vis)


def _ours():
    from swinfuse.model.config import FusionConfig
    from swinfuse.model.cpu_inference import enable_cpu_inference
    from swinfuse.model.network import SwinFuse

    model = SwinFuse(FusionConfig.swinfusion()).eval()
    enable_cpu_inference(model)  # as swinfuse runs it
    text = torch.zeros(1, model.config.text_dim)
    return model, lambda ir, vis: model(ir, vis, text)


def child(args, H: int, W: int) -> None:
    torch.manual_seed(0)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the reference prints while it builds
        model, run = _reference(args.swinfusion) if args.which == "swinfusion" else _ours()
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("text_encoder."))
    ir, vis = inputs(H, W)
    with torch.inference_mode():
        run(*inputs(64, 64))
        base = rss_mb()
        ms = time_ms(lambda: run(ir, vis), warmup=0, repetitions=args.reps)
    print(json.dumps({"ms": ms, "peak_mb": peak_rss_mb(), "base_mb": base, "params": params, "machine": machine()}))


def compare(args, H: int, W: int) -> None:
    res = {}
    for which in ("swinfusion", "swinfuse"):
        res[which] = run_peer("bench_vs_swinfusion.py", which, args, H, W)
        print(f"  {which}: {res[which]['ms'] / 1e3:.1f} s", flush=True)
    ref, ours = res["swinfusion"], res["swinfuse"]
    rows = []
    for name, r in (("SwinFusion (reference code)", ref), ("swinfuse (ours)", ours)):
        rows.append([name, f"{r['params'] / 1e6:.3f}", f"{r['ms'] / 1e3:.2f}", f"{r['peak_mb']:.0f}",
                     f"{r['peak_mb'] - r['base_mb']:.0f}"])
    print(f"bench_vs_swinfusion: {machine()}")
    print(f"one forward at {W}x{H} ({args.reps} timed after a 64x64 warm-up), each network in a fresh process; "
          "same configuration (embed 60, depths [4] [2,2] [4], 6 heads, window 8, mlp 2), random weights")
    print(table(["network", "M params (no text encoder)", "latency s", "peak RSS MB", "above baseline MB"], rows))
    speed = ref["ms"] / ours["ms"]
    mem = (ours["peak_mb"] - ours["base_mb"]) / (ref["peak_mb"] - ref["base_mb"])
    print(f"ours is {speed:.2f}x faster (goal >= 2x) and needs {mem:.2f}x the reference's forward memory above "
          f"baseline (goal <= 0.5); whole-process peak RSS ratio {ours['peak_mb'] / ref['peak_mb']:.2f}")


def main() -> None:
    peer_main(peer_parser(__doc__, ("--swinfusion", "path to a SwinFusion checkout (holds models/)"), reps=1),
              child, compare)


if __name__ == "__main__":
    main()
