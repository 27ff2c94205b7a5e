"""Swin blocks and the residual groups SwinFusion builds from them.

- SwinBlock: (shifted) window attention + MLP, pre-norm, on channel-last maps (B, H, W, C).
  Given a `context` map it attends across modalities (queries here, keys/values there).
- RSTB: residual Swin transformer block (SwinIR / SwinFusion): blocks, a conv, a residual.
- CRSTB: cross-domain residual group: both directions (infrared <- visible and visible <- infrared)
  in every block, each stream with its own weights, conv and residual.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from timm.layers import DropPath, Mlp

from swinfuse.model.attention import WindowAttention
from swinfuse.model.window import (band_masked_windows, masked_windows, roll_rows, unroll_rows_,
                                       window_partition, window_reverse)

BAND_TOKENS = 32768  # per band in inference: ~2 MB per map at 16 channels, in cache


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float,
                 qkv_bias: bool, qk_scale: float | None, drop: float, attn_drop: float, drop_path: float,
                 cross: bool = False):
        super().__init__()
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        # The other modality's map gets its own norm: its statistics differ from this stream's.
        self.norm_context = nn.LayerNorm(dim) if cross else None
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def _band_rows(self, Hp: int, Wp: int) -> int:
        """Rows per band: inference runs a block band by band so each band's intermediates (norms, windows,
        q/k/v, MLP hidden) stay in cache and memory; with gradients (training) the map is one band."""
        if torch.is_grad_enabled() or self.training:
            return Hp
        ws = self.window_size
        return min(Hp, max(ws, BAND_TOKENS // Wp // ws * ws))

    def _band(self, x: torch.Tensor, context: torch.Tensor | None, masked) -> torch.Tensor:
        """x, context: (B, h, Wp, C) rows of the (shifted) map, h a multiple of the window -> (B, h, Wp, C)."""
        B, h, Wp, C = x.shape
        ws = self.window_size
        ctx = window_partition(self.norm_context(context), ws) if context is not None else None  # (B, nW, L, C)
        attn = self.attn(window_partition(self.norm1(x), ws), context=ctx, masked=masked)  # (B, nW, L, C)
        x = x + self.drop_path(window_reverse(attn, ws, h, Wp))  # (B, h, Wp, C)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, inplace: bool = False) -> torch.Tensor:
        """x, context: (B, Hp, Wp, C) with Hp, Wp multiples of the window -> (B, Hp, Wp, C).

        inplace: banded inference may write the result over x (the caller no longer needs it). Each band
        reads its rows (of the shifted map) before writing the same rows back, and bands are disjoint, so
        this is exact; it spares a fresh frame-sized allocation, which the OS must fault in and zero when it
        exceeds glibc's 32 MiB mmap threshold (a 1024x1024 map of 16 channels is 64 MiB)."""
        B, Hp, Wp, C = x.shape
        ws, s = self.window_size, self.shift_size
        rows = self._band_rows(Hp, Wp)
        if rows >= Hp and (not s or torch.is_grad_enabled()):
            if not s:
                return self._band(x, context, None)
            # With gradients (training, checkpointing) the plain form: roll the whole map, attend, roll back.
            # Apart from the window attention every op is per token, so the residual and the MLP can run in
            # the shifted frame: the same as shifting only the attention's input and output (Swin's order).
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))  # (B, Hp, Wp, C)
            context = torch.roll(context, shifts=(-s, -s), dims=(1, 2)) if context is not None else None
            out = self._band(x, context, masked_windows(Hp, Wp, ws, s, x.device))
            return torch.roll(out, shifts=(s, s), dims=(1, 2))
        out = x if inplace else torch.empty_like(x)
        for r0 in range(0, Hp, rows):
            h = min(rows, Hp - r0)
            if not s:
                out[:, r0:r0 + h] = self._band(x[:, r0:r0 + h], context[:, r0:r0 + h] if context is not None else None,
                                               None)
                continue
            # Inference: the rolled map's rows are cut band by band (torch.roll goes through cat on CPU, ~20 %
            # of a large frame's forward), and each band is written back unshifted.
            masked = band_masked_windows(h, Wp, ws, s, r0 + h == Hp, x.device)  # (nM,), (nM, L, L), cached
            band_ctx = roll_rows(context, r0, h, s) if context is not None else None
            unroll_rows_(out, self._band(roll_rows(x, r0, h, s), band_ctx, masked), r0, s)
        return out


