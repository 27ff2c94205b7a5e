"""Window attention with a relative position bias (Swin), serving self- and cross-attention.

Cross-attention is the same module given a `context`: queries come from `x`, keys and values from the
other modality, as in SwinFusion's cross-domain blocks. One module instead of two near-copies.

This is the reference computation, used for training and on every device. CPU inference swaps in
`cpu_inference.CpuWindowAttention`, the same arithmetic with its biases built once per block and a kernel
tuned for window attention's small sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from swinfuse.model.light_import import light_import
from swinfuse.model.window import relative_position_index

trunc_normal_ = light_import("timm.layers", "weight_init").trunc_normal_  # timm.layers' (without timm's __init__)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: int, num_heads: int, *, qkv_bias: bool = True,
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

    def qkv_heads(self, x: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """x, context: (B, nW, L, C) -> q, k, v, each (B*nW, nH, L, hd). With a context, queries come from x
        and keys/values from the context, through the same projection's weights."""
        B, nW, L, C = x.shape
        nH, hd = self.num_heads, C // self.num_heads
        if context is None:
            qkv = self.qkv(x).view(B * nW, L, 3, nH, hd).permute(2, 0, 3, 1, 4)  # (3, B*nW, nH, L, hd)
            return qkv.unbind(0)
        w_q, w_kv = self.qkv.weight.split([C, 2 * C])
        b_q, b_kv = self.qkv.bias.split([C, 2 * C]) if self.qkv.bias is not None else (None, None)
        q = F.linear(x, w_q, b_q).view(B * nW, L, nH, hd).transpose(1, 2)  # (B*nW, nH, L, hd)
        k, v = F.linear(context, w_kv, b_kv).view(B * nW, L, 2, nH, hd).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                masked: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x, context: (B, nW, L, C); masked: (idx (nM,), mask (nM, L, L)) from window.masked_windows, the
        windows of a shifted map that need their shift mask, or None -> (B, nW, L, C).

        Every window is attended with the position bias alone and the few masked ones are redone with bias +
        mask: a (nW, nH, L, L) bias for the whole map would cost more than the attention itself."""
        B, nW, L, C = x.shape
        q, k, v = self.qkv_heads(x, context)
        bias = self.position_bias().unsqueeze(0).to(q.dtype)  # (1, nH, L, L): SDPA stays on its fused kernel
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=self.scale)
        if masked is not None:
            idx, mask = masked
            if B > 1:
                idx = (torch.arange(B, device=idx.device)[:, None] * nW + idx).flatten()  # (B*nM,)
            both = (bias + mask.unsqueeze(1).to(q.dtype)).repeat(B, 1, 1, 1)  # (B*nM, nH, L, L)
            redo = F.scaled_dot_product_attention(q[idx], k[idx], v[idx], attn_mask=both, dropout_p=drop,
                                                  scale=self.scale)
            out = out.index_copy(0, idx, redo)  # (B*nW, nH, L, hd)
        del q, k, v  # freed before the projection allocates: lower peak memory
        out = out.transpose(1, 2).reshape(B, nW, L, C)
        return self.proj_drop(self.proj(out))
