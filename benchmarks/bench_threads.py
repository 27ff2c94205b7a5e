"""`swinfuse fuse` forward time by thread setting, on a machine where another process keeps cores busy.

Each run is a fresh `python -m swinfuse_cli fuse IR VIS -o OUT --json` process (as a user runs it); the
variants alternate round by round, so a drift in the machine's load falls on all of them alike. The forward
time is the command's own `latency_ms.forward`.

The competing load is whatever runs on the machine (say a training job holding one core), or one this script
starts with `--spin CORE` (a busy loop pinned to that core, for a reproducible measurement). Before each run
the script waits for a one-second window in which the machine's busy cores are at most `--max-background`
(other work than the competitor would skew the figures), and during each run it records the background load:
the busy core-seconds of every CPU in /proc/stat less the run's own, per second of the run. A run whose
background exceeds `--max-background` is marked `*` and left out of the medians.

  python benchmarks/bench_threads.py --size 480x640 --rounds 5
  python benchmarks/bench_threads.py --spin 0 --variants threads1,threads2,default

`--repo` runs the swinfuse of another checkout (its root is put first on the path), to compare an old
default with a new one. Variants not listed run with OMP_WAIT_POLICY and GOMP_SPINCOUNT unset.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HZ = os.sysconf("SC_CLK_TCK")

VARIANTS = {  # name -> (fuse options, environment)
    "threads1": (["--threads", "1"], {}),
    "threads2": (["--threads", "2"], {}),
    "default": ([], {}),
    "threads2-passive": (["--threads", "2"], {"OMP_WAIT_POLICY": "PASSIVE"}),
    "threads2-active": (["--threads", "2"], {"OMP_WAIT_POLICY": "ACTIVE"}),
    "default-passive": ([], {"OMP_WAIT_POLICY": "PASSIVE"}),
    "threads1-passive": (["--threads", "1"], {"OMP_WAIT_POLICY": "PASSIVE"}),
    "threads2-spin1k": (["--threads", "2"], {"GOMP_SPINCOUNT": "1000"}),
    "threads2-spin10k": (["--threads", "2"], {"GOMP_SPINCOUNT": "10000"}),
    "threads2-spin100k": (["--threads", "2"], {"GOMP_SPINCOUNT": "100000"}),
}
OMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def busy_jiffies() -> int:
    """Busy time of every CPU together (user + nice + system + irq + softirq + steal), in clock ticks."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


def background_now(window: float = 1.0) -> float:
    """Busy cores over the next `window` seconds (this script sleeps meanwhile)."""
    b0, t0 = busy_jiffies(), time.perf_counter()
    time.sleep(window)
    return (busy_jiffies() - b0) / HZ / (time.perf_counter() - t0)


def wait_quiet(limit: float, wait_max: float) -> float:
    """Wait (up to wait_max seconds) for a one-second window with at most `limit` busy cores; -> the last one."""
    deadline = time.monotonic() + wait_max
    while True:
        load = background_now()
        if load <= limit or time.monotonic() > deadline:
            return load


def make_pair(name: str, size: str | None, folder: Path) -> tuple[Path, Path]:
    ir, vis = ROOT / "examples" / "ir" / name, ROOT / "examples" / "vis" / name
    if not size:
        return ir, vis
    from PIL import Image

    h, w = (int(v) for v in size.lower().split("x"))
    out_ir, out_vis = folder / f"ir_{h}x{w}.png", folder / f"vis_{h}x{w}.png"
    Image.open(ir).convert("L").resize((w, h), Image.BICUBIC).save(out_ir)
    Image.open(vis).convert("RGB").resize((w, h), Image.BICUBIC).save(out_vis)
    return out_ir, out_vis


