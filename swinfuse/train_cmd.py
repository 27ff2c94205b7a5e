"""`swinfuse train`: the Typer command over `swinfuse.training.trainer.train`. torch is imported inside
the command, so registering it keeps `swinfuse --help` instant.

    swinfuse train --out runs/default --steps 3000
    torchrun --nproc-per-node 2 -m swinfuse train --out runs/ddp      # same command, N processes
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def train_command(
    data: Annotated[list[str] | None, typer.Option(
        help="Folder of aligned pairs (ir/ + vis/, ...), as DIR or DIR:WEIGHT (sampling weight, 1 by default); "
             "repeat for several folders. The last --val-count stems (sorted) of the first are validation.")] = None,
    val_data: Annotated[list[Path] | None, typer.Option(
        help="Folder validated on whole, never trained on (another camera); repeatable.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: model.safetensors, trainer_state.pt, "
                                                          "log.jsonl.")] = Path("runs/default"),
    preset: Annotated[str, typer.Option(help="Model size: default | smoke | swinfusion.")] = "default",
    steps: Annotated[int, typer.Option(help="Length of the run (and of the cosine LR schedule).")] = 3000,
    stop_after: Annotated[int, typer.Option(help="Stop and checkpoint at this step (0: at --steps); "
                                                 "--resume continues.")] = 0,
    max_minutes: Annotated[float, typer.Option(help="Stop and checkpoint after this many minutes (0: no limit).")] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Global batch size, split over torchrun processes.")] = 8,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW; linear warmup, cosine decay).")] = 2e-4,
    warmup: Annotated[int, typer.Option(help="Warmup steps.")] = 100,
    crop: Annotated[int, typer.Option(help="Training crop size in pixels (the config's img_size).")] = 64,
    prompt_augment: Annotated[float, typer.Option(help="Probability of random word edits in a training prompt.")] = 0.3,
    val_count: Annotated[int, typer.Option(help="Number of validation pairs (the last stems).")] = 21,
    val_every: Annotated[int, typer.Option(help="Validate and checkpoint every N steps (0: only at the end).")] = 250,
    val_crop: Annotated[int, typer.Option(help="Size of the centre crops validated on.")] = 96,
    rescale: Annotated[float, typer.Option(help="Random rescale of each crop, log-uniform in [1/R, R] (1: none).")] = 1.0,
    gamma_jitter: Annotated[float, typer.Option(help="Per-modality gamma exp(U(-g, g)) of the clean sources (0: none).")] = 0.0,
    gain_jitter: Annotated[float, typer.Option(help="Per-modality gain U(1-g, 1) of the clean sources (0: none).")] = 0.0,
    clean_share: Annotated[float, typer.Option(help="Share of undegraded samples (0: uniform over the 9 kinds).")] = 0.0,
    gradient_target: Annotated[str, typer.Option(help="Gradient term's target: magnitude (SwinFusion) | signed.")] = "magnitude",
    bf16: Annotated[bool, typer.Option("--bf16", help="bf16 autocast in the forward pass.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over in an --out folder that holds a run.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the weights and of every sample: runs repeat exactly.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/trainer_state.pt (exactly: optimizer, "
                                                          "scheduler, RNG, step); starts fresh if there is none.")] = False,
    init: Annotated[Path | None, typer.Option(help="Warm start: the weights of this checkpoint (same preset); "
                                                   "fresh optimizer and LR schedule. Recorded in the new "
                                                   "checkpoint's provenance.")] = None,
    loss_weights: Annotated[str, typer.Option(help="SSIM, intensity and gradient weights of the loss "
                                                   "(SwinFusion's are 10,20,20). Validation loss always uses "
                                                   "10,20,20 so runs compare.")] = "10,20,20",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    threads: Annotated[int, typer.Option(min=0, help="torch CPU threads per process (0: torch's default).")] = 0,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
) -> None:
    """Train the fusion network with degraded inputs and prompts naming the degradation (Text-IF's recipe,
    SwinFusion's loss). Resumable; single process, or unchanged under torchrun."""
    from swinfuse.errors import SwinfuseError
    from swinfuse.training.trainer import TrainArgs, check_loss_weights, invocation, train

    try:
        weights = tuple(check_loss_weights(loss_weights.split(",")).values())
    except SwinfuseError:
        typer.echo(f"Error: --loss-weights takes three non-negative numbers like 10,20,20, got {loss_weights!r}", err=True)
        raise typer.Exit(code=1)
    if not data:
        typer.echo("Error: no training data: give --data DIR (a folder with ir/ + vis/ pairs), repeated for "
                   "several folders, DIR:WEIGHT to weight one", err=True)
        raise typer.Exit(code=1)
    args = TrainArgs(data=tuple(data), val_data=tuple(str(d) for d in val_data or ()), out=str(out), preset=preset, steps=steps, stop_after=stop_after,
                     max_minutes=max_minutes, batch_size=batch_size, lr=lr, warmup=warmup, crop=crop,
                     prompt_augment=prompt_augment, val_count=val_count, val_every=val_every, val_crop=val_crop,
                     seed=seed, resume=resume, init=str(init) if init else "", loss_weights=weights, device=device,
                     threads=threads, progress=progress, command=invocation(), rescale=rescale,
                     gamma_jitter=gamma_jitter, gain_jitter=gain_jitter, clean_share=clean_share,
                     gradient_target=gradient_target, bf16=bf16, overwrite=overwrite)
    try:
        result = train(args)
    except SwinfuseError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        if os.environ.get("RANK", "0") == "0":
            typer.echo(f"interrupted: {_last_saved(out)}; continue with the same command and --resume", err=True)
        raise typer.Exit(code=130) from None
    if os.environ.get("RANK", "0") == "0" and result.trained_steps == 0:
        typer.echo(f"nothing to do: {out} is already at step {result.step}/{result.steps} "
                   f"({'finished' if result.finished else 'its --stop-after'}) -> {result.checkpoint}", err=True)
        return
    if os.environ.get("RANK", "0") == "0":
        state = "finished" if result.finished else "stopped (continue with --resume)"
        val = "n/a" if result.val_loss is None else f"{result.val_loss:.4f}"
        typer.echo(f"{state} at step {result.step}/{result.steps}, val loss {val}, "
                   f"{result.steps_per_s:.2f} steps/s -> {result.checkpoint}", err=True)


def _last_saved(out: Path) -> str:
    """What an interrupted run left: the step of its last saved state, read from the state file."""
    state = out / "trainer_state.pt"
    if not state.exists():
        return f"nothing saved yet in {out} (a state is written every --val-every steps)"
    try:
        import torch

        step = torch.load(state, map_location="cpu", weights_only=True)["step"]
    except Exception:  # a damaged file: say where it is, not why torch could not read it
        return f"the last saved state is {state}"
    return f"the last saved state is step {step} in {out} (written every --val-every steps)"


def register(app: typer.Typer) -> None:
    """Add the `train` command to `app`."""
    app.command("train")(train_command)


def main() -> None:
    """Stand-alone entry: `python -m swinfuse.train_cmd ...` (or `torchrun -m swinfuse.train_cmd ...`)."""
    typer.run(train_command)


if __name__ == "__main__":
    main()
