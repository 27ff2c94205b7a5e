"""Where fused images go and whether they can go there, checked before any work: output names
(`<stem>_fused.png`, one per prompt), writable formats and bit depths, never over a source image, never into
an input folder. Only the standard library is imported at the top (swinfuse.data.io when a check runs)."""

from __future__ import annotations

import re
from pathlib import Path

from swinfuse.errors import OutputError


def _slug(prompt: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:limit].rstrip("-")
    return slug or "empty"


def _is_folder(output: Path) -> bool:
    """-o names a folder when it is one, or when it does not exist and has no extension (it is created)."""
    return output.is_dir() or (not output.suffix and not output.exists())


def output_paths(stem: str, prompts: list[str], output: Path | None) -> list[Path]:
    """Where each prompt's result goes. `output` is a file, or a folder that receives `<stem>_fused.png`
    (None: that name here). For several prompts each name gets `_p<k>-<slug>`, k counted from 1 and the slug
    taken from the prompt."""
    name = f"{stem}_fused.png"
    if output is None:
        base = Path(name)
    else:
        base = Path(output) / name if _is_folder(Path(output)) else Path(output)
    if len(prompts) == 1:
        return [base]
    return [base.with_name(f"{base.stem}{prompt_suffix(k, p)}{base.suffix}") for k, p in enumerate(prompts, 1)]


def prompt_suffix(k: int, prompt: str) -> str:
    """What the k-th (from 1) of several prompts adds to an output's name: `_p<k>-<slug>`."""
    return f"_p{k}-{_slug(prompt)}"


def check_output(path: Path, bit_depth: int | None) -> None:
    """Reject an output path that cannot be written as asked, before any work is done."""
    from swinfuse.data.io import READ_EXTENSIONS, output_bit_depth
    if path.is_dir():
        raise OutputError(f"{path}: is an existing directory, expected an output file path")
    if path.suffix.lower() not in READ_EXTENSIONS:
        raise OutputError(f"{path}: unsupported output format {path.suffix or '(no extension)'!r} "
                          "(use .png, .jpg, .bmp or .tif)")
    output_bit_depth(path, bit_depth, 8)  # an explicit 16-bit JPEG fails here
    check_writable_folder(path.parent, path)


def same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def check_not_a_source(path: Path, sources: tuple[Path, ...]) -> None:
    if any(same_file(path, source) for source in sources):
        raise OutputError(f"{path}: output would overwrite an input image")


def check_not_an_input_folder(output_dir: Path, *inputs: Path) -> None:
    """Refuse an output folder that is an input folder or inside one, before anything is written there: its
    outputs would replace sources of the same name, or be taken for sources by the next run."""
    out = output_dir.resolve()
    for folder in inputs:
        folder = folder.resolve()
        if out == folder or folder in out.parents:
            raise OutputError(f"{output_dir}: is {'' if out == folder else 'inside '}the input folder {folder}; "
                              "choose another -o")


def check_writable_folder(folder: Path, target: Path | None = None) -> None:
    """Refuse a folder that cannot be written into (or created), before any work, creating nothing: the nearest
    existing folder on its path must be writable (os.access: permissions and read-only file systems). target:
    the file to be written there, which the message then names."""
    import os

    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{folder}: cannot create it: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        if target is not None:
            raise OutputError(f"{target}: folder {existing} is not writable")
        raise OutputError(f"{folder}: {'folder' if existing == Path(folder) else f'its folder {existing}'} is not "
                          "writable")


def make_output_folder(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{output_dir}: cannot create the output folder ({e.strerror or e})") from None
