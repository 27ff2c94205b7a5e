"""Find infrared/visible pairs in a folder and split the list into shards.

Public fusion datasets lay pairs out as two sibling folders whose files share a stem (RoadScene, TNO,
MSRS, M3FD, LLVIP); the folder names vary, so the known layouts are tried case-insensitively. Files
without a partner are reported, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swinfuse.data.io import READ_EXTENSIONS  # the one list of image extensions; others import it from here
from swinfuse.errors import InputError

# (infrared folder, visible folder), lower case; the first present under the root wins.
LAYOUTS = (("ir", "vis"), ("ir", "vi"), ("infrared", "visible"), ("ir", "vi_y"))
_LAYOUT_TEXT = "ir/+vis/, ir/+vi/, Infrared/+Visible/, IR/+VI_Y/ (any case)"


@dataclass(frozen=True)
class Pair:
    """One infrared/visible pair. rel is the stem with its subfolder, relative to the pair folders
    (e.g. 'night/00012'); outputs mirror it."""

    stem: str
    ir: Path
    vis: Path
    rel: str


@dataclass
class PairSet:
    ir_dir: Path
    vis_dir: Path
    pairs: list[Pair]
    unmatched_ir: list[Path] = field(default_factory=list)
    unmatched_vis: list[Path] = field(default_factory=list)
    # a second file with the same stem in one folder (a.png and a.jpg): the first in sorted order is used
    duplicates: list[Path] = field(default_factory=list)


def _find_layout(root: Path) -> tuple[Path, Path]:
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: is not a folder")
    subdirs = {p.name.lower(): p for p in sorted(root.iterdir()) if p.is_dir()}
    for ir_name, vis_name in LAYOUTS:
        if ir_name in subdirs and vis_name in subdirs:
            return subdirs[ir_name], subdirs[vis_name]
    raise InputError(f"{root}: no infrared/visible folders found (looked for {_LAYOUT_TEXT}); "
                     "give the folders with --ir-dir and --vis-dir")


def index_images(folder: Path, recursive: bool = False) -> tuple[dict[str, Path], list[Path]]:
    """Map 'subdir/stem' ('stem' when not recursive) -> file for the images in `folder` (READ_EXTENSIONS,
    any case; dot-files skipped); also return the same-stem duplicates (the first in sorted order is kept).
    The one stem index: pairs, the evaluator's fused folders and the benchmarks' baselines all use it."""
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = folder.rglob("*") if recursive else folder.iterdir()
    index: dict[str, Path] = {}
    duplicates = []
    for path in sorted(files):
        rel = path.relative_to(folder)
        # dot-files are editor and OS leftovers, or our own temporaries from an interrupted write
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in READ_EXTENSIONS:
            continue
        if not path.is_file():
            continue
        key = rel.with_suffix("").as_posix()
        if key in index:
            duplicates.append(path)
        else:
            index[key] = path
    return index, duplicates


def find_pairs(root: str | Path | None = None, *, ir_dir: str | Path | None = None,
               vis_dir: str | Path | None = None, recursive: bool = False) -> PairSet:
    """Pair the images under `root` (one of LAYOUTS) or in explicit ir_dir/vis_dir by stem.

    Pairs come in sorted order of their relative stem, so every run and every shard sees the same list.
    With recursive, subfolders are searched and matched by relative path ('a/001' with 'a/001').
    """
    if (ir_dir is None) != (vis_dir is None):
        raise InputError("give both the infrared and the visible folder (--ir-dir and --vis-dir), or neither")
    if ir_dir is not None:
        ir_dir, vis_dir = Path(ir_dir), Path(vis_dir)
        where = f"{ir_dir} and {vis_dir}"
    elif root is not None:
        ir_dir, vis_dir = _find_layout(Path(root))
        where = str(root)
    else:
        raise InputError("give a folder of pairs, or --ir-dir and --vis-dir")
    ir_index, ir_dups = index_images(ir_dir, recursive)
    vis_index, vis_dups = index_images(vis_dir, recursive)
    matched = sorted(ir_index.keys() & vis_index.keys())
    pairs = [Pair(Path(key).name, ir_index[key], vis_index[key], key) for key in matched]
    if not pairs:
        kinds = "/".join(e[1:] for e in READ_EXTENSIONS)
        raise InputError(f"{where}: no image pairs found (looked for {kinds} files with the same name in "
                         f"{ir_dir.name}/ and {vis_dir.name}/{', recursively' if recursive else ''})")
    return PairSet(
        ir_dir=ir_dir,
        vis_dir=vis_dir,
        pairs=pairs,
        unmatched_ir=[ir_index[k] for k in sorted(ir_index.keys() - vis_index.keys())],
        unmatched_vis=[vis_index[k] for k in sorted(vis_index.keys() - ir_index.keys())],
        duplicates=sorted(ir_dups + vis_dups),
    )


def parse_shard(text: str) -> tuple[int, int]:
    """Parse 'i/n' (1-based: i in 1..n) as used by --shard; '2/4' is the second of four slices."""
    parts = text.strip().split("/")
    try:
        i, n = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"shard {text!r} is not of the form i/n (e.g. 2/4)") from None
    if n < 1 or not 1 <= i <= n:
        raise InputError(f"shard {text!r} is out of range: need 1 <= i <= n (i is 1-based)")
    return i, n


def shard(pairs: list[Pair], i: int, n: int) -> list[Pair]:
    """The i-th (1-based) of n contiguous slices of `pairs`.

    The slices are disjoint, cover the list, and differ in length by at most one; a shard may be empty
    when there are fewer pairs than shards.
    """
    if n < 1 or not 1 <= i <= n:
        raise InputError(f"shard {i}/{n} is out of range: need 1 <= i <= n (i is 1-based)")
    start, stop = (i - 1) * len(pairs) // n, i * len(pairs) // n
    return pairs[start:stop]
