"""SwinFusion's infrared-visible fusion loss (Ma, Tang et al., JAS 2022; `models/loss_vif.py`).

    total = 10 * (1 - SSIM_w) + 20 * L_int + 20 * L_grad

- SSIM_w = w_ir SSIM(ir, F) + w_vis SSIM(vis, F), each source weighted by its share of the mean Sobel
  magnitude, so the more textured source counts more. SSIM: 11x11 gaussian window, sigma 1.5,
  C1 = 0.01^2, C2 = 0.03^2 (SwinFusion's `loss_ssim.py`).
- L_int = | F - max(ir, vis) |_1 (mean).
- L_grad = | sobel(F) - max(sobel(ir), sobel(vis)) |_1, sobel = |Gx| + |Gy|.

The weights 10 / 20 / 20 are those of `fusion_loss_vif` in SwinFusion's code. That code also adds
20 * L_TV, a term its paper does not describe; it is left out here. Two choices of ours: the SSIM
weights are computed per image rather than over the whole batch (a batch mixes unrelated crops), and the
Sobel filter pads by replication rather than zeros (a crop border is not an edge).
All images are (B, 1, H, W) in [0, 1]; the sources passed in are the clean ones.

A fourth weight `pyramid` (ours, optional, 0 by default) adds | F - P |_1, P the Laplacian-pyramid fusion of
the clean sources (max-abs details, mean base): a target that keeps both sources' local contrast where
max(ir, vis) keeps the brighter one.

`gradient_target="signed"` (ours, optional) replaces L_grad's magnitude target by a signed one: per pixel and
per axis, the Sobel response of whichever source has the larger one, sign included, so an edge must be
reproduced with its polarity (the selection rule of a Laplacian pyramid's max-abs fusion), not just its
strength: |Gx(F) - Gx*| + |Gy(F) - Gy*|.

`intensity_target="max-matched"` (ours, optional) shifts L_int's target max(ir, vis), per image, so that its
mean is the brighter source's mean: the pixel-wise max of two images is brighter on average than either, and a
network trained towards it renders scenes brighter than both sources. The shift keeps the max's structure
(which source wins where) and clips at 0 and 1.

`intensity_target="max-frame"` (ours, optional) is `max-matched` with the shift read from the whole frame the
crop was cut from (its `whole_frame_stats`, passed in as `frame`, (shift, mean ir, mean vis) per image; NaN, or no
`frame`, falls back to the crop's own): a 64-pixel crop's own means make the target a local normalisation (each
crop's max pulled to that crop's brighter source), while a frame is fused whole, so every crop of one frame gets
one shift.

`intensity_target="mixed"` (ours, optional; "mixed:S" sets the share S, 0.3 by default) moves L_int's target
from the matched max towards the sources' deviations added: (1 - S) x max-matched + S x D, where
D = clip(m + 0.7 x ((ir - mean ir) + (vis - mean vis))), m the brighter source's mean, per image. Where one
source is brighter over a whole region the max copies it there and drops the other's variation (SCD falls to the
max's, below the average's on some cameras); D keeps both sources' variation everywhere, the gain 0.7 keeping
its clipping near the sources' own. Scored as fusions on the validation sets, S = 0.3 keeps MI above 2.1 (the
max's 4.2-4.9, the average's 1.5-2.3) and SCD above the average's on all three (docs/MODEL_CARD.md).
`intensity_target="mixed-frame"` ("mixed-frame:S") is `mixed` with every mean read from the crop's whole frame
(`frame`, as `max-frame`): the max's shift, m, and the means D's deviations are taken from. With a crop's own
means D's deviations are local (a 64-pixel crop's), while SCD is decided by the scene's large-scale structure.

A fifth weight `scd` (ours, optional, 0 by default) adds scd x (2 - SCD(F)), SCD the sum of the correlations of
differences (Aslantas and Bendes 2015; the metric of swinfuse.metrics), per image: corr(F - vis, ir) +
corr(F - ir, vis). It rewards a fusion whose departure from each source is explained by the other, i.e. one
that keeps both sources' content rather than the brighter one's (max(ir, vis) scores low on it). 2 is its
ceiling, so the term is non-negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from swinfuse.model.network import mixed_base

WEIGHTS = {"ssim": 10.0, "intensity": 20.0, "gradient": 20.0}
OPTIONAL_WEIGHTS = {"pyramid": 0.0, "scd": 0.0}  # ours, off unless a fourth (fifth) loss weight is given
GRADIENT_TARGETS = ("magnitude", "signed")
INTENSITY_TARGETS = ("max", "max-matched", "max-frame", "mixed", "mixed-frame")
MIXED_SHARE, DEVIATION_GAIN = 0.3, 0.7  # "mixed": D's share of the target, and the gain of the deviations in D
PYRAMID_LEVELS = 3


def deviation_gain(intensity_target: str) -> float:
    """The deviations' gain G of "mixed:S:G" or "mixed-frame:S:G" (DEVIATION_GAIN when not given)."""
    parts = intensity_target.split(":")
    return float(parts[2]) if len(parts) > 2 else DEVIATION_GAIN


