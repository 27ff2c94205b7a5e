"""Window attention with a relative position bias (Swin), serving self- and cross-attention.

Cross-attention is the same module given a `context`: queries come from `x`, keys and values from the
other modality, as in SwinFusion's cross-domain blocks. One module instead of two near-copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import trunc_normal_

from swinfuse_cli.model.window import relative_position_index


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size).clone(),
                             persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> torch.Tensor:
        L = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]  # (L*L, nH)
        return bias.view(L, L, self.num_heads).permute(2, 0, 1)  # (nH, L, L)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x, context: (B, nW, L, C); mask: (nW, L, L) additive or None -> (B, nW, L, C)."""
        B, nW, L, C = x.shape
        nH, hd = self.num_heads, C // self.num_heads
        if context is None:
            qkv = self.qkv(x).view(B, nW, L, 3, nH, hd).permute(3, 0, 1, 4, 2, 5)  # (3, B, nW, nH, L, hd)
            q, k, v = qkv.unbind(0)
        else:
            # Same weights, split: queries from this modality, keys/values from the other one.
            w_q, w_kv = self.qkv.weight.split([C, 2 * C])
            b_q, b_kv = self.qkv.bias.split([C, 2 * C]) if self.qkv.bias is not None else (None, None)
            q = F.linear(x, w_q, b_q).view(B, nW, L, nH, hd).transpose(2, 3)  # (B, nW, nH, L, hd)
            kv = F.linear(context, w_kv, b_kv).view(B, nW, L, 2, nH, hd).permute(3, 0, 1, 4, 2, 5)
            k, v = kv.unbind(0)  # 2 x (B, nW, nH, L, hd)
        # A 4-D mask keeps SDPA on its fused CPU kernel; a 3-D one sends it down the slow math path.
        bias = self.position_bias().unsqueeze(0)  # (1, nH, L, L)
        if mask is not None:
            bias = bias + mask.unsqueeze(1)  # (nW, nH, L, L)
        out = F.scaled_dot_product_attention(
            q.reshape(B * nW, nH, L, hd), k.reshape(B * nW, nH, L, hd), v.reshape(B * nW, nH, L, hd),
            attn_mask=_batched_mask(bias.to(q.dtype), B),
            dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale)  # (B*nW, nH, L, hd)
        out = out.view(B, nW, nH, L, hd).transpose(2, 3).reshape(B, nW, L, C)  # (B, nW, L, C)
        return self.proj_drop(self.proj(out))


def _batched_mask(bias: torch.Tensor, B: int) -> torch.Tensor:
    """(1, nH, L, L) broadcasts over windows as is; (nW, nH, L, L) is repeated over the batch (as is when B == 1)."""
    if bias.shape[0] == 1 or B == 1:
        return bias
    return bias.repeat(B, 1, 1, 1)  # (B*nW, nH, L, L)
