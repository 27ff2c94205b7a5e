"""Fuse images with a loaded model: one pair (one output per prompt, an optional comparison sheet) or a
whole folder of pairs (streamed from disk, resumable, shardable, with a manifest).

The path an image takes: read (infrared as one channel, visible as BT.601 Y + Cr/Cb), fuse Y with the
infrared under the prompt, put Cr/Cb back, clip and quantise once, write atomically.

The model is any module with `encode_prompts(list[str]) -> (N, D)`, `forward(ir, vis, text)` on
(B, 1, H, W) tensors in [0, 1] returning (B, 1, H*upscale, W*upscale), and `config.upscale`, plus the config
fields tiling reads (window_size, embed_dim, mlp_ratio, upsampler) unless tile is None (whole frames); `meta`
is the dict `load_checkpoint` returns ("config", "provenance", "sha256"). How each image is made (resize,
gray, bit depth, tiles, device, ...) is one FuseOptions (options).

The pieces: options (FuseOptions), results (the result types), pair (open_pair, fuse_pair), batch
(fuse_batch), manifest, forward (one forward, whole or tiled); reading a pair, output names and checks and
the comparison sheet are image concerns, in swinfuse.data (loading, outputs, sheet). Only the standard
library is imported at the top, so the api and the CLI can import the result types without pulling in torch
or OpenCV.
"""

from __future__ import annotations

from swinfuse.data.outputs import output_paths
from swinfuse.fusing.batch import BatchPlan, fuse_batch, plan_batch
from swinfuse.fusing.options import FuseOptions
from swinfuse.fusing.pair import OpenedPair, fuse_pair, open_pair
from swinfuse.fusing.results import BatchInterrupted, BatchReport, FusedOutput, FuseResult, PairRecord

__all__ = ["BatchInterrupted", "BatchReport", "FuseOptions", "FuseResult", "FusedOutput", "OpenedPair", "PairRecord",
           "fuse_batch", "fuse_pair", "open_pair", "output_paths"]
