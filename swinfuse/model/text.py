"""Text encoders: a prompt becomes one vector per image, (B, D), as Text-IF feeds its FiLM layers.

- CompactTextEncoder: open_clip's own text tower (causal transformer, EOT pooling) at a small width with
  open_clip's BPE tokenizer, which ships inside the package, so it works offline (swinfuse.model.tokens: loaded
  only for a prompt with words). Trained with the fusion network; its weights live in the swinfuse checkpoint.
- ClipTextEncoder: a frozen pretrained open_clip model, by name + tag or a local weights file. Nothing is
  downloaded unless a tag is asked for and is not in the cache; with no network (or HF_HUB_OFFLINE) that
  fails at once, saying what to do. The spec must name the weights (TextEncoderSpec refuses an empty
  tag); 'random' builds the model untrained from a fixed seed, on purpose. Every failure is one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import types
import warnings

import torch
from torch import nn

from swinfuse.errors import TextEncoderError
from swinfuse.model import tokens
from swinfuse.model.config import CLIP_RANDOM, TextEncoderSpec
from swinfuse.model.light_import import light_import

VOCAB_SIZE = tokens.VOCAB_SIZE  # open_clip's BPE vocabulary


def open_clip_text_transformer() -> types.ModuleType:
    """open_clip's transformer module, without open_clip's __init__ (swinfuse.model.light_import): the compact
    encoder needs that file, not every model family. Its one import from open_clip.utils (which imports
    torchvision) stands in until called; the text tower never calls it. The tokenizer is open_clip's, through
    swinfuse.model.tokens (its module builds a tokenizer as it is imported: only for a prompt with words)."""
    forwarded = {"utils": ("to_2tuple", "feature_take_indices")}
    return light_import("open_clip", "transformer", forwarded)


class CompactTextEncoder(nn.Module):
    def __init__(self, spec: TextEncoderSpec, text_dim: int):
        super().__init__()
        TextTransformer = open_clip_text_transformer().TextTransformer

        self.context_length = spec.context_length
        self.transformer = TextTransformer(context_length=spec.context_length, vocab_size=VOCAB_SIZE,
                                           width=spec.width, heads=spec.heads, layers=spec.layers,
                                           output_dim=text_dim)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        """N prompts -> (N, context_length) token ids, as open_clip's tokenizer gives them (truncated with a
        warning when a prompt is longer)."""
        rows, lengths = tokens.token_rows(prompts, self.context_length)
        for p, n in zip(prompts, lengths):
            if n > self.context_length:
                warnings.warn(f"prompt has {n} tokens, more than the text encoder's {self.context_length}: "
                              f"truncated: {p[:60]!r}", stacklevel=3)
        return rows

    def forward(self, prompts: list[str]) -> torch.Tensor:
        """list of N prompts -> (N, D)."""
        tokens = self.tokenize(prompts).to(self.transformer.positional_embedding.device)
        return self.transformer(tokens)  # (N, D)


class ClipTextEncoder(nn.Module):
    def __init__(self, spec: TextEncoderSpec, text_dim: int):
        super().__init__()
        import open_clip

        if spec.model_name not in open_clip.list_models():
            raise TextEncoderError(f"unknown open_clip model {spec.model_name!r}; see open_clip.list_models() "
                                   f"(e.g. 'ViT-B-32', 'ViT-B-16', 'RN50')")
        embed_dim = open_clip.get_model_config(spec.model_name)["embed_dim"]
        if embed_dim != text_dim:
            raise TextEncoderError(f"{spec.model_name} gives {embed_dim}-d text vectors but the config's "
                                   f"text_dim is {text_dim}")
        random_init = spec.pretrained == CLIP_RANDOM  # asked for on purpose; an empty tag never gets here
        if not random_init:
            _check_available(spec.model_name, spec.pretrained)
        try:
            with _quiet_open_clip(), (_fixed_seed() if random_init else contextlib.nullcontext()):
                model = open_clip.create_model(spec.model_name, pretrained=None if random_init else spec.pretrained,
                                               load_weights=not random_init, require_pretrained=not random_init)
        except Exception as exc:  # open_clip raises RuntimeError/ValueError/OSError/... for a bad file
            raise TextEncoderError(f"cannot load CLIP {spec.model_name} from {spec.pretrained!r}: "
                                   f"{_first_line(exc)}") from None
        model.visual = nn.Identity()  # only the text tower is used; drop the image tower's memory
        model.requires_grad_(False).eval()
        self.model = model
        self.tokenizer = open_clip.get_tokenizer(spec.model_name)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # frozen: never leave eval mode
        return self

    def forward(self, prompts: list[str]) -> torch.Tensor:
        """list of N prompts -> (N, D), pooled and projected (not the (N, 77, D) token features)."""
        device = next(self.model.parameters()).device
        with torch.no_grad():
            return self.model.encode_text(self.tokenizer(prompts).to(device)).float()


@contextlib.contextmanager
def _fixed_seed(seed: int = 0):
    """Draw an untrained CLIP's weights from a fixed seed, leaving the caller's random state as it was: the
    checkpoint does not store a CLIP's weights, so loading must rebuild the very same ones."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class _DropOpenClipRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return f"{os.sep}open_clip{os.sep}" not in record.pathname


