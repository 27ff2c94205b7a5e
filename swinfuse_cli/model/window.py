"""Window helpers for (shifted) window attention, after Swin Transformer (Liu et al. 2021).

Everything here depends only on shapes, so the results are cached per shape: SwinFusion's reference
code rebuilds its shift mask on every forward.
"""

from __future__ import annotations

from functools import lru_cache

import torch


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B, nW, ws*ws, C); H and W must be multiples of ws."""
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C)  # (B, H/ws, ws, W/ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, (H // ws) * (W // ws), ws * ws, C)  # (B, nW, L, C)


def window_reverse(windows: torch.Tensor, ws: int, H: int, W: int) -> torch.Tensor:
    """(B, nW, ws*ws, C) -> (B, H, W, C); the inverse of window_partition."""
    B, _, _, C = windows.shape
    x = windows.view(B, H // ws, W // ws, ws, ws, C)  # (B, H/ws, W/ws, ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)


@lru_cache(maxsize=8)
def relative_position_index(ws: int) -> torch.Tensor:
    """(L, L) index into a ((2ws-1)^2, nH) bias table, L = ws*ws."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)  # (2, L)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, L, L), each in [-(ws-1), ws-1]
    rel = rel.permute(1, 2, 0) + (ws - 1)  # (L, L, 2), each in [0, 2ws-2]
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]  # (L, L)


@lru_cache(maxsize=32)
def shift_mask(Hp: int, Wp: int, ws: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, L, L) additive mask: 0 where two tokens of a shifted window come from the same image region,
    -inf where the cyclic shift wrapped them together (they must not attend to each other)."""
    region = torch.zeros(1, Hp, Wp, 1)
    bands = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for k, (hs, wsl) in enumerate((h, w) for h in bands for w in bands):
        region[:, hs, wsl, :] = k
    ids = window_partition(region, ws).squeeze(0).squeeze(-1)  # (nW, L)
    same = ids[:, :, None] == ids[:, None, :]  # (nW, L, L)
    mask = torch.zeros(same.shape).masked_fill_(~same, float("-inf"))
    return mask.to(device)


@lru_cache(maxsize=32)
def masked_windows(Hp: int, Wp: int, ws: int, shift: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows whose shift mask is not all zero: (idx (nM,), mask (nM, L, L)).

    Only the last row and the last column of windows mix wrapped regions (nM = Hp/ws + Wp/ws - 1 of
    nW), so attention runs on every window with the position bias alone, and these few are redone with
    their mask: a full (nW, nH, L, L) bias + mask would be built, read and stored per call otherwise.
    """
    mask = shift_mask(Hp, Wp, ws, shift, torch.device("cpu"))  # (nW, L, L)
    idx = (mask != 0).flatten(1).any(1).nonzero().flatten()  # (nM,)
    return idx.to(device), mask[idx].to(device)
