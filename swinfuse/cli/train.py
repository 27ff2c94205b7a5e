"""`swinfuse train`: parse the options into a TrainArgs (api.train_args), call `api.train`, render the
TrainResult (one line on stderr, or JSON with --json). Ctrl-C names the last saved step and exits 130.

    swinfuse train --out runs/default --steps 3000
    torchrun --nproc-per-node 2 -m swinfuse train --out runs/ddp      # same command, N processes
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from swinfuse import api
from swinfuse.cli import render
from swinfuse.cli.options import DeviceOpt, JsonOpt, ThreadsOpt


def _positive(value: float) -> float:
    if not value > 0:
        raise typer.BadParameter(f"{value} is not a positive number")
    return value


def train(
    data: Annotated[list[str] | None, typer.Option(
        help="Folder of aligned pairs (ir/ + vis/, ...), as DIR or DIR:WEIGHT (sampling weight, 1 by default); "
             "repeat for several folders. The last --val-count stems (sorted) of the first are validation.")] = None,
    val_data: Annotated[list[Path] | None, typer.Option(
        help="Folder validated on whole, never trained on (another camera); repeatable.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: model.safetensors, trainer_state.pt, "
                                                          "log.jsonl.")] = Path("runs/default"),
    preset: Annotated[str, typer.Option(help="Model size: default | halfres | smoke | swinfusion.")] = "default",
    steps: Annotated[int, typer.Option(min=1, help="Length of the run (and of the cosine LR schedule).")] = 3000,
    stop_after: Annotated[int, typer.Option(min=0, help="Stop and checkpoint at this step (0: at --steps); "
                                                 "--resume continues.")] = 0,
    max_minutes: Annotated[float, typer.Option(min=0, help="Stop and checkpoint after this many minutes (0: no limit).")] = 0.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Global batch size, split over torchrun processes.")] = 8,
    lr: Annotated[float, typer.Option(callback=_positive, help="Peak learning rate (AdamW; linear warmup, cosine decay).")] = 2e-4,
    warmup: Annotated[int, typer.Option(min=0, help="Warmup steps.")] = 100,
    crop: Annotated[int, typer.Option(min=1, help="Training crop size in pixels (the config's img_size).")] = 64,
    prompt_augment: Annotated[float, typer.Option(min=0, max=1, help="Probability of random word edits in a training prompt.")] = 0.3,
    val_count: Annotated[int, typer.Option(help="Number of validation pairs (the last stems).")] = 21,
    val_every: Annotated[int, typer.Option(min=0, help="Validate and checkpoint every N steps (0: only at the end).")] = 250,
    val_crop: Annotated[int, typer.Option(min=1, help="Size of the centre crops validated on.")] = 96,
    rescale: Annotated[float, typer.Option(min=1, help="Random rescale of each crop, log-uniform in [1/R, R] (1: none).")] = 1.0,
    gamma_jitter: Annotated[float, typer.Option(min=0, help="Per-modality gamma exp(U(-g, g)) of the clean sources (0: none).")] = 0.0,
    gain_jitter: Annotated[float, typer.Option(min=0, max=1, help="Per-modality gain U(1-g, 1) of the clean sources (0: none).")] = 0.0,
    clean_share: Annotated[float, typer.Option(min=0, max=1, help="Share of undegraded samples (0: uniform over the 9 kinds).")] = 0.0,
    wrong_prompt_share: Annotated[float, typer.Option(min=0, max=1, help="Share of samples whose prompt names a degradation "
                                                           "the input does not have (target unchanged).")] = 0.0,
    wrong_prompt_on: Annotated[str, typer.Option(help="Which inputs may get a wrong prompt: any | clean (a degraded "
                                                 "input then always gets its own).")] = "any",
    prompt_consistency: Annotated[float, typer.Option(min=0, help="Weight of an L1 term that keeps a clean sample's "
                                                      "fusion under a wrong prompt at the same network's fusion "
                                                      "under the neutral prompt (0: off).")] = 0.0,
    neutral_on_degraded: Annotated[float, typer.Option(min=0, max=1, help="Share of degraded samples given a "
                                                       "neutral prompt, their target the degraded sources as given "
                                                       "(restoring is then the prompt's job).")] = 0.0,
    prompt_gate: Annotated[bool, typer.Option("--prompt-gate", help="Add a gate that reads both sources and "
                                              "scales how much of the prompt's effect the decoder gets.")] = False,
    gate_weight: Annotated[float, typer.Option(min=0, help="Weight of the gate's cross-entropy against whether "
                                               "the prompt names the degradation applied (needs --prompt-gate).")] = 0.0,
    gate_only: Annotated[bool, typer.Option("--gate-only", help="Fit only the prompt gate of the --init network "
                                            "(the rest frozen) on crops of several sizes and whole frames, as it is "
                                            "used; needs --prompt-gate.")] = False,
    gradient_target: Annotated[str, typer.Option(help="Gradient term's target: magnitude (SwinFusion) | signed.")] = "magnitude",
    intensity_target: Annotated[str, typer.Option(help="Intensity term's target: max (SwinFusion) | max-matched "
                                                       "(the max shifted to the brighter source's mean) | max-frame (the same shift, read "
                                                       "from the crop's whole frame) | mixed[:S] (S of both sources' "
                                                       "deviations added, 0.3 by default) | mixed-frame[:S] (mixed with "
                                                       "every mean read from the crop's whole frame).")] = "max",
    bf16: Annotated[bool, typer.Option("--bf16", help="bf16 autocast in the forward pass.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over in an --out folder that holds a run.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the weights and of every sample: runs repeat exactly.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/trainer_state.pt (exactly: optimizer, "
                                                          "scheduler, RNG, step); starts fresh if there is none.")] = False,
    init: Annotated[Path | None, typer.Option(help="Warm start: the weights of this checkpoint (same preset); "
                                                   "fresh optimizer and LR schedule. Recorded in the new "
                                                   "checkpoint's provenance.")] = None,
    loss_weights: Annotated[str, typer.Option(help="SSIM, intensity and gradient weights of the loss "
                                                   "(SwinFusion's are 10,20,20), then optionally a fourth, a "
                                                   "Laplacian-pyramid fusion target, and a fifth, 2 - SCD "
                                                   "(losses.py; both 0 by default). Validation loss always uses "
                                                   "10,20,20 so runs compare.")] = "10,20,20",
    text_encoder: Annotated[str, typer.Option(help=(
        "Text encoder: compact (default: the preset's, trained with the network), or a frozen pretrained "
        "open_clip one as MODEL:TAG or MODEL:FILE (e.g. ViT-B-32:laion2b_s34b_b79k, "
        "ViT-B-32:/models/clip.safetensors); the FiLM layers take its vectors' width. A tag that is not "
        "cached is downloaded."))] = "compact",
    teacher: Annotated[str, typer.Option(help=(
        "A frozen teacher network as KIND:PATH: seafusion:ROOT runs SeAFusion from a checkout of "
        "Linfeng-Tang/VIF-Benchmark at ROOT (its code and checkpoint are read from there). Its fusion of the "
        "clean sources, shifted to the brighter source's mean, is one more L1 target at --teacher-weight."))] = "",
    teacher_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the teacher's L1 term.")] = 0.0,
    teacher_shift: Annotated[str, typer.Option(help=(
        "Where the teacher target's shift to the brighter source's mean is measured: crop (each training crop's "
        "own means) or frame (one offset per frame, so the teacher's large-scale shading survives)."))] = "crop",
    depths: Annotated[str, typer.Option(help=(
        "Deeper Swin stages than the preset's, as GROUP=DEPTH for ex, fusion and re, one depth per stage joined by /, "
        "e.g. ex=3,fusion=3. With --init the added blocks start as the identity: the network starts as the "
        "checkpoint's."))] = "",
    output: Annotated[str, typer.Option(help=(
        "What the network's head gives: direct (the fused image, as SwinFusion) or mix (a per-pixel weight of "
        "the visible source against the infrared, plus a residual) or mix-fine (the same, the residual's large "
        "scale removed) or mixed-base (a residual over a fixed fusion of the sources read with the whole "
        "frame's means). Empty keeps the preset's. Warm-started from a direct checkpoint, a mix network starts "
        "as the mean of the two sources, a mixed-base one as its base."))] = "",
    base_gain: Annotated[float, typer.Option(help=(
        "Output mixed-base: the gain of both sources' deviations in the base (0 keeps the preset's, 0.7). "
        "Pair it with --intensity-target mixed-frame:0.3:G so the target is the base of the clean sources."))] = 0.0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Train the fusion network with degraded inputs and prompts naming the degradation (Text-IF's recipe,
    SwinFusion's loss). Resumable; single process, or unchanged under torchrun."""
    if not data:
        raise typer.BadParameter("give at least one folder of pairs to train on", param_hint="'--data'")
    args = api.train_args(data=tuple(data or ()), val_data=tuple(str(d) for d in val_data or ()), out=str(out),
                          preset=preset, steps=steps, stop_after=stop_after, max_minutes=max_minutes,
                          batch_size=batch_size, lr=lr, warmup=warmup, crop=crop, prompt_augment=prompt_augment,
                          val_count=val_count, val_every=val_every, val_crop=val_crop, seed=seed, resume=resume,
                          init=str(init) if init else "", loss_weights=loss_weights, device=device, threads=threads,
                          progress=progress, rescale=rescale, gamma_jitter=gamma_jitter, gain_jitter=gain_jitter,
                          clean_share=clean_share, wrong_prompt_share=wrong_prompt_share, wrong_prompt_on=wrong_prompt_on,
                          prompt_consistency=prompt_consistency, prompt_gate=prompt_gate, gate_weight=gate_weight, gate_only=gate_only,
                          neutral_on_degraded=neutral_on_degraded,
                          gradient_target=gradient_target, intensity_target=intensity_target, bf16=bf16,
                          overwrite=overwrite, text_encoder=text_encoder, teacher=teacher,
                          teacher_weight=teacher_weight, teacher_shift=teacher_shift,
                          depths=depths, output=output, base_gain=base_gain)
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, one process speaks
    try:
        with render.progress_bar("train", "loss {task.fields[loss]:.4f}", "{task.fields[rate]:.2f} steps/s",
                                 elapsed=True, enabled=progress and main_process) as bar:
            result = api.train(args, progress=lambda step, total, loss, rate: bar(step, total, loss=loss, rate=rate))
    except KeyboardInterrupt as exc:
        if main_process:
            typer.echo(render.train_interrupted_line(getattr(exc, "saved", None)), err=True)
        raise typer.Exit(code=130) from None
    if main_process:
        render.show_train(result, json_out)


def register(app: typer.Typer) -> None:
    app.command()(train)
