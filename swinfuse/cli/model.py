"""`swinfuse profile` and `swinfuse summary`: a model configuration (a preset, its fields overridden one option
each) or a checkpoint, measured (shape check, parameters, FLOPs, memory, latency) or laid out layer by layer."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from swinfuse import api
from swinfuse.cli import render
from swinfuse.cli.options import (DeviceOpt, JsonOpt, ThreadsOpt, WeightsOpt, check_precision, check_prompts,
                                  config_overrides, with_config_options)

SizeOpt = Annotated[str, typer.Option(help="Input size: H or HxW.")]
PresetOpt = Annotated[str, typer.Option(help="smoke | default | halfres | swinfusion.")]
PromptOpt = Annotated[str, typer.Option(help="Prompt fed to the text encoder.", callback=check_prompts)]


@with_config_options
def profile(
    size: SizeOpt = "64",
    sizes: Annotated[Optional[str], typer.Option(help="Sweep sizes, e.g. 64,128,256 or 256,480x640.")] = None,
    preset: Annotated[Optional[str], typer.Option(help=(
        "smoke | default | halfres | swinfusion, with random weights (smoke: the 64x64 smoke-test "
        "configuration). Default: the shipped checkpoint (or --weights).")) ] = None,
    batch: Annotated[int, typer.Option(help="Images per forward.")] = 1,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 2,
    repetitions: Annotated[int, typer.Option(help="Timed runs.")] = 10,
    prompt: PromptOpt = "",
    precision: Annotated[str, typer.Option(help="fp32 | bf16 | fp16 (fp16: CUDA only).",
                                           callback=check_precision)] = "fp32",
    threads: ThreadsOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    **config,
):
    """Load the shipped model (or --weights, or build --preset with config overrides), run random inputs and
    report shape check, params, FLOPs, memory and latency (mean, median, p95, min, FPS)."""
    size_list = [s for s in sizes.split(",") if s.strip()] if sizes else [size]
    report = api.profile_model(preset=preset, overrides=config_overrides(config), weights=weights, sizes=size_list,
                               batch=batch, warmup=warmup, repetitions=repetitions, prompt=prompt, device=device,
                               precision=precision, threads=threads)
    render.show_result(report, render.profile_tables, json_out)


@with_config_options
def summary(
    size: SizeOpt = "64",
    preset: PresetOpt = "smoke",
    depth: Annotated[int, typer.Option(help="Module depth shown; deeper modules fold into their parent.")] = 3,
    prompt: PromptOpt = "",
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    **config,
):
    """Layer table from a real forward pass on two images and a prompt (module, type, output shape, params)."""
    report = api.summarize_model(preset=preset, overrides=config_overrides(config), weights=weights, size=size,
                                 prompt=prompt, depth=depth, device=device)
    render.show_result(report, render.summary_tables, json_out)


def register(app: typer.Typer) -> None:
    app.command()(profile)
    app.command()(summary)
