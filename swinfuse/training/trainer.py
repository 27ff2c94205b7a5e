"""Prompted degradation-aware training of SwinFuse (Text-IF's recipe, SwinFusion's loss).

Each sample: a training folder drawn by weight, a pair of it, a random crop (rescaled, flipped and
intensity-jittered: `sampling.py`); one of the 9 degradation kinds (8 + none; `clean_share` sets how often
none) applied to the inputs; a phrasing of that kind as the prompt; the clean sources as the target of
SwinFusion's loss. AdamW, linear warmup then cosine decay, gradient clipping.

Validation: the last `val_count` stems of the first data folder (its own camera), and every `val_data`
folder whole (cameras the run never trains on: the ones that tell whether a model generalises).

Kept apart from the library, as open_clip keeps `open_clip_train`. Runs in one process, or unchanged
under `torchrun --nproc-per-node N` (DistributedDataParallel; gloo on CPU, nccl on GPU). The batch is
global: sample i of step s is drawn from its own generator seeded by (seed, s, i), and rank r builds the
samples r, r + N, ... (DistributedSampler-style), so a run sees the same data for any number of processes
and a resumed run continues exactly.

Run dir: `model.safetensors` (the library's checkpoint, with provenance), `trainer_state.pt` (model,
optimizer, scheduler, step, RNG states; read with `torch.load(weights_only=True)`), `log.jsonl`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import random
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from swinfuse.errors import CheckpointError, ConfigError, InputError, SwinfuseError
from swinfuse.training.degrade import KIND_NAMES, degrade, degrade_fixed
from swinfuse.training.losses import GRADIENT_TARGETS, WEIGHTS, fusion_loss
from swinfuse.training.prompts import HELD_OUT, canonical_prompt, sample_prompt
from swinfuse.training.sampling import Augment, WeightedPairs, as_specs, folder_pairs, load_pairs, random_crop

STATE_FORMAT = 1


@dataclass
class TrainArgs:
    data: str | tuple[str, ...] = ()  # folders, `DIR` or `DIR:WEIGHT`; the first one's last val_count stems are val
    val_data: tuple[str, ...] = ()  # folders validated on whole, never trained on (other cameras)
    out: str = "runs/default"
    preset: str = "default"
    steps: int = 3000  # length of the LR schedule
    stop_after: int = 0  # stop (and checkpoint) at this step; 0 = at `steps`. Resume to continue
    max_minutes: float = 0.0  # stop (and checkpoint) after this much wall time; 0 = no limit
    batch_size: int = 8  # global: split over the processes
    lr: float = 2e-4
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    warmup: int = 100
    grad_clip: float = 1.0
    crop: int = 64
    prompt_augment: float = 0.3  # probability that a training prompt gets random word edits
    val_count: int = 21  # the last `val_count` stems (sorted) of the first folder are validation, never trained on
    rescale: float = 1.0  # random rescale of each crop, log-uniform in [1/rescale, rescale]; 1: none
    gamma_jitter: float = 0.0  # per-modality gamma exp(U(-g, g)) on the clean sources; 0: none
    gain_jitter: float = 0.0  # per-modality gain U(1 - g, 1); 0: none
    clean_share: float = 0.0  # probability of the 'none' kind; 0: uniform over all 9 kinds
    gradient_target: str = "magnitude"  # L_grad's target: SwinFusion's 'magnitude' or 'signed' (losses.py)
    bf16: bool = False  # bf16 autocast for forward and loss (CPU AVX-512 bf16 / CUDA)
    val_every: int = 250
    val_crop: int = 96
    log_every: int = 25
    seed: int = 0
    resume: bool = False
    overwrite: bool = False  # start over in a run folder that holds a run
    init: str = ""  # warm start: weights from this checkpoint (same preset); fresh optimizer and schedule
    loss_weights: tuple[float, ...] = tuple(WEIGHTS.values())  # in WEIGHTS' order: ssim, intensity, gradient
    device: str = "auto"
    threads: int = 0  # 0: torch's default
    progress: bool = True
    command: str = ""  # recorded in the checkpoint; empty: sys.argv


@dataclass
class TrainResult:
    run_dir: str
    step: int
    steps: int
    finished: bool
    val_loss: float | None
    steps_per_s: float
    checkpoint: str
    trained_steps: int = -1  # steps this call ran (0: the run was already at its end); -1: not counted


# ---- data -----------------------------------------------------------------------------------------

def split_pairs(root: str | Path, val_count: int) -> tuple[list[tuple[str, Path, Path]], list[tuple[str, Path, Path]]]:
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


def make_sample(images, crop: int, seed: tuple[int, ...], augment: float, aug: Augment = Augment(),
                clean_share: float = 0.0):
    """One training sample from its own generator: (ir_in, vis_in, ir_clean, vis_clean, prompt, kind).
    `images`: a WeightedPairs, or a list of (ir, vis) pairs (one folder)."""
    rng = np.random.default_rng(list(seed))
    pool = images if isinstance(images, WeightedPairs) else WeightedPairs([list(images)], [1.0])
    ir, vis = random_crop(*pool.draw(rng), crop, rng, aug)
    kind = _draw_kind(rng, clean_share)
    ir_in, vis_in = degrade(kind, ir, vis, rng)
    return ir_in, vis_in, ir, vis, sample_prompt(kind, rng, augment), kind


def make_batch(images, crop: int, seed: int, step: int, batch_size: int, rank: int, world: int, augment: float,
               aug: Augment = Augment(), clean_share: float = 0.0):
    """This rank's share of the global batch of `step` -> 4 x (b, 1, crop, crop) tensors and b prompts."""
    samples = [make_sample(images, crop, (seed, step, i), augment, aug, clean_share)
               for i in range(rank, batch_size, world)]
    ir_in, vis_in, ir, vis, prompts, _ = zip(*samples)
    return torch.stack(ir_in), torch.stack(vis_in), torch.stack(ir), torch.stack(vis), list(prompts)


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


