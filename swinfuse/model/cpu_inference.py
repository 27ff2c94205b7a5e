"""CPU inference: the network's arithmetic arranged for a CPU's caches and allocator, switched on per model.

    from swinfuse.model.cpu_inference import enable_cpu_inference
    enable_cpu_inference(model)   # swinfuse.api.load_model does this for every command's model

The modules keep their parameters and state-dict keys; `enable_cpu_inference` swaps their classes for the
subclasses below, which compute the same outputs (tests/test_speed_equivalence.py pins them to a frozen
reference forward) in three ways that matter on a CPU:

- Band by band: a Swin block runs on bands of rows (BAND_TOKENS tokens each), so a band's intermediates
  (norms, windows, q/k/v, MLP hidden) stay in cache. A shifted block cuts the rolled map's rows per band
  (window.roll_rows) instead of rolling the whole map: torch.roll goes through cat on CPU, ~20 % of a large
  frame's forward.
- Attention chunk by chunk (attend_cpu), with the position bias, and the shift mask of the few masked windows,
  built once per block call instead of once per window.
- In place: a block whose input the caller no longer needs writes its output over it, sparing a frame-sized
  allocation that the OS must fault in and zero (above glibc's 32 MiB mmap threshold, a 1024x1024 map of 16
  channels is 64 MiB).

With gradients enabled, or in training mode, every module runs the reference computation of its parent class.
"""

from __future__ import annotations

import torch
from torch import nn

from swinfuse.model.attention import WindowAttention
from swinfuse.model.blocks import CRSTB, RSTB, CrossPair, SwinBlock, conv_channels_last
from swinfuse.model.window import band_masked_windows, roll_rows, unroll_rows_, window_partition, window_reverse

BAND_TOKENS = 32768  # per band: ~2 MB per map at 16 channels, in cache
CHUNK_WINDOWS = 64  # windows per score matrix: 64 x (64 x 64) floats = 1 MB, in L2


def attend_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax(q k^T * scale + bias) v, window chunk by chunk and head by head with baddbmm/bmm: at window
    attention's small sizes (64 tokens, head dim 8-16) torch's fused CPU SDPA kernel hardly gains from a second
    thread (one band of 480 windows, one head of 16, two threads, AVX2 machine: this 4.7-5.9 ms, SDPA 6.1-6.6 ms;
    on an AVX-512 machine SDPA 3.5-3.7 ms, this 2.0-2.5 ms). Each chunk's scores stay in cache.

    q, k, v: (N, nH, L, hd); bias: (1 | N, nH, L, L) -> (N, nH, L, hd), a transposed view of an
    (N, L, nH, hd) tensor (SDPA's memory order: the caller's transpose back is a view)."""
    N, nH, L, hd = q.shape
    out = q.new_empty(N, L, nH, hd)
    for c0 in range(0, N, CHUNK_WINDOWS):
        c1 = min(N, c0 + CHUNK_WINDOWS)
        b = bias if bias.shape[0] == 1 else bias[c0:c1]
        for h in range(nH):
            scores = torch.baddbmm(b[:, h], q[c0:c1, h], k[c0:c1, h].transpose(1, 2), alpha=scale)  # (n, L, L)
            dst = out[c0:c1, :, h]  # (n, L, hd)
            if dst.is_contiguous():
                torch.bmm(scores.softmax(-1), v[c0:c1, h], out=dst)
            else:
                dst.copy_(torch.bmm(scores.softmax(-1), v[c0:c1, h]))
    return out.transpose(1, 2)


def _reference(module: nn.Module, x: torch.Tensor) -> bool:
    return torch.is_grad_enabled() or module.training or x.device.type != "cpu"


class CpuWindowAttention(WindowAttention):
    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, masked=None,
                biases: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> torch.Tensor:
        """As WindowAttention's; biases: (position bias (1, nH, L, L), bias + mask of the masked windows
        (B*nM, nH, L, L) or None), built by the caller once for all its bands."""
        if biases is None or _reference(self, x):
            return super().forward(x, context, masked)
        B, nW, L, C = x.shape
        q, k, v = self.qkv_heads(x, context)
        bias, masked_bias = biases
        out = attend_cpu(q, k, v, bias, self.scale)  # (B*nW, nH, L, hd), a view of (B*nW, L, nH, hd)
        if masked is not None:
            idx = masked[0]
            if B > 1:
                idx = (torch.arange(B, device=idx.device)[:, None] * nW + idx).flatten()  # (B*nM,)
            # in place: out keeps its (B*nW, L, nH, hd) memory order, so the transpose below is a view
            out.index_copy_(0, idx, attend_cpu(q[idx], k[idx], v[idx], masked_bias, self.scale))
        del q, k, v  # freed before the projection allocates: lower peak memory
        return self.proj(out.transpose(1, 2).reshape(B, nW, L, C))  # (B, nW, L, C)


class BandedSwinBlock(SwinBlock):
    def band_rows(self, Hp: int, Wp: int) -> int:
        ws = self.window_size
        return min(Hp, max(ws, BAND_TOKENS // Wp // ws * ws))

    def _band(self, x: torch.Tensor, context: torch.Tensor | None, masked, biases) -> torch.Tensor:
        """attend_and_mix on a band, with the block's prebuilt biases. x, context: (B, h, Wp, C)."""
        B, h, Wp, C = x.shape
        ws = self.window_size
        ctx = window_partition(self.norm_context(context), ws) if context is not None else None  # (B, nW, L, C)
        attn = self.attn(window_partition(self.norm1(x), ws), context=ctx, masked=masked, biases=biases)
        x = x + window_reverse(attn, ws, h, Wp)  # (B, h, Wp, C)
        return x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, inplace: bool = False) -> torch.Tensor:
        """x, context: (B, Hp, Wp, C) -> (B, Hp, Wp, C). inplace: the result may be written over x (the caller
        no longer needs it). Each band reads its rows (of the shifted map) before writing the same rows back,
        and bands are disjoint, so this is exact."""
        if _reference(self, x):
            return super().forward(x, context)
        B, Hp, Wp, C = x.shape
        ws, s = self.window_size, self.shift_size
        bias = self.attn.position_bias().unsqueeze(0).to(x.dtype).contiguous()  # (1, nH, L, L)
        rows = self.band_rows(Hp, Wp)
        if not s and rows >= Hp:
            return self._band(x, context, None, (bias, None))
        out = x if inplace else torch.empty_like(x)
        masked_biases: dict = {}  # per band shape: equal bands share one
        for r0 in range(0, Hp, rows):
            h = min(rows, Hp - r0)
            if not s:
                out[:, r0:r0 + h] = self._band(x[:, r0:r0 + h], context[:, r0:r0 + h] if context is not None
                                               else None, None, (bias, None))
                continue
            last = r0 + h == Hp
            masked = band_masked_windows(h, Wp, ws, s, last, x.device)  # (nM,), (nM, L, L), cached per shape
            if (h, last) not in masked_biases:
                masked_biases[h, last] = (bias + masked[1].unsqueeze(1).to(x.dtype)).repeat(B, 1, 1, 1)
            band_ctx = roll_rows(context, r0, h, s) if context is not None else None
            band = self._band(roll_rows(x, r0, h, s), band_ctx, masked, (bias, masked_biases[h, last]))
            unroll_rows_(out, band, r0, s)
        return out


