"""Where a run starts and how it continues: fresh, warm-started from a checkpoint (--init), or resumed from
its own trainer state (--resume), exactly: model, optimizer, scheduler, step and every RNG.

`trainer_state.pt` holds plain tensors, numbers and JSON strings, read with `torch.load(weights_only=True)`:
format, model, optimizer, scheduler, step, rng (one entry per process), args (TrainArgs as JSON), val_loss,
init (the warm start's record as JSON, so a resumed run needs no --init file)."""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from swinfuse.errors import CheckpointError
from swinfuse.training.args import RESUME_KEYS, TrainArgs

STATE_FORMAT = 1


@dataclass(frozen=True)
class RunFiles:
    """The files of a run folder: the trainer state --resume continues from, the checkpoint, the log."""

    dir: Path
    state: Path
    model: Path
    log: Path

    @classmethod
    def of(cls, out: str | Path) -> "RunFiles":
        run = Path(out)
        return cls(run, run / "trainer_state.pt", run / "model.safetensors", run / "log.jsonl")


def rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
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


def save_state(path: Path, *, model, optimizer, scheduler, step: int, rngs: list, args: TrainArgs,
               val_loss: float | None, init: dict | None) -> None:
    _atomic_torch_save({"format": STATE_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "step": step, "rng": rngs,
                        "args": json.dumps(dataclasses.asdict(args)), "val_loss": val_loss,
                        "init": json.dumps(init)}, path)


def load_state(path: Path, args: TrainArgs) -> dict:
    """A saved state, refused (one line) when its format or a setting the run depends on differs."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():  # torch's notes on a foreign pickle: the one line below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)  # a pickle is refused, never run
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot resume {path}: not a readable training state ({type(exc).__name__}: "
                              f"{first[:160]}); remove it, or start over with --overwrite") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        state = state if isinstance(state, dict) else {}
        raise CheckpointError(f"{path} has format {state.get('format')}, expected {STATE_FORMAT}")
    saved = json.loads(state["args"])
    # Compare as saved (JSON: tuples become lists); a key older states lack takes its default.
    now, default = (json.loads(json.dumps(dataclasses.asdict(a))) for a in (args, TrainArgs()))
    if isinstance(saved.get("data"), str):  # saved before several folders: one folder, weight 1
        saved["data"] = [saved["data"]]
    for key in RESUME_KEYS:
        if saved.get(key, default[key]) != now[key]:
            raise CheckpointError(f"cannot resume {path}: it was trained with "
                                  f"{key}={saved.get(key, default[key])!r}, now {key}={now[key]!r}")
    return state


def restore(state: dict, *, model, optimizer, scheduler, rank: int, world: int) -> tuple[int, float | None]:
    """Load a saved state into the run -> (step, last validation loss). Each process takes its own RNG
    state; a different number of processes takes the first (and the run no longer repeats exactly)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rngs = state["rng"]
    set_rng_state(rngs[rank] if len(rngs) == world else rngs[0])
    if len(rngs) != world and rank == 0:
        print(f"warning: state saved by {len(rngs)} processes, resumed by {world}: RNG streams differ",
              file=sys.stderr)
    return int(state["step"]), state.get("val_loss")