# ---- model, loss, schedule ------------------------------------------------------------------------

class _PromptedFusion(nn.Module):
    """Text encoding inside forward, so DDP sees (and synchronises) the text encoder's gradients too."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ir: torch.Tensor, vis: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        text = self.model.encode_prompts(prompts, cache=False)  # (B, D)
        return self.model(ir, vis, text)  # (B, 1, H*up, W*up)


def _loss(out: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor, weights: dict[str, float] | None = None,
          gradient_target: str = "magnitude"):
    if out.shape[-2:] != ir.shape[-2:]:  # upscale > 1: compare at the output's size
        ir = F.interpolate(ir, size=out.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        vis = F.interpolate(vis, size=out.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    return fusion_loss(ir, vis, out.float(), weights, gradient_target)


def _warm_start(model: nn.Module, args: TrainArgs, config) -> dict:
    """Copy the weights of checkpoint `args.init` into `model`; returns what the new checkpoint records
    about where it started. The architecture must match the preset's except for the number of attention
    heads: a head count change keeps every weight's shape but the relative-position bias tables, which
    start from the mean of the old heads' tables (an approximate start, not an equivalent model)."""
    from swinfuse.model.checkpoint import load_checkpoint

    source, meta = load_checkpoint(args.init)
    theirs, ours = dataclasses.asdict(source.config), dataclasses.asdict(config)
    differ = [k for k in ours if k != "img_size" and theirs[k] != ours[k]]
    if any(not k.endswith("_num_heads") for k in differ):
        raise CheckpointError(f"--init {args.init} is a different model than preset {args.preset!r} "
                              f"({', '.join(f'{k}={theirs[k]} vs {ours[k]}' for k in differ[:3])})")
    state, target = source.state_dict(), model.state_dict()
    for key, value in state.items():
        if value.shape != target[key].shape:  # only the bias tables: (positions, heads)
            state[key] = value.mean(dim=1, keepdim=True).expand_as(target[key]).clone()
    model.load_state_dict(state)
    prov = meta["provenance"]
    return {"path": str(args.init), "sha256": meta["sha256"], "command": prov.get("command"),
            "step": prov.get("step"), "steps": prov.get("steps"), "loss_weights": prov.get("loss_weights"),
            "git_commit": prov.get("git_commit"), "date": prov.get("date"),
            "converted": {k: [theirs[k], ours[k]] for k in differ}}


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def validate(model: nn.Module, val_set, device) -> dict:
    """Loss on the fixed degraded val crops with the matching prompt (the corpus's first phrasing), a
    held-out paraphrase and a neutral prompt. The gap to neutral is the prompt's effect."""
    was_training = model.training
    model.eval()
    results: dict[str, dict[str, float]] = {"matching": {}, "heldout": {}, "neutral": {}}
    for kind, tensors in val_set.items():
        ir_in, vis_in, ir, vis = (t.to(device) for t in tensors)
        n = ir.shape[0]
        prompts = {"matching": [canonical_prompt(kind)] * n,
                   "heldout": [HELD_OUT[kind][i % len(HELD_OUT[kind])] for i in range(n)],
                   "neutral": [canonical_prompt("none")] * n}
        for name, texts in prompts.items():
            if kind == "none" and name == "neutral":  # the same prompt as "matching"
                results[name][kind] = results["matching"][kind]
                continue
            out = model(ir_in, vis_in, model.encode_prompts(texts, cache=False))
            results[name][kind] = float(_loss(out, ir, vis)[0])
    model.train(was_training)
    record = {f"val_{name}": sum(r.values()) / len(r) for name, r in results.items()}
    record["val_loss"] = record.pop("val_matching")
    record["val_per_kind"] = results["matching"]
    record["val_heldout_per_kind"] = results["heldout"]
    record["val_neutral_per_kind"] = results["neutral"]
    return record