def _conv_block(dim: int, resi_connection: str) -> nn.Module:
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    # '3conv' saves parameters (SwinIR): squeeze to dim/4, a 1x1, expand back.
    return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(dim // 4, dim, 3, 1, 1))


def _conv_channels_last(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a conv to a (B, H, W, C) map -> (B, H, W, C)."""
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _may_overwrite() -> bool:
    """In-place updates are for inference only: autograd needs the maps it saved."""
    return not torch.is_grad_enabled()


def _run(block: nn.Module, use_checkpoint: bool, *args):
    # Gradient checkpointing only pays off when there is a backward pass; under inference it is skipped.
    if use_checkpoint and torch.is_grad_enabled() and block.training:
        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)


def _blocks(dim, depth, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale, drop, attn_drop,
            drop_path, cross=False) -> nn.ModuleList:
    return nn.ModuleList(
        SwinBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio, qkv_bias,
                  qk_scale, drop, attn_drop, drop_path[i] if isinstance(drop_path, list) else drop_path, cross)
        for i in range(depth))


class RSTB(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 qkv_bias: bool, qk_scale: float | None, drop: float, attn_drop: float,
                 drop_path: list[float], resi_connection: str, use_checkpoint: bool):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = _blocks(dim, depth, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale, drop,
                              attn_drop, drop_path)
        self.conv = _conv_block(dim, resi_connection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Hp, Wp, C) -> (B, Hp, Wp, C)."""
        y = x
        for i, blk in enumerate(self.blocks):
            # after the first block, y is this group's own map: inference may overwrite it
            y = _run(blk, self.use_checkpoint, y, None, i > 0 and _may_overwrite())
        return _conv_channels_last(self.conv, y).add_(x)  # the conv's fresh output takes the residual in place


class CrossPair(nn.Module):
    """One cross-domain step in both directions; each direction reads the other's input, not its update."""

    def __init__(self, **kw):
        super().__init__()
        self.ir_from_vis = SwinBlock(cross=True, **kw)
        self.vis_from_ir = SwinBlock(cross=True, **kw)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """inplace: the caller no longer needs ir and vis. The visible stream is then updated over vis, after
        the infrared update has read it; the infrared one gets a new map, since vis_from_ir still reads ir."""
        new_ir = self.ir_from_vis(ir, context=vis)
        return new_ir, self.vis_from_ir(vis, context=ir, inplace=inplace)


class CRSTB(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 qkv_bias: bool, qk_scale: float | None, drop: float, attn_drop: float,
                 drop_path: list[float], resi_connection: str, use_checkpoint: bool):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            CrossPair(dim=dim, num_heads=num_heads, window_size=window_size,
                      shift_size=0 if i % 2 == 0 else window_size // 2, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                      qk_scale=qk_scale, drop=drop, attn_drop=attn_drop, drop_path=drop_path[i])
            for i in range(depth))
        self.conv_ir = _conv_block(dim, resi_connection)
        self.conv_vis = _conv_block(dim, resi_connection)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """2 x (B, Hp, Wp, C) -> 2 x (B, Hp, Wp, C)."""
        a, b = ir, vis
        for i, blk in enumerate(self.blocks):
            a, b = _run(blk, self.use_checkpoint, a, b, i > 0 and _may_overwrite())
        return _conv_channels_last(self.conv_ir, a).add_(ir), _conv_channels_last(self.conv_vis, b).add_(vis)
