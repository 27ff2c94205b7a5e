"""swinfuse.model.bpe, the compact encoder's tokenizer: open_clip's SimpleTokenizer's ids, built lazily (issue 21)."""

import random
import subprocess
import sys

import pytest

from swinfuse.model import bpe

PROMPTS = [
    "",
    "   ",
    "fuse the infrared and visible images",
    "The visible image is in EXTREMELY low light.",
    "don't we'll they're I'm you've she'd it's",
    "f16 2x 1080p 3.14 1,000,000 ½ ² ٣",
    "Ünïcödé 東京 café naïve İstanbul ǅ ß ﬁx ＬＯＵＤ",
    "“curly” ‘quotes’ — dashes… and emoji 🔥🌫️👍🏽 e\u0301 \u0345",
    "sÃ³ voilÃ le travail âœ” No problems",  # mojibake ftfy repairs
    "&amp;amp; &lt;b&gt; &#x2019; &hellip; AT&T",
    "tab\there\nnew line\r\n\x07bell \x1b[31mred\x1b[0m \x00nul \x7f",
    "<start_of_text> a <END_OF_TEXT> <end_of_text>",
    "مرحبا بالعالم שלום עולם Привет мир Γειά σου",
    "the visible image was taken at night in extremely low light with heavy noise, stripes, haze and blur "
    "while the infrared camera saw people and cars through smoke, please fix every one of these carefully",
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 300,
]


@pytest.fixture(scope="module")
def reference():
    tokenizer = pytest.importorskip("open_clip.tokenizer")
    return tokenizer


def test_ids_are_open_clips(reference):
    ref = reference.SimpleTokenizer()
    for text in PROMPTS:
        assert bpe.encode(text) == ref.encode(text), text


def test_encoder_rows_are_open_clips_with_truncation(reference):
    import warnings

    import torch

    from swinfuse.model.config import TextEncoderSpec
    from swinfuse.model.text import CompactTextEncoder

    ref = reference.SimpleTokenizer()
    for context_length in (2, 8, 32, 77):
        enc = CompactTextEncoder(TextEncoderSpec(width=16, layers=1, heads=2, context_length=context_length), 8)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = enc.tokenize(PROMPTS)
        expected = reference.SimpleTokenizer(context_length=context_length)(PROMPTS)
        assert rows.dtype == torch.long and torch.equal(rows, expected)
        too_long = sum(len(ref.encode(p)) + 2 > context_length for p in PROMPTS)
        assert len([w for w in caught if "truncated" in str(w.message)]) == too_long


def test_vocabulary_is_open_clips(reference):
    ref = reference.SimpleTokenizer()
    vocab = bpe.vocabulary()
    assert vocab.ids == ref.encoder
    assert vocab.ranks == {" ".join(pair): rank for pair, rank in ref.bpe_ranks.items()}
    assert len(ref.encoder) == bpe.VOCAB_SIZE
    assert (bpe.START_ID, bpe.END_ID) == (ref.sot_token_id, ref.eot_token_id)
    assert list(bpe.byte_symbols()) == [reference.bytes_to_unicode()[b] for b in range(256)]


def test_random_words_are_open_clips(reference):
    # Random strings over letters of several scripts, digits, punctuation and spaces: merges in every order.
    ref = reference.SimpleTokenizer()
    alphabet = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 .,;'!?-_/()éüßøñçå東京語ЖжΩω"
    rng = random.Random(0)
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        assert bpe.encode(text) == ref.encode(text), text


def test_printable_ascii_skips_ftfy_as_it_would_change_nothing(reference):
    # clean() leaves out ftfy and the HTML unescaping for printable ASCII without '&': both are no-ops there.
    import ftfy

    open_clip_clean = reference.SimpleTokenizer().clean_fn  # clean='lower', the compact encoder's
    rng = random.Random(1)
    printable = "".join(chr(c) for c in range(32, 127) if chr(c) != "&")
    texts = [printable, "<b>not html</b> ; #x27 lt; \\x1b[31m"]
    texts += ["".join(rng.choice(printable) for _ in range(rng.randint(1, 60))) for _ in range(500)]
    for text in texts:
        assert ftfy.fix_text(text) == text
        assert bpe.clean(text) == open_clip_clean(text)
    for text in PROMPTS:  # the other path too
        assert bpe.clean(text) == open_clip_clean(text)


def test_vocabulary_file_is_read_only_as_far_as_needed():
    lines = bpe._merge_lines(bpe.vocab_path())
    assert len(lines) == bpe.MERGES
    assert lines[0] == "i n"
    assert all(line.count(" ") == 1 and len(line.split()) == 2 for line in lines)  # what the rank keys assume


def test_a_vocabulary_file_kept_elsewhere_is_found_through_open_clips_tokenizer(monkeypatch, reference):
    # A release that moves the file: open_clip's own tokenizer module says where it is.
    monkeypatch.setattr(bpe, "VOCAB_FILE", "moved/bpe_simple_vocab_16e6.txt.gz")
    assert bpe.vocab_path() == reference.default_bpe()


def test_an_empty_prompt_needs_no_vocabulary_ftfy_regex_or_open_clips_tokenizer():
    """The default prompt is empty: building the compact encoder and encoding it reads no vocabulary and imports
    neither ftfy, regex nor open_clip's tokenizer module (which builds a tokenizer as it is imported); a prompt
    with a word then builds the vocabulary, once."""
    code = (
        "import sys; from swinfuse.model import bpe; from swinfuse.model.config import TextEncoderSpec; "
        "from swinfuse.model.text import CompactTextEncoder; "
        "enc = CompactTextEncoder(TextEncoderSpec(width=16, layers=1, heads=2, context_length=8), 8); "
        "enc(['', '']); "
        "loaded = lambda: sorted(m for m in sys.modules if m in ('ftfy', 'regex') or m.endswith('open_clip.tokenizer')); "
        "print(bpe.vocabulary.cache_info().currsize, loaded()); "
        "enc(['plain words']); print(bpe.vocabulary.cache_info().currsize, loaded()); "
        "enc(['naïve']); print(bpe.vocabulary.cache_info().currsize, loaded())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["0 []", "1 ['regex']", "1 ['ftfy', 'regex']"]