def intensity_share(intensity_target: str) -> float:
    """The share S of an intensity target "mixed[:S[:G]]" or "mixed-frame[:S[:G]]" (0 for the other targets);
    ValueError for an unknown target, a share outside [0, 1] or a gain G (the deviations', DEVIATION_GAIN
    by default) outside [0, 2]."""
    name, _, share = intensity_target.partition(":")
    share, _, gain = share.partition(":")
    if gain:
        try:
            ok = 0 <= float(gain) <= 2
        except ValueError:
            ok = False
        if not ok or name not in ("mixed", "mixed-frame"):
            raise ValueError(f"intensity_target mixed:S:G needs G in [0, 2], got {intensity_target!r}")
    mixed = name in ("mixed", "mixed-frame")
    if name not in INTENSITY_TARGETS or (share and not mixed):
        raise ValueError(f"intensity_target must be one of {INTENSITY_TARGETS} (mixed:S or mixed-frame:S with S "
                         f"in [0, 1]), got {intensity_target!r}")
    if not mixed:
        return 0.0
    try:
        value = float(share) if share else MIXED_SHARE
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise ValueError(f"intensity_target {name}:S needs S in [0, 1], got {intensity_target!r}")
    return value


def uses_frame_stats(intensity_target: str) -> bool:
    """Whether the target reads its means from the crop's whole frame (the `frame` of fusion_loss)."""
    return intensity_target.partition(":")[0] in ("max-frame", "mixed-frame")


def _blur5(img: torch.Tensor) -> torch.Tensor:
    """The 5x5 binomial blur of a Burt-Adelson pyramid ([1 4 6 4 1]/16 per axis), reflect padding."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=img.device, dtype=img.dtype) / 16
    return F.conv2d(F.pad(img, (2, 2, 2, 2), mode="reflect"), (k[:, None] * k[None, :]).view(1, 1, 5, 5))


def _pyr_up(img: torch.Tensor, size) -> torch.Tensor:
    B, C, h, w = img.shape
    up = img.new_zeros(B, C, 2 * h, 2 * w)
    up[..., ::2, ::2] = 4 * img
    return _blur5(up)[..., :size[0], :size[1]]


def pyramid_fusion(ir: torch.Tensor, vis: torch.Tensor, levels: int = PYRAMID_LEVELS) -> torch.Tensor:
    """Laplacian-pyramid fusion of two (B, 1, H, W) images in [0, 1] (tools/baselines.py's rule, in
    torch): detail levels keep the coefficient of larger magnitude, the base is the mean -> (B, 1, H, W)."""
    details, a, b = [], ir, vis
    for _ in range(levels):
        if min(a.shape[-2:]) < 6:
            break
        da, db = _blur5(a)[..., ::2, ::2], _blur5(b)[..., ::2, ::2]
        la, lb = a - _pyr_up(da, a.shape[-2:]), b - _pyr_up(db, b.shape[-2:])
        details.append(torch.where(la.abs() >= lb.abs(), la, lb))
        a, b = da, db
    out = (a + b) / 2
    for detail in reversed(details):
        out = _pyr_up(out, detail.shape[-2:]) + detail
    return out.clamp(0, 1)


def sobel(img: torch.Tensor) -> torch.Tensor:
    """Signed Sobel responses (Gx, Gy) of a (B, 1, H, W) image -> (B, 2, H, W), replicate padding."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=img.device, dtype=img.dtype)
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    return F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), kernels)


