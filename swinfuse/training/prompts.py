"""Prompt corpus for degradation-aware training (Text-IF's idea: the prompt names what to remove).

`CORPUS[kind]` holds the training phrasings, `HELD_OUT[kind]` other phrasings never trained on, used to
measure how the model does on wordings it has not seen. `augment_prompt` inserts, replaces and drops
words at random, so that the compact text encoder (whose token embeddings for words absent from the
corpus stay at their random initialisation) learns to read the keywords and ignore unknown tokens.
"""

from __future__ import annotations

import gzip
import importlib.util
import random
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

CORPUS: dict[str, tuple[str, ...]] = {
    "vis_low_light": (
        "the visible image is in extremely low light",
        "it is night and the RGB photo is very dark",
        "visible image is underexposed, brighten it",
        "the color camera picture was taken at night",
        "low light visible image",
        "enhance the dark visible image",
        "the visible photo is too dark to see details",
        "dim lighting in the visible image",
        "night scene, the daylight camera sees almost nothing",
        "please recover details from the dark rgb image",
        "the visible frame is poorly lit",
        "low-light enhancement of the visible input",
        "the optical image is very dim",
        "dark night-time visible picture",
        "the visible channel is black and underexposed",
        "increase the brightness of the visible image",
        "it is dark outside, lighten the color image",
        "nighttime low illumination in the rgb frame",
    ),
    "vis_overexposure": (
        "the visible image is overexposed",
        "the RGB photo is too bright and washed out",
        "visible image has blown out highlights",
        "strong glare in the visible picture",
        "overexposure in the color camera image",
        "reduce the brightness of the overexposed visible image",
        "the sun saturates the visible frame",
        "the visible photo is far too bright",
        "correct the over exposed rgb image",
        "bright light washes out the visible image",
        "the daylight camera image is saturated",
        "overexposed visible input, restore the details",
        "too much light in the visible picture",
        "the optical image is blinding and white",
        "headlight glare overexposes the color photo",
        "the visible image is overly bright",
    ),
    "vis_noise": (
        "the visible image is noisy",
        "remove the noise from the RGB photo",
        "the visible picture is grainy",
        "denoise the visible image",
        "gaussian noise in the color camera image",
        "the visible frame has heavy sensor noise",
        "the rgb image is corrupted by noise",
        "clean up the noisy visible photo",
        "grain and speckles in the visible picture",
        "noise in the visible image",
        "the color image looks grainy and noisy",
        "suppress the random noise of the visible input",
        "the optical camera image is full of noise",
        "visible channel noise removal",
        "the daylight photo shows a lot of grain",
        "noisy rgb frame, please denoise",
    ),
    "vis_haze": (
        "the visible image is hazy",
        "remove the haze from the RGB photo",
        "fog covers the visible picture",
        "dehaze the visible image",
        "the color camera image is foggy",
        "mist reduces visibility in the visible frame",
        "the visible photo was taken in thick fog",
        "haze in the visible image",
        "clear the fog from the rgb image",
        "smog makes the visible picture murky",
        "the optical image is washed out by haze",
        "foggy weather degrades the visible input",
        "the visible scene is misty",
        "defog the color photo",
        "hazy rgb frame with low visibility",
        "the daylight camera sees through heavy haze",
    ),
    "vis_blur": (
        "the visible image is blurry",
        "deblur the RGB photo",
        "the visible picture is out of focus",
        "motion blur in the color camera image",
        "sharpen the blurred visible image",
        "the visible frame is soft and unsharp",
        "blur in the visible image",
        "the rgb image is defocused",
        "the visible photo is smeared by camera shake",
        "remove the blur from the visible input",
        "fuzzy visible picture, restore sharp edges",
        "the optical image lacks sharpness",
        "the color photo is blurred",
        "the visible scene looks blurry and unclear",
        "defocus blur in the rgb frame",
        "the daylight camera image is not sharp",
    ),
    "ir_low_contrast": (
        "the infrared image has low contrast",
        "the thermal image is flat and dull",
        "enhance the contrast of the infrared image",
        "low contrast in the IR picture",
        "the thermal camera image is washed out and gray",
        "the infrared frame lacks contrast",
        "increase the thermal contrast",
        "targets are hard to see in the low-contrast infrared image",
        "the ir image looks faded",
        "boost the contrast of the thermal picture",
        "the heat image has weak contrast",
        "poor contrast in the infrared input",
        "the thermal picture is dim and flat",
        "infrared contrast is too low",
        "the lwir image lacks dynamic range",
        "stretch the contrast of the ir frame",
    ),
    "ir_noise": (
        "the infrared image is noisy",
        "remove the noise from the thermal image",
        "denoise the infrared image",
        "the thermal picture is grainy",
        "gaussian noise in the IR image",
        "the infrared frame has heavy sensor noise",
        "the thermal camera image is corrupted by noise",
        "noise in the infrared image",
        "clean up the noisy thermal picture",
        "the ir image is full of speckles",
        "suppress the random noise of the infrared input",
        "the heat image looks grainy",
        "noisy thermal frame, please denoise",
        "infrared channel noise removal",
        "the lwir image has a lot of noise",
        "grain in the ir picture",
    ),
    "ir_stripe_noise": (
        "remove the stripe noise from the thermal image",
        "the infrared image has stripe noise",
        "vertical stripes in the IR picture",
        "destripe the infrared image",
        "the thermal image shows column stripes",
        "fixed pattern noise in the infrared frame",
        "the ir image has vertical lines",
        "stripe artifacts in the thermal picture",
        "the infrared camera has striping",
        "column noise in the thermal image",
        "remove the vertical banding from the infrared input",
        "the heat image is striped",
        "the thermal frame has streaks in every column",
        "stripes corrupt the ir image",
        "non uniformity stripes in the infrared image",
        "the lwir picture shows vertical stripe noise",
    ),
    "none": (
        "fuse the infrared and visible images",
        "",
        "image fusion",
        "fuse the thermal and rgb images",
        "combine the infrared and visible pictures",
        "infrared and visible image fusion",
        "merge the two images",
        "fuse",
        "the images are clean, just fuse them",
        "combine thermal targets with visible texture",
        "fuse the ir and color images",
        "no degradation",
        "both images are fine",
        "a fused image of the scene",
        "keep the heat targets and the visible details",
        "normal fusion",
    ),
}

