"""The samples a run trains and validates on (Text-IF's recipe): a training folder drawn by weight, a pair of
it, a random crop (rescaled, flipped, intensity-jittered: `sampling.py`), one of the 9 degradation kinds
applied to the inputs and a phrasing of that kind as the prompt; the clean sources are the target.

Sample i of step s comes from its own generator seeded by (seed, s, i), and rank r of N builds the samples
r, r + N, ... of the global batch (DistributedSampler-style): a run sees the same data for any number of
processes, and a resumed run continues exactly. Validation: the last `val_count` stems of the first folder
(its own camera), degraded deterministically per kind, and every `val_data` folder whole (other cameras)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from swinfuse.errors import InputError
from swinfuse.training.degrade import KIND_NAMES, degrade, degrade_fixed
from swinfuse.training.prompts import sample_prompt
from swinfuse.training.sampling import Augment, DataSpec, WeightedPairs, as_specs, folder_pairs, load_pairs, random_crop

Pairs = list[tuple[str, Path, Path]]  # (stem, ir_path, vis_path), sorted by stem


def split_pairs(root: str | Path, val_count: int) -> tuple[Pairs, Pairs]:
    """Matched (stem, ir_path, vis_path) sorted by stem -> (train, val): the last `val_count` are val."""
    pairs = folder_pairs(root)
    if len(pairs) <= val_count:
        raise InputError(f"{root} has {len(pairs)} pairs: not enough for {val_count} validation pairs and training")
    return pairs[:len(pairs) - val_count], pairs[len(pairs) - val_count:]


def _draw_kind(rng: np.random.Generator, clean_share: float) -> str:
    if clean_share <= 0:
        return KIND_NAMES[int(rng.integers(len(KIND_NAMES)))]
    if rng.random() < clean_share:
        return "none"
    degraded = [k for k in KIND_NAMES if k != "none"]
    return degraded[int(rng.integers(len(degraded)))]


# Which inputs a wrong prompt may go with: 'any' (clean or degraded; the target stays the clean sources) or
# 'clean' only, so a degraded input always has its matching prompt and the neutral prompt never learns to restore
WRONG_PROMPT_INPUTS = ("any", "clean")


def _wrong_kind(kind: str, rng: np.random.Generator) -> str:
    """A degradation other than `kind` (never 'none'): what a wrong prompt names."""
    others = [k for k in KIND_NAMES if k not in ("none", kind)]
    return others[int(rng.integers(len(others)))]


def make_sample(images, crop: int, seed: tuple[int, ...], augment: float, aug: Augment = Augment(),
                clean_share: float = 0.0, wrong_share: float = 0.0, wrong_on: str = "any", neutral_share: float = 0.0,
                frame_match: bool = False, frame_extra=None):
    """One training sample from its own generator: (ir_in, vis_in, ir_clean, vis_clean, prompt, kind, said):
    `kind` is the degradation applied, `said` the one the prompt names.
    `images`: a WeightedPairs, or a list of (ir, vis) pairs (one folder). With probability `wrong_share` the
    prompt names another degradation than the one applied (or than none): the target stays the clean sources,
    so the network learns to check the prompt against the image instead of obeying it blindly. `wrong_on`
    'clean': only undegraded inputs get a wrong prompt (a degraded one always gets its own). With probability
    `neutral_share` a degraded input gets a neutral prompt instead, and its target is the degraded sources as
    given: without a prompt naming the degradation the network fuses what it sees, so the prompt is what
    asks for the restoration.
    `frame_match`: an eighth element, the whole frame's `whole_frame_stats` (shift, mean ir, mean vis) for the clean
    target (the draws are the same), then `frame_extra`'s value when given (sampling.whole_frame_stats); NaNs
    where the target is the degraded sources (their frame is not at hand)."""
    rng = np.random.default_rng(list(seed))
    pool = images if isinstance(images, WeightedPairs) else WeightedPairs([list(images)], [1.0])
    ir, vis, *stats = random_crop(*pool.draw(rng), crop, rng, aug, frame_stats=frame_match, frame_extra=frame_extra)
    kind = _draw_kind(rng, clean_share)
    ir_in, vis_in = degrade(kind, ir, vis, rng)
    if neutral_share > 0 and kind != "none" and rng.random() < neutral_share:
        sample = ir_in, vis_in, ir_in, vis_in, sample_prompt("none", rng, augment), kind, "none"
        return sample + (((float("nan"),) * len(stats[0]),) if frame_match else ())
    may_lie = wrong_share > 0 and (wrong_on == "any" or kind == "none")
    said = _wrong_kind(kind, rng) if may_lie and rng.random() < wrong_share else kind
    return (ir_in, vis_in, ir, vis, sample_prompt(said, rng, augment), kind, said) + tuple(stats)


def make_batch(images, crop: int, seed: int, step: int, batch_size: int, rank: int, world: int, augment: float,
               aug: Augment = Augment(), clean_share: float = 0.0, wrong_share: float = 0.0, wrong_on: str = "any",
               neutral_share: float = 0.0, frame_match: bool = False, frame_extra=None):
    """This rank's share of the global batch of `step` -> 4 x (b, 1, crop, crop) tensors, b prompts, a (b,)
    bool tensor: which samples are clean but prompted with a degradation (what --prompt-consistency uses), and
    a (b,) float tensor: whether the prompt applies (1: it names the degradation applied, 0: one that is not
    there, NaN: a neutral prompt, which no gate changes), what --gate-weight supervises the prompt gate with.
    `frame_match`: an eighth element, the (b, 3) frame statistics of make_sample (the -frame intensity targets),
    (b, 4) with `frame_extra`'s value."""
    samples = [make_sample(images, crop, (seed, step, i), augment, aug, clean_share, wrong_share, wrong_on,
                           neutral_share, frame_match, frame_extra) for i in range(rank, batch_size, world)]
    ir_in, vis_in, ir, vis, prompts, kinds, said, *stats = zip(*samples)
    wrong_on_clean = torch.tensor([k == "none" and s != "none" for k, s in zip(kinds, said)])
    applies = torch.tensor([float("nan") if s == "none" else float(k == s) for k, s in zip(kinds, said)])
    batch = (torch.stack(ir_in), torch.stack(vis_in), torch.stack(ir), torch.stack(vis), list(prompts),
             wrong_on_clean, applies)
    return batch + (torch.tensor(stats[0], dtype=torch.float32).view(len(samples), -1),) if frame_match else batch