class InplaceRSTB(RSTB):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _reference(self, x):
            return super().forward(x)
        y = x
        for i, blk in enumerate(self.blocks):
            y = blk(y, inplace=i > 0)  # after the first block, y is this group's own map
        return conv_channels_last(self.conv, y).add_(x)


class InplaceCrossPair(CrossPair):
    def forward(self, ir: torch.Tensor, vis: torch.Tensor, inplace: bool = False):
        """inplace: the caller no longer needs ir and vis. The visible stream is then updated over vis, after
        the infrared update has read it; the infrared one gets a new map, since vis_from_ir still reads ir."""
        if _reference(self, ir):
            return super().forward(ir, vis)
        new_ir = self.ir_from_vis(ir, context=vis)
        return new_ir, self.vis_from_ir(vis, context=ir, inplace=inplace)


class InplaceCRSTB(CRSTB):
    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if _reference(self, ir):
            return super().forward(ir, vis)
        a, b = ir, vis
        for i, blk in enumerate(self.blocks):
            a, b = blk(a, b, inplace=i > 0)
        return conv_channels_last(self.conv_ir, a).add_(ir), conv_channels_last(self.conv_vis, b).add_(vis)


_SWAPS = {WindowAttention: CpuWindowAttention, SwinBlock: BandedSwinBlock, RSTB: InplaceRSTB,
          CrossPair: InplaceCrossPair, CRSTB: InplaceCRSTB}


def _swap(model: nn.Module, classes: dict) -> int:
    count = 0
    for module in model.modules():
        cls = classes.get(type(module))
        if cls is not None:
            module.__class__ = cls
            count += 1
    return count


def enable_cpu_inference(model: nn.Module) -> int:
    """Switch the model's attention, blocks and groups to the CPU inference computation, in place (the same
    parameters, keys and outputs); returns how many modules were switched. Idempotent."""
    return _swap(model, _SWAPS)


def disable_cpu_inference(model: nn.Module) -> int:
    """Back to the reference computation; returns how many modules were switched."""
    return _swap(model, {v: k for k, v in _SWAPS.items()})
