"""The swinfuse checkpoint: one safetensors file, its header carrying the config and provenance as JSON.

Loading reads the metadata, rebuilds the config, builds the model and checks every key and shape before
`load_state_dict(strict=True)`; nothing is ever unpickled (nanoGPT's `model_args` idea without pickle).
Weights saved under an older module layout are renamed on load (`swinfuse.model.keys`), so every checkpoint
ever shipped keeps loading; the format version stays 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import torch

from swinfuse.errors import CheckpointError, ConfigError, SwinfuseError
from swinfuse.model.config import FusionConfig, TextEncoderSpec
from swinfuse.model.header import FORMAT, FORMAT_VERSION, file_sha256, header_metadata  # noqa: F401 (re-exported)
from swinfuse.model.keys import remap_state_dict


def _persisted_state(model) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if model.config.text.kind == "clip":
        # A frozen pretrained CLIP is rebuilt from its spec, not copied into every checkpoint.
        state = {k: v for k, v in state.items() if not k.startswith("text_encoder.")}
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_checkpoint(model, path: str | os.PathLike, provenance: dict | None = None) -> Path:
    """Write model weights + config + provenance atomically (temporary file, then rename). A symlink is
    written through (weights/swinfuse-default.safetensors links to the package's copy), not replaced."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": model.config.to_json(),
                "provenance": json.dumps(provenance or {}, sort_keys=True, default=str)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(_persisted_state(model), tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The header of a swinfuse checkpoint: config (FusionConfig), provenance (dict), format version."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"weights path is a directory, not a file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # safetensors raises its own error types for a bad header
        raise CheckpointError(f"{path} is not a safetensors file (a swinfuse checkpoint is one)") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a swinfuse checkpoint (no swinfuse metadata in its header)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {meta.get('format_version')!r}; "
                              f"this swinfuse reads version {FORMAT_VERSION}")
    try:
        config = FusionConfig.from_json(meta["config"])
        provenance = json.loads(meta.get("provenance", "{}"))
    except (KeyError, ConfigError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} has an unreadable config: {exc}") from None
    return {"config": config, "provenance": provenance, "format_version": meta["format_version"]}


_INITIALISERS = ("normal_", "uniform_", "trunc_normal_", "constant_", "zeros_", "ones_", "xavier_uniform_",
                 "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_")


@contextlib.contextmanager
def _initialisers_skipped(skip: bool = True):
    """torch.nn.init's initialisers return their tensor untouched while a model is built whose every persistent
    weight the checkpoint then sets (load_checkpoint checks that each one is there): drawing them first is
    wasted, ~55 ms of a cold `swinfuse fuse`, most of it the text encoder's 49,408-row token table drawn twice.
    Buffers a module computes (masks, indices) are not made by these functions and stay as built."""
    saved = {name: getattr(torch.nn.init, name) for name in _INITIALISERS if hasattr(torch.nn.init, name)} if skip else {}
    try:
        for name in saved:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                    expect_text: TextEncoderSpec | None = None):
    """-> (model in eval mode on `device`, meta dict with config, provenance, sha256, path).

    The model computes the reference way; `swinfuse.model.cpu_inference.enable_cpu_inference` switches it to the
    CPU inference computation (same outputs), as `swinfuse.api.load_model` does for every command."""
    from safetensors.torch import load_file

    from swinfuse.model.network import SwinFuse

    path = Path(path)
    meta = read_metadata(path)
    config: FusionConfig = meta["config"]
    if expect_text is not None and expect_text != config.text:
        raise CheckpointError(f"{path} was trained with text encoder {config.text.to_json()}, "
                              f"not {expect_text.to_json()}; a checkpoint only works with its own text encoder")
    try:
        with _initialisers_skipped(config.text.kind != "clip"):  # a CLIP encoder's weights are not in the file
            model = SwinFuse(config)
    except SwinfuseError as exc:
        raise CheckpointError(f"{path}: cannot build its model: {exc}") from None
    state = remap_state_dict(load_file(str(path)))
    expected = _persisted_state(model)
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"{path} lacks weight {key!r} (model expects shape {tuple(tensor.shape)})")
        if state[key].shape != tensor.shape:
            raise CheckpointError(f"{path}: weight {key!r} has shape {tuple(state[key].shape)}, "
                                  f"model expects {tuple(tensor.shape)}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise CheckpointError(f"{path} has weight {extra[0]!r} that its config's model does not have "
                              f"({len(extra)} unexpected in all)")
    model.load_state_dict(state, strict=config.text.kind != "clip")
    model.to(device).eval()
    meta.update(sha256=file_sha256(path), path=str(path))
    return model, meta
