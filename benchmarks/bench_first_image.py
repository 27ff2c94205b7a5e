"""A user's first image: the wall time of `swinfuse fuse` on one example pair in a cold process (interpreter
start, imports, weights, forward, write), against the forward alone; and of a `batch` rerun with every output
already present (nothing to do); beside them `python -c "import torch"`, what a process that imports torch
costs (the import and the interpreter's exit with torch loaded), and the same with the garbage collector paused
and no teardown at exit, as the `swinfuse` command imports torch and exits (swinfuse.devices.import_torch,
swinfuse.cli.run).

Each measurement is a new process (`python -m swinfuse ...`), as a user runs it; --rounds of them, the median
reported with the range. The forward time comes from the command's own --json report, so "overhead" is
wall - forward: what the process spends outside the network. The rows are measured round by round,
interleaved, so a change in the machine's load reaches all of them alike. A machine whose environment sets
PYTHONDONTWRITEBYTECODE (this project's does) never writes .pyc files, so with an editable install every
swinfuse module is compiled from source in every process, which a user's installed package is not; the
processes run without the variable (the warm-up run writes the cache) unless --no-bytecode-cache is given, and
the first line says which.

    python benchmarks/bench_first_image.py [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PAIR = "FLIR_09636.jpg"  # 320x506, the README's first example
BARE_TORCH = "import gc, os; gc.disable(); import torch; gc.freeze(); os._exit(0)"


def run(args: list[str], threads: int, python_args: tuple[str, ...] = ("-m", "swinfuse")) -> tuple[float, str]:
    """One cold `swinfuse` process (or `python *python_args *args`) -> (wall seconds, stdout)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if BYTECODE_CACHE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's Python runs: modules compiled once, then cached
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *python_args, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join([*python_args, *args])} failed ({done.returncode}): {done.stderr.strip()}")
    return wall, done.stdout


BYTECODE_CACHE = True  # --no-bytecode-cache: keep PYTHONDONTWRITEBYTECODE if the environment sets it


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-bytecode-cache", action="store_true",
                   help="keep PYTHONDONTWRITEBYTECODE from the environment: no .pyc is written, so modules without one "
                        "are compiled from source in every process (by default it is dropped, so the warm-up run "
                        "writes the .pyc files a user's installed package has)")
    args = p.parse_args()
    global BYTECODE_CACHE
    BYTECODE_CACHE = not args.no_bytecode_cache

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run(["batch", str(EXAMPLES), "-o", str(tmp / "batch"), "--json"], args.threads)  # every output written
        walls, forwards, empty, torch_only, torch_bare = [], [], [], [], []
        for k in range(args.rounds):
            wall, out = run(["fuse", str(EXAMPLES / "ir" / PAIR), str(EXAMPLES / "vis" / PAIR),
                             "-o", str(tmp / f"first{k}.png"), "--json"], args.threads)
            walls.append(wall)
            forwards.append(json.loads(out)["latency_ms"]["forward"] / 1000)
            empty.append(run(["batch", str(EXAMPLES), "-o", str(tmp / "batch"), "--json"], args.threads)[0])
            torch_only.append(run(["import torch"], args.threads, ("-c",))[0])
            torch_bare.append(run([BARE_TORCH], args.threads, ("-c",))[0])
        overheads = [w - f for w, f in zip(walls, forwards)]
        shutil.rmtree(tmp / "batch")

    cache = ("bytecode cached (.pyc)" if BYTECODE_CACHE or not os.environ.get("PYTHONDONTWRITEBYTECODE")
             else "PYTHONDONTWRITEBYTECODE set: no .pyc written, those already there read")
    print(f"python {sys.version.split()[0]}, {cache}, {args.threads} thread(s), {args.rounds} cold processes each, "
          f"median (min-max)")
    print(f"| measured | wall |\n|---|---|")
    print(f"| `fuse` {PAIR} (320x506), whole command | {spread(walls)} |")
    print(f"| its forward (from --json) | {spread(forwards)} |")
    print(f"| wall - forward | {spread(overheads)} |")
    print(f"| `batch examples` rerun, every output present | {spread(empty)} |")
    print(f"| `python -c \"import torch\"` | {spread(torch_only)} |")
    print(f"| the same, collector paused, no teardown at exit (as the command) | {spread(torch_bare)} |")


if __name__ == "__main__":
    main()
