"""The options of `swinfuse fuse` and `swinfuse batch` that say how each image is made and how fast: one frozen
dataclass, FuseOptions, carried from the command line to the batch manifest.

The CLI makes one option per field (swinfuse.cli, with the help written here, so each help text has one
place), builds one FuseOptions and hands it to the api (api.fuse_pair, api.fuse_batch, api.fuse), which
applies the speed fields (device, threads, precision, compile) to the model and passes the options on to the
pipelines (fusing.pair, fusing.batch); they read the image fields, and a batch records
dataclasses.asdict(options) among the manifest's "settings". The fields that shape an output image
(shapes_image in their metadata) are those the manifest's per-output records compare on a rerun.

Every fusing function takes its options this one way: `options=FuseOptions(tile=512)`. Standard library
only, so the CLI imports it without torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from swinfuse.data import MAX_PIXELS  # the default limit per image
from swinfuse.errors import ConfigError


def _option(default, help: str | None, *, shapes_image: bool = False, min: int | None = None,
            flag: str | None = None):
    """A field with its command-line help (None: the CLI's option shared with other commands), its lowest value
    and its flag where they are not the plain ones."""
    return field(default=default, metadata={"help": help, "shapes_image": shapes_image, "min": min, "flag": flag})


TONES = ("cap", "off")  # FuseOptions.tone


@dataclass(frozen=True)
class FuseOptions:
    """How `fuse` and `batch` make each image, and how fast. The defaults are the command line's."""

    resize: bool = _option(False, "Resize the infrared to the visible when sizes differ.", shapes_image=True)
    gray: bool = _option(False, "Write the fused Y only (no colour).", shapes_image=True)
    bit_depth: int | None = _option(None, "8 or 16 (default: the visible's).", shapes_image=True)
    stretch: bool = _option(False, (
        "Stretch each output to the full range of its bit depth (one min-max over the whole image, all "
        "colour channels together), as SeAFusion's, CDDFuse's and EMMA's test scripts write theirs."),
        shapes_image=True, flag="--stretch")
    tone: str = _option("cap", (
        "cap: a fusion whose mean brightness is above the brighter source's is lowered to it over the whole "
        "frame (the network sees windows, not the frame's mean), its darkest levels compressed rather than "
        "clipped; off: the network's output as it is."),
        shapes_image=True)
    # 0: automatic; None (library only): always the whole frame, for a model without tiling's config fields.
    tile: int | None = _option(0, (
        "Tile side in pixels, rounded down to the window, at least five windows (40 for the shipped model); "
        "0: automatic (tiles only when the frame exceeds the free-memory budget)."), shapes_image=True, min=0)
    tile_overlap: int | None = _option(None, (
        "Overlap of neighbouring tiles in pixels (default and minimum: four windows, 32 for the shipped model)."),
        shapes_image=True, min=0)
    max_pixels: int = _option(MAX_PIXELS, (
        "Refuse an image of more pixels than this, from its header where the format allows (a guard against "
        "decompression bombs: a 425 KB PNG can decode to 20000x20000); 0: no limit."), min=0)
    precision: str = _option("fp32", "fp32 | bf16 | fp16 (fp16: CUDA only).")
    compile: bool = _option(False, "torch.compile the LayerNorms, where it measurably helps (opt-in; the first "
                                   "forward compiles for seconds; on CPU it needs a C++ compiler).", flag="--compile")
    threads: int | None = _option(None, None)  # CPU threads for torch; 0 or None: torch's default
    device: str = _option("auto", None)  # auto | cpu | cuda | cuda:N

    def __post_init__(self):
        object.__setattr__(self, "device", str(self.device))  # a torch.device is recorded as its name
        if self.tone not in TONES:
            raise ConfigError(f"tone must be one of {', '.join(TONES)}, got {self.tone!r}")


# The fields that shape an output image (the others say where and how fast it was made).
IMAGE_FIELDS = tuple(f.name for f in dataclasses.fields(FuseOptions) if f.metadata["shapes_image"])