# Phrasings never used in training: other word order, other verbs, some synonyms absent from CORPUS.
HELD_OUT: dict[str, tuple[str, ...]] = {
    "vis_low_light": (
        "this photograph was captured in darkness, make the visible one brighter",
        "poor illumination: the camera picture is nearly black",
        "the rgb input suffers from low light at dusk",
        "visible frame shot at night with little light",
        "lighten up the underexposed daylight image",
    ),
    "vis_overexposure": (
        "too much exposure in the camera picture",
        "the visible shot is burnt out by sunlight",
        "tone down the overly bright rgb input",
        "highlights are clipped in the color frame because of glare",
        "the photo from the visible sensor is way too light",
    ),
    "vis_noise": (
        "there is a lot of grain in the camera photograph",
        "the visible shot contains random noise, clean it",
        "noisy color capture from the visible sensor",
        "get rid of the grainy texture in the rgb input",
        "heavy noise corrupts the daylight frame",
    ),
    "vis_haze": (
        "the scene in the camera photograph is covered by fog",
        "misty weather: clear the visible shot",
        "haze lowers the visibility of the color capture",
        "remove fog and mist from the rgb input",
        "a foggy morning makes the visible frame murky",
    ),
    "vis_blur": (
        "the camera photograph is not in focus",
        "the visible shot was taken with a shaky hand and is blurry",
        "blurred color capture, make it sharp",
        "restore the fine details of the out-of-focus rgb input",
        "the daylight frame is fuzzy",
    ),
    "ir_low_contrast": (
        "the heat map has almost no contrast",
        "thermal targets barely stand out from the background, contrast is low",
        "raise the contrast of the IR capture",
        "the infrared shot is dull and faded",
        "the lwir frame looks flat, enhance its contrast",
    ),
    "ir_noise": (
        "the heat map is grainy and noisy",
        "get rid of noise in the IR capture",
        "thermal shot with a lot of random noise",
        "the infrared sensor output is noisy, clean it",
        "denoise the lwir frame",
    ),
    "ir_stripe_noise": (
        "the heat map is covered with vertical stripes",
        "striping artifacts in the IR capture",
        "there are column stripes across the thermal shot",
        "fix the fixed-pattern stripe noise of the infrared sensor",
        "the lwir frame has stripes in it",
    ),
    "none": (
        "merge the thermal and the visible photographs",
        "produce one fused picture from both inputs",
        "blend infrared and rgb",
        "fusion of the two clean captures",
        "just combine the two frames",
    ),
}

