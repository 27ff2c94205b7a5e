"""Swin blocks and the residual groups SwinFusion builds from them.

- SwinBlock: (shifted) window attention + MLP, pre-norm, on channel-last maps (B, H, W, C).
  Given a `context` map it attends across modalities (queries here, keys/values there).
- RSTB: residual Swin transformer block (SwinIR / SwinFusion): blocks, a conv, a residual.
- CRSTB: cross-domain residual group: both directions (infrared <- visible and visible <- infrared)
  in every block, each stream with its own weights, conv and residual.

One reference computation per module, for training and every device. CPU inference runs the same
arithmetic band by band and partly in place: `cpu_inference.enable_cpu_inference` switches it on.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from swinfuse.model.attention import WindowAttention
from swinfuse.model.light_import import light_import
from swinfuse.model.window import masked_windows, window_partition, window_reverse

# timm.layers' DropPath and Mlp, without timm's __init__ (which imports torchvision: seconds)
DropPath, Mlp = light_import("timm.layers", "drop").DropPath, light_import("timm.layers", "mlp").Mlp


class SwinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, *, shift_size: int = 0,
                 mlp_ratio: float = 2.0, qkv_bias: bool = True, qk_scale: float | None = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, cross: bool = False):
        super().__init__()
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        # The other modality's map gets its own norm: its statistics differ from this stream's.
        self.norm_context = nn.LayerNorm(dim) if cross else None
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                    attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)

    def attend_and_mix(self, x: torch.Tensor, context: torch.Tensor | None, masked) -> torch.Tensor:
        """The block on an unshifted or already shifted map. x, context: (B, h, Wp, C), h and Wp multiples of
        the window; masked: the windows needing the shift mask (window.masked_windows) -> (B, h, Wp, C)."""
        B, h, Wp, C = x.shape
        ws = self.window_size
        ctx = window_partition(self.norm_context(context), ws) if context is not None else None  # (B, nW, L, C)
        attn = self.attn(window_partition(self.norm1(x), ws), context=ctx, masked=masked)  # (B, nW, L, C)
        x = x + self.drop_path(window_reverse(attn, ws, h, Wp))  # (B, h, Wp, C)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x, context: (B, Hp, Wp, C) with Hp, Wp multiples of the window -> (B, Hp, Wp, C).

        Apart from the window attention every op is per token, so the residual and the MLP run in the
        shifted frame: the same as shifting only the attention's input and output (Swin's order)."""
        s = self.shift_size
        if not s:
            return self.attend_and_mix(x, context, None)
        B, Hp, Wp, C = x.shape
        x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))  # (B, Hp, Wp, C)
        context = torch.roll(context, shifts=(-s, -s), dims=(1, 2)) if context is not None else None
        out = self.attend_and_mix(x, context, masked_windows(Hp, Wp, self.window_size, s, x.device))
        return torch.roll(out, shifts=(s, s), dims=(1, 2))


def conv_block(dim: int, resi_connection: str) -> nn.Module:
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    # '3conv' saves parameters (SwinIR): squeeze to dim/4, a 1x1, expand back.
    return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(dim // 4, dim, 3, 1, 1))


def conv_channels_last(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a conv to a (B, H, W, C) map -> (B, H, W, C)."""
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def run_block(block: nn.Module, use_checkpoint: bool, *args, **kwargs):
    """block(*args): with gradient checkpointing when asked, and only when there is a backward pass."""
    if use_checkpoint and torch.is_grad_enabled() and block.training:
        return checkpoint(block, *args, use_reentrant=False, **kwargs)
    return block(*args, **kwargs)


def shifts(depth: int, window_size: int) -> list[int]:
    """Swin's alternation: regular windows, then windows shifted by half a window."""
    return [0 if i % 2 == 0 else window_size // 2 for i in range(depth)]


class _Group(nn.Module):
    """`depth` blocks of `block` (SwinBlock or CrossPair), regular and shifted windows in turn, then convs of
    the residual connection (the subclass adds them)."""

    block: type[nn.Module]

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, *, mlp_ratio: float = 2.0,
                 qkv_bias: bool = True, qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: list[float] | None = None, resi_connection: str = "1conv", use_checkpoint: bool = False):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        drop_path = drop_path or [0.0] * depth
        self.blocks = nn.ModuleList(
            self.block(dim, num_heads, window_size, shift_size=s, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                       qk_scale=qk_scale, drop=drop, attn_drop=attn_drop, drop_path=drop_path[i])
            for i, s in enumerate(shifts(depth, window_size)))


class RSTB(_Group):
    block = SwinBlock

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, **kw):
        super().__init__(dim, depth, num_heads, window_size, **kw)
        self.conv = conv_block(dim, kw.get("resi_connection", "1conv"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Hp, Wp, C) -> (B, Hp, Wp, C)."""
        y = x
        for blk in self.blocks:
            y = run_block(blk, self.use_checkpoint, y)
        return conv_channels_last(self.conv, y).add_(x)  # the conv's fresh output takes the residual in place


class CrossPair(nn.Module):
    """One cross-domain step in both directions; each direction reads the other's input, not its update."""

    def __init__(self, dim: int, num_heads: int, window_size: int, **kw):
        super().__init__()
        self.ir_from_vis = SwinBlock(dim, num_heads, window_size, cross=True, **kw)
        self.vis_from_ir = SwinBlock(dim, num_heads, window_size, cross=True, **kw)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ir_from_vis(ir, context=vis), self.vis_from_ir(vis, context=ir)


class CRSTB(_Group):
    block = CrossPair

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, **kw):
        super().__init__(dim, depth, num_heads, window_size, **kw)
        self.conv_ir = conv_block(dim, kw.get("resi_connection", "1conv"))
        self.conv_vis = conv_block(dim, kw.get("resi_connection", "1conv"))

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """2 x (B, Hp, Wp, C) -> 2 x (B, Hp, Wp, C)."""
        a, b = ir, vis
        for blk in self.blocks:
            a, b = run_block(blk, self.use_checkpoint, a, b)
        return conv_channels_last(self.conv_ir, a).add_(ir), conv_channels_last(self.conv_vis, b).add_(vis)