@torch.no_grad()
def validate_clean(model: nn.Module, sets: dict[str, dict], device) -> dict[str, float]:
    """Loss on the clean centre crops of each whole validation folder, neutral prompt -> {folder: loss}."""
    was_training = model.training
    model.eval()
    out = {}
    for name, val_set in sets.items():
        ir_in, vis_in, ir, vis = (t.to(device) for t in val_set["none"])
        text = model.encode_prompts([canonical_prompt("none")] * ir.shape[0], cache=False)
        out[name] = float(_loss(model(ir_in, vis_in, text), ir, vis)[0])
    model.train(was_training)
    return out


# ---- state, provenance ----------------------------------------------------------------------------

def _rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _atomic_torch_save(obj, path: Path) -> None:
    import io

    from swinfuse.data.io import write_bytes_atomic

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _git_commit() -> str:
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def invocation() -> str:
    """The command line as a user would retype it: `python -m swinfuse train ...` (and torchrun's
    `-m swinfuse`) run `__main__.py`, which is the `swinfuse` command; `python -m
    swinfuse.train_cmd ...` is `swinfuse train ...`."""
    name = Path(sys.argv[0]).name
    head = {"__main__.py": ["swinfuse"], "train_cmd.py": ["swinfuse", "train"]}.get(name, [name])
    return shlex.join(head + sys.argv[1:])


def _command(args: TrainArgs) -> str:
    return args.command or invocation()


# ---- the loop -------------------------------------------------------------------------------------

def _setup_distributed(device_arg: str) -> tuple[int, int, torch.device, bool]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    from swinfuse.devices import resolve_device

    device = resolve_device(device_arg)  # every command's rule and DeviceError
    use_cuda = device.type == "cuda"
    if use_cuda and world > 1:
        device = torch.device(f"cuda:{local_rank}")  # torchrun: one GPU per process
    if use_cuda and device.index is not None:
        torch.cuda.set_device(device)
    initialised = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        initialised = True
    return rank, world, device, initialised


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.2f} steps/s"),
                    TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def check_loss_weights(values) -> dict[str, float]:
    """Three finite non-negative numbers in WEIGHTS' order -> {name: weight}; ConfigError otherwise."""
    try:
        weights = [float(v) for v in values]
    except (TypeError, ValueError):
        weights = []
    if len(weights) != len(WEIGHTS) or not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ConfigError(f"loss weights must be {len(WEIGHTS)} non-negative numbers ({', '.join(WEIGHTS)}), "
                          f"got {values!r}")
    return dict(zip(WEIGHTS, weights))


def _normalised(args: TrainArgs) -> TrainArgs:
    """Data folders as `DIR[:WEIGHT]` strings in a tuple (JSON-stable), checked before anything is made."""
    specs = as_specs(args.data)
    if args.gradient_target not in GRADIENT_TARGETS:
        raise ConfigError(f"gradient target must be one of {', '.join(GRADIENT_TARGETS)}, got {args.gradient_target!r}")
    if not 0 <= args.clean_share <= 1:
        raise ConfigError(f"clean share must be in [0, 1], got {args.clean_share}")
    Augment(rescale=args.rescale, gamma=args.gamma_jitter, gain=args.gain_jitter)
    return dataclasses.replace(args, data=tuple(str(s) for s in specs),
                               val_data=tuple(str(d) for d in args.val_data))