# Words that carry the meaning: augmentation never drops or replaces them.
KEYWORDS = frozenset("""
visible rgb color colour optical daylight camera photo picture image frame input
infrared thermal ir lwir heat
dark night low light dim underexposed lighten brighten brightness illumination nighttime black poorly lit
overexposed overexposure bright glare washed saturated highlights blown exposed sun white blinding
noise noisy grain grainy denoise speckles sensor gaussian
haze hazy fog foggy mist misty smog dehaze defog murky visibility
blur blurry blurred deblur focus sharp sharpen sharpness defocus defocused smeared fuzzy unsharp shake motion
contrast flat dull faded gray dynamic
stripe stripes striped striping destripe column vertical lines banding streaks pattern uniformity
fuse fusion combine merge clean fine degradation
""".split())

_FALLBACK_WORDS = tuple("""
table yesterday river quickly orange window music garden happy paper seven mountain coffee slowly
market yellow doctor pencil summer kitchen animal bridge letter silver travel island engine rabbit
""".split())


@lru_cache(maxsize=1)
def _word_pool() -> tuple[str, ...]:
    """Whole English words from open_clip's BPE vocabulary (about 12k of its 20k first merges): a large
    pool, so each word is seen rarely and the encoder learns to ignore unfamiliar tokens in general rather
    than a few fixed fillers. Read from the vocabulary file directly: importing open_clip takes seconds."""
    try:
        spec = importlib.util.find_spec("open_clip")
        path = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"
        merges = gzip.open(path).read().decode("utf-8").split("\n")[1:20001]
    except (AttributeError, TypeError, OSError):  # open_clip missing or its vocabulary file unreadable
        return _FALLBACK_WORDS
    words = (m.replace(" ", "")[:-4] for m in merges if m.endswith("</w>"))
    pool = tuple(w for w in words if w.isalpha() and w.isascii() and 3 <= len(w) <= 10 and w not in KEYWORDS)
    return pool or _FALLBACK_WORDS


def _rand(rng) -> float:
    return float(rng.random())


def _choice(rng, seq):
    if isinstance(rng, np.random.Generator):
        return seq[int(rng.integers(len(seq)))]
    return seq[rng.randrange(len(seq))]


def augment_prompt(text: str, rng: np.random.Generator | random.Random, p: float = 0.5) -> str:
    """With probability p, perturb `text` by 1-3 edits: insert a random word, replace a non-keyword with a
    random word, or drop a non-keyword."""
    if _rand(rng) >= p:
        return text
    words = text.split()
    n_edits = 1 + int(_rand(rng) * 3)
    for _ in range(n_edits):
        op = _rand(rng)
        free = [i for i, w in enumerate(words) if re.sub(r"\W", "", w.lower()) not in KEYWORDS]
        if op < 0.5 or not free:
            words.insert(int(_rand(rng) * (len(words) + 1)), _choice(rng, _word_pool()))
        elif op < 0.75:
            words[_choice(rng, free)] = _choice(rng, _word_pool())
        else:
            del words[_choice(rng, free)]
    return " ".join(words)


def sample_prompt(kind: str, rng: np.random.Generator | random.Random, augment: float = 0.0) -> str:
    """A training phrasing of `kind`, perturbed by `augment_prompt` with probability `augment`."""
    if kind not in CORPUS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {list(CORPUS)}")
    text = _choice(rng, CORPUS[kind])
    return augment_prompt(text, rng, augment) if augment > 0 else text


def canonical_prompt(kind: str) -> str:
    """The first phrasing of each kind: what validation uses."""
    return CORPUS[kind][0]