# --gate-only (fitting the prompt gate of a trained network): the gate is used on whole frames of any size,
# so it is fitted on crops of several sizes and on whole frames (at most GATE_WHOLE_SIDE on the longer side),
# each sample of a class: clean inputs with a degradation's prompt (the gate should close), degraded inputs
# with their own prompt (open), degraded inputs with another degradation's prompt (closed).
GATE_CROPS = (64, 96, 128, 192, 256, 384)
GATE_WHOLE_SHARE = 0.3
GATE_WHOLE_SIDE = 800
GATE_SHARES = (0.45, 0.45, 0.1)  # clean + wrong prompt, degraded + own prompt, degraded + another's


def make_gate_sample(images, seed: tuple[int, ...], augment: float, aug: Augment = Augment()):
    """One sample for fitting the gate -> (ir, vis) (1, 1, h, w) of its own size, its prompt and whether the
    prompt applies (1.0 / 0.0)."""
    rng = np.random.default_rng(list(seed))
    pool = images if isinstance(images, WeightedPairs) else WeightedPairs([list(images)], [1.0])
    ir, vis = pool.draw(rng)
    if rng.random() < GATE_WHOLE_SHARE:
        scale = GATE_WHOLE_SIDE / max(ir.shape[-2:])
        if scale < 1:
            both = F.interpolate(torch.stack([ir, vis]), scale_factor=scale, mode="area")
            ir, vis = both[0], both[1]
        if rng.random() < 0.5:
            ir, vis = ir.flip(-1), vis.flip(-1)
    else:
        crop = int(GATE_CROPS[int(rng.integers(len(GATE_CROPS)))])
        # a crop larger than the frame would be padded: beyond the smallest crop, at most the frame's short side
        crop = min(crop, max(GATE_CROPS[0], min(ir.shape[-2:])))
        ir, vis = random_crop(ir, vis, crop, rng, aug)
    degraded = [k for k in KIND_NAMES if k != "none"]
    r = rng.random()
    kind = "none" if r < GATE_SHARES[0] else degraded[int(rng.integers(len(degraded)))]
    said = _wrong_kind(kind, rng) if kind == "none" or r >= GATE_SHARES[0] + GATE_SHARES[1] else kind
    ir, vis = degrade(kind, ir, vis, rng)
    return ir[None], vis[None], sample_prompt(said, rng, augment), float(kind == said)


def make_gate_batch(images, seed: int, step: int, batch_size: int, rank: int, world: int, augment: float,
                    aug: Augment = Augment()):
    """This rank's share of step `step`'s gate samples (make_gate_sample), sample i seeded by (seed, step, i)."""
    return [make_gate_sample(images, (seed, step, i), augment, aug) for i in range(rank, batch_size, world)]


def make_val_set(images, size: int, kinds=KIND_NAMES) -> dict[str, tuple[torch.Tensor, ...]]:
    """Centre crops of every val pair, degraded deterministically per kind -> kind: (ir_in, vis_in, ir, vis)."""
    size = min([size] + [min(ir.shape[-2:]) for ir, _ in images])
    crops = []
    for ir, vis in images:
        H, W = ir.shape[-2:]
        y, x = (H - size) // 2, (W - size) // 2
        crops.append((ir[:, y:y + size, x:x + size], vis[:, y:y + size, x:x + size]))
    out = {}
    for kind in kinds:
        deg = [degrade_fixed(kind, ir, vis, seed=i) for i, (ir, vis) in enumerate(crops)]
        out[kind] = (torch.stack([d[0] for d in deg]), torch.stack([d[1] for d in deg]),
                     torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops]))
    return out


@dataclass
class TrainingData:
    """A run's folders, found first (cheap: every folder error before a model is built), read later."""

    specs: list[DataSpec]
    train_pairs: Pairs  # the first folder's training split
    val_pairs: Pairs  # its validation split
    folders: list[Pairs]  # every training folder's pairs, the first one's training split first
    images: WeightedPairs | None = None
    val_set: dict | None = None  # main process only: the degraded validation crops, per kind
    other_val: dict[str, dict] = field(default_factory=dict)  # main process only: {val_data folder: clean crops}


def find_data(args) -> TrainingData:
    specs = as_specs(args.data)
    train_pairs, val_pairs = split_pairs(specs[0].path, args.val_count)
    return TrainingData(specs, train_pairs, val_pairs, [train_pairs] + [folder_pairs(s.path) for s in specs[1:]])


def load_data(data: TrainingData, args, main: bool) -> TrainingData:
    """Read every training pair once; the main process also builds the validation sets."""
    data.images = WeightedPairs([load_pairs(f) for f in data.folders], [spec.weight for spec in data.specs])
    if main:
        data.val_set = make_val_set(load_pairs(data.val_pairs), args.val_crop)
        for d in args.val_data:
            name = Path(d).name or str(d)
            data.other_val[name] = make_val_set(load_pairs(folder_pairs(d)), args.val_crop, kinds=("none",))
    return data