def train(args: TrainArgs) -> TrainResult:
    from swinfuse.model.checkpoint import save_checkpoint
    from swinfuse.model.config import FusionConfig
    from swinfuse.model.network import SwinFuse

    weights = check_loss_weights(args.loss_weights)  # before anything is created
    args = _normalised(args)
    state_path = Path(args.out) / "trainer_state.pt"
    if not args.resume and not args.overwrite and state_path.exists():
        raise InputError(f"{args.out} already holds a run: --resume continues it, --overwrite starts over "
                         "(its checkpoint, state and log are replaced)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rank, world, device, owns_pg = _setup_distributed(args.device)
    try:
        if args.batch_size % world:
            raise SwinfuseError(f"batch size {args.batch_size} is not divisible by the {world} processes")
        run_dir = Path(args.out)
        state_path, model_path, log_path = run_dir / "trainer_state.pt", run_dir / "model.safetensors", run_dir / "log.jsonl"
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)

        specs = as_specs(args.data)
        train_pairs, val_pairs = split_pairs(specs[0].path, args.val_count)
        folders = [train_pairs] + [folder_pairs(spec.path) for spec in specs[1:]]
        images = WeightedPairs([load_pairs(f) for f in folders], [spec.weight for spec in specs])
        val_set = make_val_set(load_pairs(val_pairs), args.val_crop) if rank == 0 else None
        other_val = {}
        if rank == 0:
            for d in args.val_data:
                name = Path(d).name or str(d)
                other_val[name] = make_val_set(load_pairs(folder_pairs(d)), args.val_crop, kinds=("none",))
        aug = Augment(rescale=args.rescale, gamma=args.gamma_jitter, gain=args.gain_jitter)

        config = FusionConfig.preset(args.preset, img_size=args.crop)
        torch.manual_seed(args.seed)  # same initial weights on every rank
        model = SwinFuse(config).to(device)
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "relative_position_bias_table" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "relative_position_bias_table" not in n)]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, args.warmup, args.steps, args.min_lr_ratio))
        state = None
        if args.resume and state_path.exists():
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            if state.get("format") != STATE_FORMAT:
                raise CheckpointError(f"{state_path} has format {state.get('format')}, expected {STATE_FORMAT}")
        # A resumed run takes its warm start's record from the saved state (the --init file may be gone by
        # now, and its weights are overwritten by the state's anyway); states saved before the record was
        # kept there read the --init file again.
        if state is not None and "init" in state:
            init_record = json.loads(state["init"])
        else:
            init_record = _warm_start(model, args, config) if args.init else None
        torch.manual_seed(args.seed + 1 + rank)  # drop path differs per rank, as the samples do
        step, last_val = 0, None

        if state is not None:
            saved = json.loads(state["args"])
            # Compare as saved (JSON: tuples become lists); a key older states lack takes its default.
            now, default = (json.loads(json.dumps(dataclasses.asdict(a))) for a in (args, TrainArgs()))
            if isinstance(saved.get("data"), str):  # saved before several folders: one folder, weight 1
                saved["data"] = [saved["data"]]
            for key in ("preset", "crop", "batch_size", "seed", "steps", "lr", "warmup", "data", "val_count",
                        "init", "loss_weights", "rescale", "gamma_jitter", "gain_jitter", "clean_share",
                        "gradient_target"):
                if saved.get(key, default[key]) != now[key]:
                    raise CheckpointError(f"cannot resume {state_path}: it was trained with "
                                          f"{key}={saved.get(key, default[key])!r}, now {key}={now[key]!r}")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step, last_val = int(state["step"]), state.get("val_loss")
            rngs = state["rng"]
            _set_rng_state(rngs[rank] if len(rngs) == world else rngs[0])
            if len(rngs) != world and rank == 0:
                print(f"warning: state saved by {len(rngs)} processes, resumed by {world}: RNG streams differ",
                      file=sys.stderr)
        elif args.resume and rank == 0:
            print(f"no {state_path} yet: starting from step 0", file=sys.stderr)
        if args.overwrite and not args.resume and rank == 0 and log_path.exists():
            log_path.unlink()  # a new run: its log does not continue the old one's

        net = _PromptedFusion(model)
        if world > 1:
            net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                                      broadcast_buffers=False)  # buffers are constant masks

        def log(record: dict) -> None:
            if rank == 0:
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")

        def checkpoint(final: bool) -> None:
            rngs = [None] * world
            if world > 1:
                dist.all_gather_object(rngs, _rng_state())
            else:
                rngs = [_rng_state()]
            if rank != 0:
                return
            _atomic_torch_save({"format": STATE_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(), "step": step, "rng": rngs,
                                "args": json.dumps(dataclasses.asdict(args)), "val_loss": last_val,
                                "init": json.dumps(init_record)}, state_path)
            provenance = {
                "command": _command(args),
                "data": [{"path": spec.path, "resolved": str(Path(spec.path).resolve()), "weight": spec.weight,
                          "pairs": len(f)} for spec, f in zip(specs, folders)],
                "split": {"rule": f"first data folder: sorted stems, the last {args.val_count} are validation; "
                                  "other data folders are all training; val_data folders are all validation",
                          "train_count": len(train_pairs), "val_count": len(val_pairs),
                          "val_stems": [s for s, _, _ in val_pairs]},
                "val_data": [{"path": d, "resolved": str(Path(d).resolve())} for d in args.val_data],
                "augment": {"rescale": args.rescale, "gamma_jitter": args.gamma_jitter,
                            "gain_jitter": args.gain_jitter, "clean_share": args.clean_share},
                "gradient_target": args.gradient_target, "bf16": args.bf16,
                "git_commit": _git_commit(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "step": step, "steps": args.steps, "finished": final, "val_loss": last_val,
                "preset": args.preset, "crop": args.crop, "batch_size": args.batch_size, "lr": args.lr,
                "seed": args.seed, "world_size": world, "loss_weights": weights, "degradations": list(KIND_NAMES),
                "prompt_augment": args.prompt_augment, "torch": torch.__version__,
            }
            if init_record is not None:
                provenance["init"] = init_record
            save_checkpoint(model, model_path, provenance)

        def run_validation() -> None:
            nonlocal last_val
            if rank != 0:
                return
            record = validate(model, val_set, device)
            if other_val:
                record["val_clean_by_folder"] = validate_clean(model, other_val, device)
            last_val = record["val_loss"]
            log({"type": "val", "step": step, **record})

        end = min(args.steps, args.stop_after) if args.stop_after > 0 else args.steps
        if state is not None and step >= end:  # nothing to do: no validation, no rewritten checkpoint
            return TrainResult(run_dir=str(run_dir), step=step, steps=args.steps, finished=step >= args.steps,
                               val_loss=last_val, steps_per_s=0.0, checkpoint=str(model_path), trained_steps=0)
        t_start = time.perf_counter()
        t_rate, steps_at_rate, rate, done_steps, t_log, steps_at_log = t_start, step, 0.0, 0, t_start, step
        running: dict[str, float] = {}
        net.train()
        with _progress(args.progress and rank == 0) as bar:
            task = bar.add_task("train", total=args.steps, completed=step, loss=float("nan"), rate=0.0)
            while step < end:
                ir_in, vis_in, ir, vis, prompts = make_batch(images, args.crop, args.seed, step, args.batch_size,
                                                             rank, world, args.prompt_augment, aug, args.clean_share)
                ir_in, vis_in, ir, vis = (t.to(device, non_blocking=True) for t in (ir_in, vis_in, ir, vis))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                    out = net(ir_in, vis_in, prompts)
                loss, terms = _loss(out, ir, vis, weights, args.gradient_target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                done_steps += 1
                for k, v in {"loss": loss.detach(), **terms, "grad_norm": grad_norm}.items():
                    running[k] = running.get(k, 0.0) + float(v)
                now = time.perf_counter()
                if now - t_rate > 2.0 or step == end:
                    rate, t_rate, steps_at_rate = (step - steps_at_rate) / (now - t_rate), now, step
                bar.update(task, completed=step, loss=float(loss.detach()), rate=rate)
                if step % args.log_every == 0 or step == end:
                    n = step - steps_at_log
                    log({"type": "train", "step": step, "lr": scheduler.get_last_lr()[0],
                         "steps_per_s": n / max(now - t_log, 1e-9), **{k: v / n for k, v in running.items()}})
                    running, t_log, steps_at_log = {}, now, step
                out_of_time = args.max_minutes > 0 and (now - t_start) > 60 * args.max_minutes
                if world > 1 and args.max_minutes > 0:  # every rank must stop at the same step
                    flag = torch.tensor([float(out_of_time)], device=device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    out_of_time = bool(flag.item())
                if step == end or out_of_time:
                    break
                if args.val_every > 0 and step % args.val_every == 0:
                    run_validation()
                    checkpoint(final=False)
        run_validation()
        checkpoint(final=step >= args.steps)
        if world > 1:
            dist.barrier()
        elapsed = time.perf_counter() - t_start
        return TrainResult(run_dir=str(run_dir), step=step, steps=args.steps, finished=step >= args.steps,
                           val_loss=last_val, steps_per_s=done_steps / elapsed if elapsed > 0 else 0.0,
                           checkpoint=str(model_path), trained_steps=done_steps)
    finally:
        if owns_pg and dist.is_initialized():
            dist.destroy_process_group()
