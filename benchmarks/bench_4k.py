"""A 3840x2160 pair fused end to end, as `swinfuse fuse` does, with the peak memory and the tiles used.

The first examples/ pair is resized (bicubic) to 3840x2160 and written as PNGs; fusing.fuse_pair reads it,
fuses it with --tile (0: automatic, tiles when the frame's estimated memory exceeds half the free
memory or, on a CPU, tiling.CPU_WHOLE_FRAME_BYTES), and writes the colour result. Printed: the tiling plan, the latency split, the process's peak
RSS (the whole script, model included), and the fused image's PSNR against a whole-frame forward when
--check is given (about 0.6 to 0.9 kB per pixel for the default preset).

    python benchmarks/bench_4k.py --threads 2 [--tile 0] [--check]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from _common import (EXAMPLES, add_common_args, load_model, machine, peak_rss_mb, psnr, rss_mb, setup, table)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--size", default="2160x3840", help="HxW")
    p.add_argument("--tile", type=int, default=0)
    p.add_argument("--tile-overlap", type=int, default=None)
    p.add_argument("--check", action="store_true", help="also fuse the frame whole and report the PSNR")
    args = p.parse_args()
    device = setup(args)
    import cv2

    from swinfuse import tiling
    from swinfuse.fusing import FuseOptions, fuse_pair, open_pair

    H, W = (int(v) for v in args.size.split("x"))
    model, source = load_model(args.weights, device)
    meta = {"config": model.config, "provenance": {}, "sha256": None, "path": None}
    base = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = sorted((EXAMPLES / "ir").iterdir())[0]
        for sub in ("ir", "vis"):
            image = cv2.imread(str(EXAMPLES / sub / src.name), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(tmp / f"{sub}.png"), cv2.resize(image, (W, H), interpolation=cv2.INTER_CUBIC))
        budget = tiling.memory_budget(device)
        planned = tiling.auto_tile(H, W, 1, model.config, device) if args.tile == 0 else args.tile
        options = FuseOptions(device=str(device), tile=args.tile, tile_overlap=args.tile_overlap)
        opened = open_pair(ir_path=tmp / "ir.png", vis_path=tmp / "vis.png", prompts=[""], output=tmp / "fused.png",
                           options=options)
        result = fuse_pair(opened, model=model, meta=meta, options=options)
        peak = peak_rss_mb()
        fused = cv2.imread(str(tmp / "fused.png"), cv2.IMREAD_UNCHANGED)
        check = "-"
        if args.check:
            from swinfuse.data.io import read_infrared, read_visible

            ir = torch.from_numpy(read_infrared(tmp / "ir.png"))[None, None]
            vis = torch.from_numpy(read_visible(tmp / "vis.png").y)[None, None]
            with torch.inference_mode():
                text = model.encode_prompts([""])
                whole = tiling.fuse_frame(model, ir, vis, text, tile=None).image
                tiled = tiling.fuse_frame(model, ir, vis, text, tile=planned or 1024, overlap=args.tile_overlap).image
            check = f"{psnr(tiled, whole):.1f}"
    tile = planned or "whole frame"
    overlap = args.tile_overlap if args.tile_overlap is not None else tiling.default_overlap(model.config)
    n = len(tiling.plan_tiles(H, W, planned, overlap, model.config.window_size)) if planned else 1
    print(f"bench_4k: {source}; {machine()}")
    print(f"{W}x{H} pair fused by fusing.open_pair + fuse_pair (read, fuse, colour, write PNG); memory budget {budget / 2**30:.1f} GiB "
          f"(half the free memory at start); estimated whole-frame need "
          f"{tiling.bytes_per_pixel(model.config) * H * W / 2**30:.1f} GiB")
    print(table(["frame", "tile", "overlap", "tiles", "forward s", "total s", "peak RSS MB", "RSS before MB",
                 "output", "PSNR tiled vs whole dB"],
                [[f"{W}x{H}", tile, overlap if planned else "-", n, f"{result.latency_ms['forward'] / 1e3:.1f}",
                  f"{result.latency_ms['total'] / 1e3:.1f}", f"{peak:.0f}", f"{base:.0f}",
                  "x".join(map(str, fused.shape)), check]]))
    for note in result.notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
