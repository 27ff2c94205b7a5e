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


def roll_rows(x: torch.Tensor, r0: int, h: int, shift: int) -> torch.Tensor:
    """Rows [r0, r0+h) of torch.roll(x, (-shift, -shift), dims=(1, 2)) for x (B, H, W, C) -> (B, h, W, C).

    Copies only those rows: torch.roll on CPU goes through cat and, on a large map, cost ~20 % of a forward."""
    B, H, W, C = x.shape
    out = x.new_empty(B, h, W, C)
    s, i = shift % W, 0
    while i < h:  # at most two runs of source rows (the wrap-around)
        src = (r0 + shift + i) % H
        n = min(h - i, H - src)
        out[:, i:i + n, :W - s] = x[:, src:src + n, s:]
        if s:
            out[:, i:i + n, W - s:] = x[:, src:src + n, :s]
        i += n
    return out


def unroll_rows_(out: torch.Tensor, band: torch.Tensor, r0: int, shift: int) -> None:
    """Write band (B, h, W, C), rows [r0, r0+h) of the rolled frame, into out (B, H, W, C) unrolled: the
    inverse of roll_rows."""
    B, H, W, C = out.shape
    h, s, i = band.shape[1], shift % W, 0
    while i < h:
        dst = (r0 + shift + i) % H
        n = min(h - i, H - dst)
        out[:, dst:dst + n, s:] = band[:, i:i + n, :W - s]
        if s:
            out[:, dst:dst + n, :s] = band[:, i:i + n, W - s:]
        i += n


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


@lru_cache(maxsize=32)
def band_masked_windows(h: int, Wp: int, ws: int, shift: int, last: bool,
                        device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """masked_windows for a band of h rows (a multiple of ws) of a shifted map of width Wp: the windows of the
    last column, and of the whole last window-row when the band is the map's last. Indices are the band's
    own; equal bands share one result (one cached attention bias each)."""
    idx, mask = masked_windows(h if last else h + ws, Wp, ws, shift, device)  # a map whose top h rows look alike
    keep = idx < (h // ws) * (Wp // ws)
    return idx[keep], mask[keep]
