"""Prompts -> token ids for the compact text encoder, by open_clip's own BPE tokenizer, loaded only when a
prompt has words.

Importing open_clip's tokenizer module builds its tokenizer (every merge of the vocabulary parsed, ftfy and
regex imported: about 0.2 s), and `swinfuse fuse`'s default prompt is empty. An empty (or all-whitespace)
prompt is the start and end tokens and padding, whatever the vocabulary, so it needs none of that; any other
prompt goes through the module's `tokenize`, the tokenizer the module built, so it is built once per process.
tests/test_text.py checks the empty row against open_clip's.
"""

from __future__ import annotations

import functools
import types

import torch

from swinfuse.model.light_import import light_import

VOCAB_SIZE = 49408  # open_clip's BPE vocabulary: 256 bytes, the same with an end-of-word mark, 48,894 merges, 2
START_ID, END_ID = VOCAB_SIZE - 2, VOCAB_SIZE - 1  # <start_of_text>, <end_of_text>: the last two ids


@functools.lru_cache(maxsize=None)
def open_clip_tokenizer() -> types.ModuleType:
    """open_clip's tokenizer module (without open_clip's __init__, see light_import), imported on first use."""
    return light_import("open_clip", "tokenizer")


def token_rows(prompts: list[str], context_length: int) -> tuple[torch.Tensor, list[int]]:
    """N prompts -> ((N, context_length) token ids as open_clip's tokenizer gives them, truncated the same way,
    and each prompt's length in tokens, start and end included, before truncation)."""
    rows = torch.zeros(len(prompts), context_length, dtype=torch.long)
    lengths = [2] * len(prompts)
    worded = [i for i, p in enumerate(prompts) if p.strip()]
    if worded:
        tokenize = open_clip_tokenizer().tokenize
        texts = [prompts[i] for i in worded]
        full = tokenize(texts, context_length=max(context_length, 1024))  # untruncated, to count
        rows[worded] = tokenize(texts, context_length=context_length)
        for i, row in zip(worded, full):
            lengths[i] = int((row != 0).sum())
    empty = sorted(set(range(len(prompts))) - set(worded))
    rows[empty, 0] = START_ID
    if context_length > 1:
        rows[empty, 1] = END_ID
    return rows, lengths
