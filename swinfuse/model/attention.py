"""Window attention with a relative position bias (Swin), serving self- and cross-attention.

Cross-attention is the same module given a `context`: queries come from `x`, keys and values from the
other modality, as in SwinFusion's cross-domain blocks. One module instead of two near-copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import trunc_normal_

from swinfuse.model.window import relative_position_index

CHUNK_WINDOWS = 64  # windows per score matrix in CPU inference: 64 x (64 x 64) floats = 1 MB, in L2


def attend_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax(q k^T * scale + bias) v, window chunk by chunk and head by head with baddbmm/bmm, for CPU
    inference: at window attention's small sizes (64 tokens, head dim 8-16) torch's fused CPU SDPA kernel
    hardly gains from a second thread (one band of 480-512 windows, one head of 16: SDPA 4.0 ms on one thread,
    3.5-3.7 ms on two; this 4.2 and 2.0-2.5 ms; two heads of 8 and six of 10 gain 1.3x on two threads too).
    Each chunk's scores stay in cache; nothing of size L x L per window outlives it.

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
        self._cache: dict = {}  # biases per dtype and masked-window shape, valid for one table version

    def position_bias(self) -> torch.Tensor:
        L = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]  # (L*L, nH)
        return bias.view(L, L, self.num_heads).permute(2, 0, 1)  # (nH, L, L)

    def _cached(self, key, build):
        """build() once per key while the table is unchanged; rebuilt every call when gradients must flow."""
        table = self.relative_position_bias_table
        # Under torch.compile the graph computes it (a dict keyed by versions would force recompiles).
        if (torch.is_grad_enabled() and table.requires_grad) or torch.compiler.is_compiling():
            return build()
        version = (table._version, table.data_ptr(), table.device)  # an optimizer step or a load bumps it
        if self._cache.get("version") != version:
            self._cache = {"version": version}
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def _biases(self, dtype, B: int, masked) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (1, nH, L, L) position bias for every window, and (B*nM, nH, L, L) bias + shift mask for the
        masked windows (None without a shift)."""
        bias = self._cached(("bias", dtype), lambda: self.position_bias().unsqueeze(0).to(dtype).contiguous())
        if masked is None:
            return bias, None
        idx, mask = masked

        def build():
            both = bias + mask.unsqueeze(1).to(dtype)  # (nM, nH, L, L)
            return both.repeat(B, 1, 1, 1)  # (B*nM, nH, L, L)
        return bias, self._cached(("masked", dtype, B, mask.data_ptr(), tuple(mask.shape)), build)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                masked: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x, context: (B, nW, L, C); masked: (idx (nM,), mask (nM, L, L)) from window.masked_windows, the
        windows of a shifted map that need their shift mask, or None -> (B, nW, L, C)."""
        B, nW, L, C = x.shape
        nH, hd = self.num_heads, C // self.num_heads
        if context is None:
            qkv = self.qkv(x).view(B * nW, L, 3, nH, hd).permute(2, 0, 3, 1, 4)  # (3, B*nW, nH, L, hd)
            q, k, v = qkv.unbind(0)
            del qkv
        else:
            # Same weights, split: queries from this modality, keys/values from the other one.
            w_q, w_kv = self.qkv.weight.split([C, 2 * C])
            b_q, b_kv = self.qkv.bias.split([C, 2 * C]) if self.qkv.bias is not None else (None, None)
            q = F.linear(x, w_q, b_q).view(B * nW, L, nH, hd).transpose(1, 2)  # (B*nW, nH, L, hd)
            kv = F.linear(context, w_kv, b_kv).view(B * nW, L, 2, nH, hd).permute(2, 0, 3, 1, 4)
            k, v = kv.unbind(0)  # 2 x (B*nW, nH, L, hd)
            del kv
        bias, masked_bias = self._biases(q.dtype, B, masked)
        drop = self.attn_drop if self.training else 0.0
        if q.device.type == "cpu" and not torch.is_grad_enabled() and not torch.compiler.is_compiling():
            attend = lambda q, k, v, bias: attend_cpu(q, k, v, bias, self.scale)  # noqa: E731
        else:
            # A 4-D bias broadcast over windows keeps SDPA on its fused kernel; a 3-D one sends it down the
            # slow math path, and a per-window (nW, nH, L, L) one costs more than the attention itself.
            attend = lambda q, k, v, bias: F.scaled_dot_product_attention(  # noqa: E731
                q, k, v, attn_mask=bias, dropout_p=drop, scale=self.scale)
        out = attend(q, k, v, bias)  # (B*nW, nH, L, hd)
        if masked is not None:
            idx = masked[0]
            if B > 1:
                idx = (torch.arange(B, device=idx.device)[:, None] * nW + idx).flatten()  # (B*nM,)
            redo = attend(q[idx], k[idx], v[idx], masked_bias)  # (B*nM, nH, L, hd)
            if torch.is_grad_enabled():
                out = out.index_copy(0, idx, redo)  # (B*nW, nH, L, hd); SDPA's backward needs its own output
            else:
                out.index_copy_(0, idx, redo)  # in place: no copy, and out keeps SDPA's (B*nW, L, nH, hd) memory
                # order, so the transpose below is a view
        del q, k, v  # q/k/v (3C per pixel) freed before the projection allocates: lower peak memory
        out = out.transpose(1, 2).reshape(B, nW, L, C)  # (B, nW, L, C)
        return self.proj_drop(self.proj(out))
