"""Shared pieces of the benchmark scripts: the model under test, the machine, timing, matmul peak; memory and
sync come from swinfuse.memory.

Each script prints what it measured and its table; run them from the repository root, e.g.
`python benchmarks/bench_scaling.py --threads 2`. Timings warm up first and take the median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as `swinfuse` sets it (cli.main), before torch loads
import torch  # noqa: E402

from swinfuse.memory import peak_allocated_mb, peak_rss_mb, rss_mb, sync  # noqa: E402,F401 (the scripts' names)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = ROOT / "swinfuse" / "weights" / "swinfuse-default.safetensors"
EXAMPLES = ROOT / "examples"


def add_common_args(parser) -> None:
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--weights", type=Path, default=None,
                        help=f"checkpoint (default: {DEFAULT_WEIGHTS.relative_to(ROOT)} if present, else the "
                             "default preset with random weights)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")


def setup(args) -> torch.device:
    """Threads and the CPU allocator as the CLI sets them (swinfuse.devices)."""
    from swinfuse.devices import tune_cpu_allocator

    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    return torch.device(args.device)


def load_model(weights: Path | None, device, preset: str = "default"):
    """(model in eval mode, description): the checkpoint if given or shipped, else the preset, random weights."""
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.model.config import FusionConfig
    from swinfuse.model.cpu_inference import enable_cpu_inference
    from swinfuse.model.network import SwinFuse

    weights = weights or (DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.exists() and preset == "default" else None)
    if weights is not None:
        model, _ = load_checkpoint(weights, device=device)
        what = f"checkpoint {weights}"
    else:
        torch.manual_seed(0)
        model = SwinFuse(FusionConfig.preset(preset)).to(device).eval()
        what = f"preset '{preset}', random weights"
    enable_cpu_inference(model)  # as swinfuse.api.load_model runs every command's model
    return model.eval(), what


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"python {platform.python_version()}{gpu}")


def time_ms(fn, device="cpu", warmup: int = 1, repetitions: int = 3) -> float:
    """Median wall time of fn() in milliseconds, after warm-up calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repetitions):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def matmul_gflops(device="cpu", n: int = 2048, dtype=torch.float32, repetitions: int = 5) -> float:
    """torch's own large-matmul rate on this machine, now: 2 n^3 FLOPs per (n x n) @ (n x n)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = time_ms(lambda: a @ b, device, warmup=2, repetitions=repetitions)
    return 2 * n ** 3 / (ms * 1e-3) / 1e9


def inputs(H: int, W: int, device="cpu", B: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, 1, H, W, generator=g).to(device), torch.rand(B, 1, H, W, generator=g).to(device))


def run_child(script: str, *args: str) -> dict:
    """Run `script ...` in a fresh interpreter (a clean peak RSS) and return the JSON it prints last; args
    carry the flag that makes the script act as the child."""
    cmd = [sys.executable, str(Path(__file__).parent / script), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peer_parser(doc: str, source: tuple[str, str], reps: int) -> argparse.ArgumentParser:
    """The command line of a script that measures our network and a peer's, each in a fresh process of the
    script itself: the common arguments, source = (flag, help) for the path of the peer's code, --size, --reps
    and the hidden arguments of the child process that measures one network. The script adds its own after."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    flag, help = source
    p.add_argument(flag, required=True, help=help)
    p.add_argument("--size", default="480x640", help="HxW")
    p.add_argument("--reps", type=int, default=reps)
    p.add_argument("--which", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child-size", type=int, nargs=2, help=argparse.SUPPRESS)
    p.set_defaults(peer_source=flag)
    return p


def peer_main(parser: argparse.ArgumentParser, child, parent) -> None:
    """Parse and set threads and the allocator (setup); then a child process (--child) measures one network,
    child(args, H, W) at --child-size, and the parent runs the comparison, parent(args, H, W) at --size."""
    args = parser.parse_args()
    setup(args)
    if args.child:
        child(args, *args.child_size)
    else:
        parent(args, *(int(v) for v in args.size.split("x")))


def run_peer(script: str, which: str, args, H: int, W: int, *extra: str) -> dict:
    """Measure `which` in a fresh `script --child` process (run_child): the peer's path, --threads, --reps and
    the size passed on, with extra, the script's own arguments."""
    source = args.peer_source
    return run_child(script, "--child", "--which", which, source, getattr(args, source.lstrip("-").replace("-", "_")),
                     "--threads", str(args.threads), "--reps", str(args.reps), "--child-size", str(H), str(W), *extra)


def table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured markdown table, so the output pastes into RESULTS.md as is."""
    cells = [[str(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1] (clamped, as written)."""
    mse = (a.float().clamp(0, 1) - b.float().clamp(0, 1)).square().mean().item()
    return float("inf") if mse == 0 else 10 * __import__("math").log10(1 / mse)


def example_pair(stem: str | None = None, size: tuple[int, int] | None = None):
    """A real pair from examples/ as (1, 1, H, W) tensors in [0, 1] (infrared, visible Y), resized if asked."""
    import cv2

    from swinfuse.data.io import read_infrared, read_visible

    ir_path = sorted((EXAMPLES / "ir").iterdir())[0] if stem is None else EXAMPLES / "ir" / f"{stem}.jpg"
    ir, vis = read_infrared(ir_path), read_visible(EXAMPLES / "vis" / ir_path.name).y
    if size is not None:
        H, W = size
        ir = cv2.resize(ir, (W, H), interpolation=cv2.INTER_CUBIC).clip(0, 1)
        vis = cv2.resize(vis, (W, H), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return torch.from_numpy(ir)[None, None].float(), torch.from_numpy(vis)[None, None].float()