@contextlib.contextmanager
def _quiet_open_clip():
    """open_clip logs to the root logger ('Failed to download ...', 'Model initialized randomly'), which
    Python prints on stderr before our own one-line error says the same: hold those records back."""
    root, drop = logging.getLogger(), _DropOpenClipRecords()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _first_line(exc: BaseException) -> str:
    """One line for an exception from loading a weights file (torch's unpickling error is a page long)."""
    import pickle

    name = type(exc).__name__
    if isinstance(exc, (pickle.UnpicklingError, EOFError)) or name == "SafetensorError":
        return f"not a PyTorch or safetensors weights file ({name})"
    if isinstance(exc, StopIteration):  # open_clip looks at the first key of an empty state dict
        return "the file holds no weights"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return name
    if len(lines) > 1 and lines[0].endswith(":"):  # "Error(s) in loading state_dict for CLIP:" + the keys
        return f"{lines[0]} {lines[1]}"[:300]
    return lines[0][:300]


def _check_available(model_name: str, pretrained: str) -> None:
    """Fail at once, with what to do, when a tag is neither cached nor downloadable; download it otherwise.

    The hub is asked through huggingface_hub itself, so HF_ENDPOINT, HTTPS_PROXY and HF_HUB_OFFLINE (as
    huggingface_hub parses it: "1", "yes", "true", "on") mean what they mean to every other hub client."""
    import open_clip

    if not pretrained or os.path.isfile(pretrained):
        return
    if os.path.sep in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors")):
        raise TextEncoderError(f"CLIP weights file not found: {pretrained}")
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        raise TextEncoderError(f"unknown pretrained tag {pretrained!r} for {model_name}; valid tags: {', '.join(tags)}")
    repo, names = _hub_files(open_clip.get_pretrained_cfg(model_name, pretrained))
    if not repo or _cached(repo, names):
        return  # no hub entry: open_clip downloads from the tag's URL itself
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError)

    def not_cached(why: str) -> TextEncoderError:
        return TextEncoderError(
            f"CLIP weights {model_name}/{pretrained} are not cached and cannot be downloaded ({why}); pass a "
            f"local weights file as the pretrained value, or download once with network into the cache "
            f"({constants.HF_HUB_CACHE})")

    if constants.HF_HUB_OFFLINE:
        raise not_cached("HF_HUB_OFFLINE is set")
    for name in names:
        try:
            hf_hub_download(repo, name)  # into the cache, where open_clip finds it
            return
        except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:  # not cached, and the hub unreachable
            raise not_cached(f"{constants.ENDPOINT} cannot be reached: {str(exc).splitlines()[0]}") from None
        except EntryNotFoundError:
            continue  # the repository has the other file name
        except RepositoryNotFoundError:
            raise TextEncoderError(f"CLIP weights {model_name}/{pretrained}: repository {repo} is not on "
                                   f"{constants.ENDPOINT} (or needs a login)") from None
    raise TextEncoderError(f"CLIP weights {model_name}/{pretrained}: none of {', '.join(names)} is in {repo} "
                           f"on {constants.ENDPOINT}")


def _hub_files(cfg: dict) -> tuple[str, list[str]]:
    """A pretrained config's hub repository and the file names open_clip looks for there, safetensors first
    (open_clip.pretrained.download_pretrained's rule: 'org/name/' or 'org/name/file.bin')."""
    repo, filename = os.path.split(cfg.get("hf_hub") or "")
    filename = filename or "open_clip_pytorch_model.bin"
    if filename == "open_clip_pytorch_model.bin":
        return repo, ["open_clip_model.safetensors", filename]
    if filename.endswith((".bin", ".pth")):
        return repo, [os.path.splitext(filename)[0] + ".safetensors", filename]
    return repo, [filename]


def _cached(repo: str, names: list[str]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo, name), str) for name in names)


def build_text_encoder(spec: TextEncoderSpec, text_dim: int) -> nn.Module:
    return CompactTextEncoder(spec, text_dim) if spec.kind == "compact" else ClipTextEncoder(spec, text_dim)
