"""`batch` throughput as a fraction of bare forward throughput on the same pairs (how well I/O overlaps).

The pairs are examples/ (RoadScene, ~320x500), each copied --copies times into a temporary ir/ + vis/
folder. Bare: the images are read into tensors beforehand and only the model's forward is timed, one pair
after another. Batch: swinfuse.fusing.fuse_batch as `swinfuse batch` runs it (prefetching reader
thread, forward, colour, quantise, asynchronous PNG writer, manifest), wall time from its report. Both
are warmed up on every image size first; then --rounds rounds each run bare and then batch, the ratio is
taken within each round (a slow spell of this shared machine lowers both sides of it) and the median round
is reported.

    python benchmarks/bench_batch.py --threads 2 [--copies 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _common import EXAMPLES, add_common_args, load_model, machine, setup, sync, table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    device = setup(args)
    from swinfuse.data.io import read_infrared, read_visible
    from swinfuse.fusing import FuseOptions, fuse_batch

    model, source = load_model(args.weights, device)
    meta = {"config": model.config, "provenance": {}, "sha256": None, "path": None}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pairs"
        for sub in ("ir", "vis"):
            (root / sub).mkdir(parents=True)
            for f in sorted((EXAMPLES / sub).iterdir()):
                for k in range(args.copies):
                    shutil.copy(f, root / sub / f"{f.stem}_{k}{f.suffix}")
        names = sorted(f.name for f in (root / "ir").iterdir())
        tensors = [(torch.from_numpy(read_infrared(root / "ir" / n))[None, None].to(device),
                    torch.from_numpy(read_visible(root / "vis" / n).y)[None, None].to(device)) for n in names]
        with torch.inference_mode():
            text = model.encode_prompts([""]).to(device)
            for ir, vis in {t[0].shape: t for t in tensors}.values():  # warm up every size
                model(ir, vis, text)
        bare, batch = [], []
        for r in range(args.rounds):
            with torch.inference_mode():
                t0 = time.perf_counter()
                for ir, vis in tensors:
                    model(ir, vis, text)
                sync(device)
                bare.append(len(tensors) / (time.perf_counter() - t0))
            report = fuse_batch(root=root, output_dir=Path(tmp) / f"out{r}", prompt="", model=model, meta=meta,
                                options=FuseOptions(device=str(device), tile=0))
            assert report.written == len(names), report.records
            batch.append(report.throughput_pairs_per_s)
    ratios = [b / f for b, f in zip(batch, bare)]
    b, f = statistics.median(batch), statistics.median(bare)
    print(f"bench_batch: {source}; {machine()}")
    print(f"{len(names)} pairs ({len(names) // args.copies} examples x {args.copies}); {args.rounds} rounds of bare "
          "then batch, medians; bare = forward only on pre-read tensors; batch = fuse_batch end to end (read, fuse, "
          "colour, write); batch / bare = median of the per-round ratios "
          f"({', '.join(f'{x:.1%}' for x in ratios)})")
    print(table(["pairs", "bare forward pairs/s", "batch pairs/s", "batch / bare"],
                [[len(names), f"{f:.3f}", f"{b:.3f}", f"{statistics.median(ratios):.1%}"]]))


if __name__ == "__main__":
    main()