def warm_start(model: nn.Module, args: TrainArgs, config) -> dict:
    """Copy the weights of checkpoint `args.init` into `model`; returns what the new checkpoint records
    about where it started. The architecture must match the preset's except for the number of attention
    heads, an added prompt gate (which starts open), deeper stages (--depths), a 'mix', 'mix-fine' or
    'mixed-base' output from a 'direct' one, and base_gain. A head count change keeps every weight's shape
    but the relative-position bias tables, which start from the mean of the old heads' tables (an approximate start, not an equivalent model). A stage's
    added blocks come after its old ones and start as the identity, so the deeper network starts as the
    checkpoint's, output for output. A 'mix' head's last conv starts at zero: the fusion starts as
    mean(visible, infrared), the rest of the network as the checkpoint's, and the head learns the weight and
    the residual on top of it; under 'mixed-base' the fusion starts as the base (network.mixed_base)."""
    from swinfuse.model.checkpoint import load_checkpoint

    source, meta = load_checkpoint(args.init)
    theirs, ours = dataclasses.asdict(source.config), dataclasses.asdict(config)
    differ = [k for k in ours if k != "img_size" and theirs[k] != ours[k]]
    adds_gate = "prompt_gate" in differ and not theirs["prompt_gate"]  # a new gate starts open (gate.py)
    to_mix = "output" in differ and theirs["output"] == "direct" and ours["output"] != "direct"
    grows = [k for k in differ if k.endswith("_depths") and len(theirs[k]) == len(ours[k])
             and all(o >= t for o, t in zip(ours[k], theirs[k]))]
    if any(not (k.endswith("_num_heads") or k == "base_gain" or (k == "prompt_gate" and adds_gate)
                   or (k == "output" and to_mix) or k in grows) for k in differ):
        raise CheckpointError(f"--init {args.init} is a different model than preset {args.preset!r} "
                              f"({', '.join(f'{k}={theirs[k]} vs {ours[k]}' for k in differ[:3])})")
    state, target = source.state_dict(), model.state_dict()
    for key, value in state.items():
        if value.shape == target[key].shape:
            continue
        if to_mix and key.startswith("decoder.head."):  # the last conv, one output channel more
            state[key] = torch.zeros_like(target[key])
        else:  # the bias tables: (positions, heads)
            state[key] = value.mean(dim=1, keepdim=True).expand_as(target[key]).clone()
    if to_mix and ours["output"] == "mixed-base":  # the same head: its last conv starts at zero, so the
        last = [n for n, m in model.decoder.head.named_modules() if isinstance(m, nn.Conv2d)][-1]  # fusion starts
        for key in (f"decoder.head.{last}.weight", f"decoder.head.{last}.bias"):  # as the base alone
            if key in state:
                state[key] = torch.zeros_like(target[key])
    if adds_gate or grows:  # the new gate's and blocks' keys are the only ones missing; anything else is an error
        added = added_blocks(theirs, ours)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not (k.startswith("gate.") and adds_gate) and block_of(k) not in added for k in missing):
            raise CheckpointError(f"--init {args.init}: its weights do not fit preset {args.preset!r} "
                                  f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        start_as_identity(model, added)
    else:
        model.load_state_dict(state)
    prov = meta["provenance"]
    return {"path": str(args.init), "sha256": meta["sha256"], "command": prov.get("command"),
            "step": prov.get("step"), "steps": prov.get("steps"), "loss_weights": prov.get("loss_weights"),
            "git_commit": prov.get("git_commit"), "date": prov.get("date"),
            "converted": {k: [theirs[k], ours[k]] for k in differ}}


# Where each group's stages live in the network (model/network.py)
_STAGE_MODULES = {"ex_depths": ("encoder_ir", "encoder_vis"), "fusion_depths": ("fusion",), "re_depths": ("decoder",)}


def added_blocks(theirs: dict, ours: dict) -> set[str]:
    """The module paths of the blocks config `ours` has and `theirs` lacks (the ones after a stage's old
    depth), e.g. 'fusion.layers.0.blocks.2'."""
    out = set()
    for key, modules in _STAGE_MODULES.items():
        for stage, (old, new) in enumerate(zip(theirs[key], ours[key])):
            out.update(f"{m}.layers.{stage}.blocks.{i}" for m in modules for i in range(old, new))
    return out


def block_of(key: str) -> str:
    """'fusion.layers.0.blocks.2.ir_from_vis.attn.qkv.weight' -> 'fusion.layers.0.blocks.2'."""
    parts = key.split(".")
    return ".".join(parts[:parts.index("blocks") + 2]) if "blocks" in parts else key


@torch.no_grad()
def start_as_identity(model: nn.Module, blocks: set[str]) -> None:
    """Zero the attention output projection and the MLP's second layer of every Swin block under `blocks`:
    both residual branches then add nothing, and each such block passes its input through unchanged."""
    for name, module in model.named_modules():
        if block_of(name + ".x") in blocks and hasattr(module, "attn") and hasattr(module, "mlp"):
            for layer in (module.attn.proj, module.mlp.fc2):
                layer.weight.zero_()
                layer.bias.zero_()


def init_record(state: dict | None, model: nn.Module, args: TrainArgs, config) -> dict | None:
    """The warm start's record. A resumed run takes it from its saved state (the --init file may be gone by
    now, and its weights are overwritten by the state's anyway); states saved before the record was kept
    there read the --init file again."""
    if state is not None and "init" in state:
        return json.loads(state["init"])
    return warm_start(model, args, config) if args.init else None


@dataclass(frozen=True)
class SavedState:
    """What an interrupted run left on disk: its trainer state and the step it holds (None: no state, or
    one that cannot be read)."""

    run_dir: str
    state: str
    exists: bool
    step: int | None


def last_saved(out: str | Path) -> SavedState:
    files = RunFiles.of(out)
    step = None
    if files.state.exists():
        try:
            step = int(torch.load(files.state, map_location="cpu", weights_only=True)["step"])
        except Exception:  # a damaged file: say where it is, not why torch could not read it
            step = None
    return SavedState(str(files.dir), str(files.state), files.state.exists(), step)
