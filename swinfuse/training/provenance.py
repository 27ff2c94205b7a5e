"""What a trained checkpoint records about how it was made: the command as a user would retype it, the
data and its split, the augmentations, the code's git commit, the step and validation loss, and where a
warm start began. Stored as the checkpoint's `provenance` metadata (JSON)."""

from __future__ import annotations

import datetime
import shlex
import subprocess
import sys
from pathlib import Path

import torch

from swinfuse.training.degrade import KIND_NAMES


def git_commit() -> str:
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
    `-m swinfuse`) run `__main__.py`, which is the `swinfuse` command."""
    name = Path(sys.argv[0]).name
    return shlex.join(["swinfuse" if name == "__main__.py" else name, *sys.argv[1:]])


def provenance(args, data, *, step: int, final: bool, val_loss: float | None, world: int,
               loss_weights: dict[str, float], init: dict | None, teacher: dict | None = None) -> dict:
    """The provenance of the checkpoint saved at `step` of a run (its TrainArgs and TrainingData)."""
    record = {
        "command": args.command or invocation(),
        "data": [{"path": spec.path, "resolved": str(Path(spec.path).resolve()), "weight": spec.weight,
                  "pairs": len(f)} for spec, f in zip(data.specs, data.folders)],
        "split": {"rule": f"first data folder: sorted stems, the last {args.val_count} are validation; "
                          "other data folders are all training; val_data folders are all validation",
                  "train_count": len(data.train_pairs), "val_count": len(data.val_pairs),
                  "val_stems": [s for s, _, _ in data.val_pairs]},
        "val_data": [{"path": d, "resolved": str(Path(d).resolve())} for d in args.val_data],
        "augment": {"rescale": args.rescale, "gamma_jitter": args.gamma_jitter,
                    "gain_jitter": args.gain_jitter, "clean_share": args.clean_share,
                    "wrong_prompt_share": args.wrong_prompt_share, "wrong_prompt_on": args.wrong_prompt_on,
                    "prompt_consistency": args.prompt_consistency, "gate_weight": args.gate_weight,
                    "neutral_on_degraded": args.neutral_on_degraded},
        "gradient_target": args.gradient_target, "intensity_target": args.intensity_target, "bf16": args.bf16,
        "git_commit": git_commit(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "step": step, "steps": args.steps, "finished": final, "val_loss": val_loss,
        "preset": args.preset, "crop": args.crop, "batch_size": args.batch_size, "lr": args.lr,
        "seed": args.seed, "world_size": world, "loss_weights": loss_weights, "degradations": list(KIND_NAMES),
        "prompt_augment": args.prompt_augment, "torch": torch.__version__,
    }
    if args.gate_only:
        from swinfuse.training import batches

        record["gate_only"] = {"crops": list(batches.GATE_CROPS), "whole_share": batches.GATE_WHOLE_SHARE,
                               "whole_side": batches.GATE_WHOLE_SIDE, "shares": list(batches.GATE_SHARES)}
    if init is not None:
        record["init"] = init
    if teacher is not None:
        record["teacher"] = teacher
    return record
