"""The metrics' names and directions (DIRECTIONS: +1 higher is better, -1 lower), and the conventions
evaluators disagree on, by name (CONVENTIONS): MI's unit, summing or averaging MI, VIF and SSIM over the two
sources, SSIM's data range. The default, cddfuse, is the CDDFuse evaluator's (see swinfuse.metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from swinfuse.errors import InputError


METRIC_NAMES = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "Nabf")


# Direction of each metric: +1 higher is better, -1 lower is better (Nabf counts artifacts).
DIRECTIONS = {name: (-1 if name == "Nabf" else 1) for name in METRIC_NAMES}


@dataclass(frozen=True)
class Convention:
    """How an evaluator reports the metrics that depend on a convention; every other metric is the same.

    mi_unit: 'nats' (natural log, sklearn's mutual_info_score) or 'bits' (log2).
    combine: 'sum' or 'mean' of MI, VIF and SSIM over the two sources (infrared, visible).
    ssim_data_range: L in SSIM's C1 = (0.01 L)^2, C2 = (0.03 L)^2; 2 is scikit-image 0.19's implicit range
    for float images (-1..1), 255 the range of the 0..255 values actually scored.
    """

    name: str
    mi_unit: str
    combine: str
    ssim_data_range: float
    description: str


CONVENTIONS = {c.name: c for c in (
    Convention("cddfuse", "nats", "sum", 2.0,  # this description is part of `evaluate --json`: keep it word for word
               "Images are read as the CDDFuse evaluator reads them (cv2, BGR->gray, rounded) and scored as "
               "gray float values on 0..255. MI, VIF and SSIM are summed over the two sources (infrared and "
               "visible), so SSIM of a perfect copy of both is 2. EN in bits, MI in nats (sklearn), SSIM as "
               "scikit-image 0.19 computes it for float images (data_range 2, 7x7 window), Qabf with "
               "CDDFuse's Sobel and constants, Nabf as Kumar's modified fusion-artifacts measure."),
    Convention("cddfuse-255", "nats", "sum", 255.0,
               "As cddfuse, but SSIM with data_range=255, the range of the 0..255 values scored: what the same "
               "evaluator gives when data_range=255 is passed, as newer scikit-image requires for float images. "
               "Only SSIM changes (slightly, in flat regions)."),
    Convention("mean-bits", "bits", "mean", 255.0,
               "Descriptive, not one evaluator's: MI in bits (log2, as Tang's MATLAB Evaluation-for-Image-Fusion "
               "computes it), MI, VIF and SSIM the mean of the two sources (half the cddfuse sums; SSIM of a "
               "perfect copy is 1), SSIM with data range 255."),
)}


DEFAULT_CONVENTION = "cddfuse"


def get_convention(convention: "str | Convention | None") -> Convention:
    """A Convention from its name (None: the default); InputError naming the known ones otherwise."""
    if isinstance(convention, Convention):
        return convention
    name = convention or DEFAULT_CONVENTION
    if name not in CONVENTIONS:
        raise InputError(f"unknown convention {name!r}; choose one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]