def run_once(repo: Path, ir: Path, vis: Path, out: Path, options: list[str], env_extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    env.update(env_extra)
    env["PYTHONPATH"] = str(repo)  # this checkout's swinfuse first
    cmd = [sys.executable, "-m", "swinfuse_cli", "fuse", str(ir), str(vis), "-o", str(out), "--json", *options]
    b0, t0 = busy_jiffies(), time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    busy = (busy_jiffies() - b0) / HZ
    if proc.returncode:
        raise SystemExit(f"fuse failed ({proc.returncode}): {stderr.strip().splitlines()[-1:]}")
    report = json.loads(stdout)
    cpu = _children_cpu(proc)
    return {"forward_ms": report["latency_ms"]["forward"], "wall_s": wall, "cpu_s": cpu,
            "background": max(0.0, busy - cpu) / wall}


_LAST_CHILD_CPU = [0.0]


def _children_cpu(proc) -> float:
    """CPU seconds (user + system, all threads) of the children waited for since the last call (the growth of
    RUSAGE_CHILDREN): the run just finished."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    cpu, _LAST_CHILD_CPU[0] = total - _LAST_CHILD_CPU[0], total
    return cpu


def machine_line(repo: Path) -> str:
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    probe = subprocess.run(
        [sys.executable, "-c", "import torch, sys; from swinfuse import devices; "
         "print(torch.__version__, torch.get_num_threads(), getattr(devices, 'default_threads', lambda: '-')())"],
        cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True)
    torch_version, torch_threads, rule = (probe.stdout.split() + ["?", "?", "?"])[:3]
    return (f"{model}, {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), torch {torch_version} "
            f"(its default: {torch_threads} threads; swinfuse's default now: {rule}), "
            f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}")


def spin(core: int) -> subprocess.Popen:
    code = f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pair", default="FLIR_09636.jpg", help="a pair under examples/ir and examples/vis")
    ap.add_argument("--size", default="480x640", help="HxW the pair is resized to ('' keeps it)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", default="threads1,threads2,default",
                    help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--spin", type=int, default=None, metavar="CORE",
                    help="start a busy loop pinned to this core as the competing process")
    ap.add_argument("--max-background", type=float, default=1.25,
                    help="busy cores tolerated besides the runs (the competitor's one, plus a margin)")
    ap.add_argument("--wait-max", type=float, default=120.0, help="seconds to wait for a quiet window per run")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the swinfuse checkout to run")
    ap.add_argument("--json", action="store_true", help="print every run and the summary as JSON")
    args = ap.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")

    spinner = spin(args.spin) if args.spin is not None else None
    try:
        if spinner:
            time.sleep(1.0)
        repo = args.repo.resolve()
        print(f"bench_threads: {machine_line(repo)}")
        print(f"checkout {repo}; pair {args.pair} at {args.size or 'its own size'}; "
              f"competitor: {f'busy loop on core {args.spin}' if spinner else 'what runs on the machine'}; "
              f"background before the runs {background_now():.2f} busy cores", flush=True)
        runs: dict[str, list[dict]] = {v: [] for v in names}
        _children_cpu(None)  # the probe above was a child too: start counting from here
        with tempfile.TemporaryDirectory() as tmp:
            ir, vis = make_pair(args.pair, args.size, Path(tmp))
            for r in range(args.rounds):
                order = names[r % len(names):] + names[:r % len(names)]  # rotate: each variant goes first once
                for name in order:
                    before = wait_quiet(args.max_background, args.wait_max)
                    options, env = VARIANTS[name]
                    run = run_once(repo, ir, vis, Path(tmp) / "out.png", options, env)
                    run.update(round=r, variant=name, background_before=before,
                               clean=run["background"] <= args.max_background and before <= args.max_background)
                    runs[name].append(run)
                    print(f"  round {r} {name:<17} forward {run['forward_ms']:8.0f} ms  wall {run['wall_s']:6.1f} s"
                          f"  cpu {run['cpu_s']:6.1f} s  background {run['background']:.2f}"
                          f"{'' if run['clean'] else ' *'}", flush=True)
    finally:
        if spinner:
            spinner.kill()
            spinner.wait()

    summary = {}
    for name in names:
        clean = [r for r in runs[name] if r["clean"]]
        fw = [r["forward_ms"] for r in clean]
        summary[name] = {"runs": len(clean), "of": len(runs[name]),
                         "forward_ms_median": statistics.median(fw) if fw else None,
                         "forward_ms_min": min(fw) if fw else None, "forward_ms_max": max(fw) if fw else None,
                         "background_median": statistics.median(r["background"] for r in clean) if clean else None}
    base = summary[names[0]]["forward_ms_median"]
    print(f"\n| variant | clean runs | forward median (min-max), ms | / {names[0]} | background, cores |")
    print("| --- | --- | --- | --- | --- |")
    for name, s in summary.items():
        if s["forward_ms_median"] is None:
            print(f"| {name} | 0/{s['of']} | - | - | - |")
            continue
        s["ratio"] = s["forward_ms_median"] / base if base else None
        print(f"| {name} | {s['runs']}/{s['of']} | {s['forward_ms_median']:.0f} ({s['forward_ms_min']:.0f}-"
              f"{s['forward_ms_max']:.0f}) | {s['ratio']:.2f} | {s['background_median']:.2f} |")
    if args.json:
        print(json.dumps({"runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
