"""CLIP's byte-level BPE tokenizer (the one open_clip's SimpleTokenizer implements, with its default 'lower'
cleaning), built lazily: the same token ids, without the cost of building it up front.

open_clip.tokenizer builds a SimpleTokenizer when it is imported and the compact encoder built another: both
parse all 48,894 merges of the vocabulary file and import ftfy and regex, 0.4 s of a cold `swinfuse fuse`
whose prompt is usually empty (two fixed ids) or a few words. Here nothing is read until a prompt has a word:
then only the part of open_clip's packaged vocabulary file the tokenizer uses is decompressed (its first
48,895 lines), into a merge-rank table and the vocabulary's ids, once per process. ftfy (open_clip's first
cleaning step) is imported only for text it could change: printable ASCII without '&' it leaves as it is.

The vocabulary, as CLIP defines it: the 256 byte symbols (bytes mapped to printable characters), the same
with the end-of-word marker '</w>', one symbol per merge (its two parts joined), then <start_of_text> and
<end_of_text>. tests/test_bpe.py checks the ids against open_clip's SimpleTokenizer.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import zlib

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"  # inside the open_clip package
MERGES = 49152 - 256 - 2  # merges the tokenizer uses: the first lines after the file's header line
END_OF_WORD = "</w>"
START, END = "<start_of_text>", "<end_of_text>"
VOCAB_SIZE = 2 * 256 + MERGES + 2  # 49408
START_ID, END_ID = VOCAB_SIZE - 2, VOCAB_SIZE - 1


def vocab_path() -> str:
    """open_clip's vocabulary file, found without importing open_clip; where a release keeps it elsewhere, the
    path its tokenizer module gives (importing that module, which is slower but finds it)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("open_clip is not installed (its BPE vocabulary is the compact text encoder's)")
    path = os.path.join(spec.submodule_search_locations[0], VOCAB_FILE)
    if os.path.isfile(path):
        return path
    from swinfuse.model.light_import import light_import

    return light_import("open_clip", "tokenizer").default_bpe()


@functools.lru_cache(maxsize=None)
def byte_symbols() -> tuple[str, ...]:
    """The character that stands for each byte value, indexed by byte: printable Latin-1 bytes stand for
    themselves; the others (control characters, space, no-break space, soft hyphen) for chr(256 + n), n
    counting them in byte order, so no symbol is whitespace."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    symbols, others = {b: chr(b) for b in printable}, [b for b in range(256) if b not in printable]
    symbols.update({b: chr(256 + n) for n, b in enumerate(others)})
    return tuple(symbols[b] for b in range(256))


def _byte_order() -> list[str]:
    """The byte symbols in vocabulary order (printable bytes first, then the others), so the first 256 ids."""
    symbols = byte_symbols()
    return sorted(symbols, key=lambda s: (ord(s) >= 256, ord(s)))


def _merge_lines(path: str) -> list[str]:
    """The file's merge lines ('a b') the tokenizer uses, decompressing no further than needed."""
    inflate, chunks, newlines = zlib.decompressobj(wbits=31), [], 0  # wbits 31: a gzip stream
    with open(path, "rb") as f:
        while newlines <= MERGES:
            block = f.read(1 << 16)
            if not block:
                chunks.append(inflate.flush())
                break
            chunks.append(inflate.decompress(block))
            newlines += chunks[-1].count(b"\n")
    data = b"".join(chunks)
    if newlines > MERGES:
        data = data[:data.rindex(b"\n")]  # whole lines only: a cut may fall inside a multi-byte character
    return data.decode("utf-8").split("\n", MERGES + 1)[1:MERGES + 1]


class Vocabulary:
    """The merge ranks and token ids, read from the vocabulary file (tens of milliseconds, once)."""

    def __init__(self, path: str):
        import regex

        lines = _merge_lines(path)
        if len(lines) != MERGES:
            raise ValueError(f"{path}: {len(lines)} merges, expected {MERGES}")
        self.ranks = dict(zip(lines, range(MERGES)))  # 'a b' -> rank (a symbol never holds whitespace)
        order = _byte_order()
        self.ids = {s: i for i, s in enumerate(order)}
        self.ids.update({s + END_OF_WORD: 256 + i for i, s in enumerate(order)})
        joined = "\n".join(lines).replace(" ", "").split("\n")  # each merge's symbol ('a b' -> 'ab')
        self.ids.update(zip(joined, range(512, 512 + MERGES)))
        self.ids.update({START: START_ID, END: END_ID})
        # CLIP's pre-tokenization: a special token, a contraction, a run of letters, one digit, a run of
        # other non-space characters. Case-insensitive as CLIP compiles it (it matters for a few characters
        # whose case variant is a letter).
        self.pattern = regex.compile(START + "|" + END + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                                     r"""[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
        self.words: dict[str, tuple[int, ...]] = {START: (START_ID,), END: (END_ID,)}

    def word_ids(self, word: str) -> tuple[int, ...]:
        """One pre-token (already in byte symbols) -> its ids: the word's symbols, the last one marked as the
        end of the word, merged pair by pair, the lowest-ranked adjacent pair first, every occurrence of it
        left to right, until no adjacent pair has a rank."""
        known = self.words.get(word)
        if known is not None:
            return known
        symbols = [*word[:-1], word[-1] + END_OF_WORD]
        while len(symbols) > 1:
            ranked = [(self.ranks.get(f"{a} {b}"), a, b) for a, b in zip(symbols, symbols[1:])]
            ranked = [r for r in ranked if r[0] is not None]
            if not ranked:
                break
            _, first, second = min(ranked)
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids = self.words[word] = tuple(self.ids[s] for s in symbols)
        return ids


@functools.lru_cache(maxsize=None)
def vocabulary(path: str | None = None) -> Vocabulary:
    """The vocabulary, built on first use and kept for the process."""
    return Vocabulary(path or vocab_path())


def clean(text: str) -> str:
    """CLIP's 'lower' cleaning: ftfy's fixes, HTML entities unescaped twice, whitespace runs made one space,
    lower case. Printable ASCII without '&' skips ftfy and the unescaping, which leave it unchanged (ftfy's
    fixes concern non-ASCII text, control characters, escape sequences and entities; tests/test_bpe.py)."""
    if not (text.isascii() and text.isprintable() and "&" not in text):
        import html

        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


def encode(text: str) -> list[int]:
    """A text -> its token ids, without the start and end tokens (SimpleTokenizer.encode's ids). The empty
    text needs no vocabulary."""
    text = clean(text) if text else ""
    if not text:
        return []
    vocab = vocabulary()
    symbols = byte_symbols()
    ids: list[int] = []
    for word in vocab.pattern.findall(text):
        ids.extend(vocab.word_ids("".join(symbols[b] for b in word.encode("utf-8"))))
    return ids


def context_rows(ids: list[list[int]], context_length: int) -> list[list[int]]:
    """Each text's ids framed by the start and end tokens, cut to context_length (the last kept one made the
    end token, as CLIP truncates) and padded with 0 -> rows of context_length ids."""
    rows = []
    for seq in ids:
        row = [START_ID, *seq, END_ID]
        if len(row) > context_length:
            row = row[:context_length - 1] + [END_ID]
        rows.append(row + [0] * (context_length - len(row)))
    return rows