def sobel_magnitude(img: torch.Tensor) -> torch.Tensor:
    """|Gx| + |Gy| of a (B, 1, H, W) image -> (B, 1, H, W)."""
    return sobel(img).abs().sum(dim=1, keepdim=True)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per image of two (B, 1, H, W) tensors -> (B,); 0 where either is flat."""
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    # clamped before the root: the root's derivative at 0 is infinite, and a flat crop would make the loss NaN
    return (a * b).sum(1) / (a.square().sum(1) * b.square().sum(1)).clamp_min(1e-16).sqrt()


def scd(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """SCD per image: corr(F - vis, ir) + corr(F - ir, vis) -> (B,), in [-2, 2]."""
    return _correlation(fused - vis, ir) + _correlation(fused - ir, vis)


def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - size // 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)  # (1, 1, ws, ws)


def ssim(a: torch.Tensor, b: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """Mean SSIM per image of two (B, 1, H, W) images in [0, 1] -> (B,). Zero padding, as SwinFusion."""
    win = _gaussian_window(window_size, 1.5, a.device, a.dtype)
    pad = window_size // 2
    mu_a, mu_b = F.conv2d(a, win, padding=pad), F.conv2d(b, win, padding=pad)
    var_a = F.conv2d(a * a, win, padding=pad) - mu_a ** 2
    var_b = F.conv2d(b * b, win, padding=pad) - mu_b ** 2
    cov = F.conv2d(a * b, win, padding=pad) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(dim=1)  # (B,)


def fusion_loss(ir: torch.Tensor, vis: torch.Tensor, fused: torch.Tensor,
                weights: dict[str, float] | None = None,
                gradient_target: str = "magnitude",
                intensity_target: str = "max", frame: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SwinFusion's loss of `fused` against the clean sources (`frame`: (B, 3) frame statistics, shift, mean ir,
    mean vis, for the -frame targets; a NaN row falls back to the crop's own).

    Returns (total, terms): `terms` holds each weighted term ('ssim', 'intensity', 'gradient'; they sum
    to the total) and the raw 'ssim_value' (weighted SSIM, higher is better), all detached scalars."""
    w = {**WEIGHTS, **(weights or {})}
    if gradient_target not in GRADIENT_TARGETS:
        raise ValueError(f"gradient_target must be one of {GRADIENT_TARGETS}, got {gradient_target!r}")
    g_ir, g_vis, g_fused = sobel(ir), sobel(vis), sobel(fused)  # (B, 2, H, W)
    grad_ir, grad_vis = g_ir.abs().sum(1, keepdim=True), g_vis.abs().sum(1, keepdim=True)
    grad_fused = g_fused.abs().sum(1, keepdim=True)
    mean_ir, mean_vis = grad_ir.flatten(1).mean(1), grad_vis.flatten(1).mean(1)  # (B,)
    share_ir = mean_ir / (mean_ir + mean_vis).clamp_min(1e-8)  # (B,)
    ssim_w = (share_ir * ssim(ir, fused) + (1 - share_ir) * ssim(vis, fused)).mean()
    l_ssim = w["ssim"] * (1 - ssim_w)
    share = intensity_share(intensity_target)
    brighter = torch.maximum(ir, vis)
    if intensity_target != "max":  # the matched max: alone, or the max part of mixed
        mean_ir, mean_vis = ir.mean((1, 2, 3), keepdim=True), vis.mean((1, 2, 3), keepdim=True)
        offset = torch.maximum(mean_ir, mean_vis) - brighter.mean((1, 2, 3), keepdim=True)  # (B, 1, 1, 1): the crop's
        if uses_frame_stats(intensity_target) and frame is not None:
            stats = frame.to(offset).view(-1, 3, 1, 1, 1)
            own = stats[:, 0].isnan()
            offset, mean_ir, mean_vis = (torch.where(own, mine, theirs) for mine, theirs in
                                         zip((offset, mean_ir, mean_vis), stats.unbind(1)))
        if share:  # the base of a 'mixed-base' network: matched max and deviations, read with these means
            means = torch.cat([mean_ir, mean_vis, torch.maximum(mean_ir, mean_vis) - offset], 1).flatten(1)  # (B, 3)
            brighter = mixed_base(ir, vis, means, share, deviation_gain(intensity_target))
        else:
            brighter = (brighter + offset).clamp(0, 1)
    l_int = w["intensity"] * F.l1_loss(fused, brighter)
    if gradient_target == "signed":
        target = torch.where(g_ir.abs() >= g_vis.abs(), g_ir, g_vis)  # per axis, the stronger source's response
        l_grad = w["gradient"] * (g_fused - target).abs().sum(1).mean()
    else:
        l_grad = w["gradient"] * F.l1_loss(grad_fused, torch.maximum(grad_ir, grad_vis))
    total = l_ssim + l_int + l_grad
    terms = {"ssim": l_ssim.detach(), "intensity": l_int.detach(), "gradient": l_grad.detach(),
             "ssim_value": ssim_w.detach()}
    if w.get("pyramid"):
        with torch.no_grad():
            target = pyramid_fusion(ir, vis)
        l_pyr = w["pyramid"] * F.l1_loss(fused, target)
        total = total + l_pyr
        terms["pyramid"] = l_pyr.detach()
    if w.get("scd"):
        l_scd = w["scd"] * (2 - scd(fused, ir, vis)).mean()
        total = total + l_scd
        terms["scd"] = l_scd.detach()
    return total, terms
