"""The `swinfuse` command line (Typer + rich): parse options, call one api function, render the result.

No torch at module top: `swinfuse --help` and `--version` stay instant. Library errors (SwinfuseError)
become `Error: <one line>` on stderr and exit 1; SWINFUSE_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from swinfuse import __version__, api
from swinfuse.errors import SwinfuseError

app = typer.Typer(help="Text-guided infrared-visible image fusion (SwinFusion encoders + Text-IF prompts).",
                  context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True,
                  pretty_exceptions_show_locals=False, add_completion=False)

DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout (nothing else there).")]
WeightsOpt = Annotated[Optional[Path], typer.Option(help="A swinfuse checkpoint (.safetensors).")]


def _default_threads(value: Optional[int]) -> Optional[int]:
    """--threads unset or 0 -> devices.default_threads(): free cores, not torch's all-cores default, which
    collapses when another process keeps a core busy (benchmarks/RESULTS.md, "Threads on a shared machine")."""
    if value:  # a count asked for is used as given
        return value
    from swinfuse.devices import default_threads

    return default_threads()


# Unset and 0 mean the same default: one rule for every command.
ThreadsOpt = Annotated[Optional[int], typer.Option(min=0, callback=_default_threads, help=(
    "CPU threads for torch. 0 or unset: OMP_NUM_THREADS if set, else the usable cores (CPU affinity, cgroup "
    "quota) less those other processes keep busy, sampled for 0.2 s at start; at least 1. Where load may "
    "start later (a long batch), OMP_WAIT_POLICY=PASSIVE keeps 2+ threads from slowing down many times."))]


def _utf8_prompts(value):
    """A prompt must be text: bytes that are not UTF-8 reach Python as lone surrogates (\\udcff), which the
    tokenizer would mangle and the JSON would carry as such. Refused as a usage error, naming the byte."""
    for text in [value] if isinstance(value, str) else value or []:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(text[exc.start])
            what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"character U+{code:04X}"
            raise typer.BadParameter(f"the prompt is not valid UTF-8 ({what} at position {exc.start}); "
                                     "pass it as UTF-8 text") from None
    return value


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings in the CLI are one line on stderr, like notes (not Python's file:line and source line)."""
    typer.echo(f"Warning: {message}", err=True)


def _version(value: bool):
    if value:
        print(f"swinfuse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False):
    """Fuse infrared and visible images under a text prompt; profile and summarize model configurations."""


def _render(data, tables_fn, as_json: bool) -> None:
    from swinfuse import render

    payload = render.to_jsonable(data.to_dict() if hasattr(data, "to_dict") else data)
    if as_json:
        render.emit_json(payload)
    else:
        render.show(tables_fn(payload))


# -- config options: one per FusionConfig field, generated so the CLI never drifts from the config -----------
def _config_fields():
    from swinfuse.model.config import FusionConfig

    return [f for f in dataclasses.fields(FusionConfig) if f.name != "text"]


def _config_parameters() -> list[inspect.Parameter]:
    params = []
    for f in _config_fields():
        kind = str(f.type)
        if "tuple" in kind:
            annotation, hint = Optional[str], "comma-separated ints, e.g. 2,2"
        elif kind.startswith("bool"):
            annotation, hint = Optional[bool], ""
        elif kind.startswith("int"):
            annotation, hint = Optional[int], ""
        elif kind.startswith("float"):
            annotation, hint = Optional[float], ""
        else:
            annotation, hint = Optional[str], ""
        flag = "--" + f.name.replace("_", "-")
        option = typer.Option(flag, help=f"Config field {f.name} (SwinFusion's meaning){'; ' + hint if hint else ''}.",
                              rich_help_panel="Model configuration (override the preset)")
        if annotation is Optional[bool]:
            option = typer.Option(f"{flag}/--no-{f.name.replace('_', '-')}", help=f"Config field {f.name}.",
                                  rich_help_panel="Model configuration (override the preset)")
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[annotation, option]))
    return params


def _overrides(values: dict) -> dict:
    from swinfuse.errors import ConfigError

    out = {}
    for f in _config_fields():
        v = values.get(f.name)
        if v is None:
            continue
        if "tuple" in str(f.type):
            try:
                v = tuple(int(x) for x in str(v).split(",") if x.strip())
            except ValueError:
                raise ConfigError(f"--{f.name.replace('_', '-')} takes comma-separated integers, got {v!r}") from None
        out[f.name] = v
    return out


def _with_config_options(func):
    """Add every config field as an option to a command whose body reads them from **config."""
    sig = inspect.signature(func, eval_str=True)  # resolve the postponed annotations for Typer
    base = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    func.__signature__ = sig.replace(parameters=base + _config_parameters())
    return func


# -- commands ------------------------------------------------------------------------------------------------
@app.command()
@_with_config_options
def profile(
    size: Annotated[str, typer.Option(help="Input size: H or HxW.")] = "64",
    sizes: Annotated[Optional[str], typer.Option(help="Sweep sizes, e.g. 64,128,256 or 256,480x640.")] = None,
    preset: Annotated[str, typer.Option(help="smoke | default | swinfusion.")] = "smoke",
    batch: Annotated[int, typer.Option(help="Images per forward.")] = 1,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 2,
    repetitions: Annotated[int, typer.Option(help="Timed runs.")] = 10,
    prompt: Annotated[str, typer.Option(help="Prompt fed to the text encoder.", callback=_utf8_prompts)] = "",
    precision: Annotated[str, typer.Option(help="fp32 | bf16 | fp16 (fp16: CUDA only).")] = "fp32",
    threads: ThreadsOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    **config,
):
    """Build a model (preset + overrides, or --weights), run random inputs and report shape check, params,
    FLOPs, memory and latency (mean, median, p95, min, FPS)."""
    from swinfuse import render

    size_list = [s for s in sizes.split(",") if s.strip()] if sizes else [size]
    report = api.profile_model(preset=preset, overrides=_overrides(config), weights=weights, sizes=size_list,
                               batch=batch, warmup=warmup, repetitions=repetitions, prompt=prompt, device=device,
                               precision=precision, threads=threads)
    _render(report, render.profile_tables, json_out)


@app.command()
@_with_config_options
def summary(
    size: Annotated[str, typer.Option(help="Input size: H or HxW.")] = "64",
    preset: Annotated[str, typer.Option(help="smoke | default | swinfusion.")] = "smoke",
    depth: Annotated[int, typer.Option(help="Module depth shown; deeper modules fold into their parent.")] = 3,
    prompt: Annotated[str, typer.Option(help="Prompt fed to the text encoder.", callback=_utf8_prompts)] = "",
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
    **config,
):
    """Layer table from a real forward pass on two images and a prompt (module, type, output shape, params)."""
    from swinfuse import render

    report = api.summarize_model(preset=preset, overrides=_overrides(config), weights=weights, size=size,
                                 prompt=prompt, depth=depth, device=device)
    _render(report, render.summary_tables, json_out)


# -- fuse and batch: one option per FuseOptions field, generated (their help is in swinfuse.fusing.options) ----
def _fuse_option_parameters() -> list[inspect.Parameter]:
    from swinfuse.fusing.options import FuseOptions

    shared = {"threads": ThreadsOpt, "device": DeviceOpt}  # the options every command takes, as they spell them
    types = {"bool": bool, "str": str, "int": int, "int | None": Optional[int]}
    params = []
    for f in dataclasses.fields(FuseOptions):
        meta = f.metadata
        option = typer.Option(*[meta["flag"]] if meta["flag"] else [], help=meta["help"], min=meta["min"])
        annotation = shared.get(f.name) or Annotated[types[str(f.type)], option]
        params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default,
                                        annotation=annotation))
    return params


def _with_fuse_options(after: str):
    """Add the FuseOptions fields as options to a command, after its parameter `after`; the body receives
    them in **options and builds the one FuseOptions it hands to the api."""
    def add(func):
        sig = inspect.signature(func, eval_str=True)  # resolve the postponed annotations for Typer
        base = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        cut = [p.name for p in base].index(after) + 1
        func.__signature__ = sig.replace(parameters=base[:cut] + _fuse_option_parameters() + base[cut:])
        return func
    return add


def _fuse_options(values: dict):
    from swinfuse.fusing.options import FuseOptions

    return FuseOptions(**values)


@app.command()
@_with_fuse_options(after="sheet")
def fuse(
    ir: Annotated[Path, typer.Argument(help="Infrared image.")],
    vis: Annotated[Path, typer.Argument(help="Visible image (colour or gray).")],
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help=(
        "What to fix, e.g. 'the visible image is in low light'. Repeat for one output per prompt. "
        "An empty prompt means no instruction."), callback=_utf8_prompts)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=(
        "Output file, or folder (an existing one, or a path without an extension) that receives "
        "<stem>_fused.png (default: here). With several prompts each name gets _p<k>-<prompt>.")) ] = None,
    sheet: Annotated[Optional[Path], typer.Option(help="Also write infrared | visible | fused-per-prompt, captioned.")] = None,
    weights: WeightsOpt = None,
    json_out: JsonOpt = False,
    **options,
):
    """Fuse one infrared/visible pair under a prompt and write the result."""
    from swinfuse import render

    # A tiled frame (a large one) shows its tiles; the bar appears at the first tile, so a whole frame shows none.
    with render.progress_bar("tiles", transient=True) as update:
        result = api.fuse_pair(ir=ir, vis=vis, prompts=prompt or [], output=output, weights=weights,
                               sheet=sheet, options=_fuse_options(options), progress=update)
    for note in getattr(result, "notes", []) or []:
        render.stderr.print(f"note: {note}")
    _render(result, render.fuse_tables, json_out)


@app.command()
@_with_fuse_options(after="shard")
def batch(
    root: Annotated[Optional[Path], typer.Argument(help="Folder with ir/+vis/, ir/+vi/, Infrared/+Visible/ or IR/+VI_Y/.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")] = Path("fused"),
    # A list, so that a second -p is refused instead of silently replacing the first.
    prompt: Annotated[Optional[list[str]], typer.Option("--prompt", "-p", help=(
        "One prompt for every pair (empty: no instruction); for another prompt, run batch again with "
        "another -o."), callback=_utf8_prompts)] = None,
    ir_dir: Annotated[Optional[Path], typer.Option(help="Infrared folder (instead of a layout under ROOT).")] = None,
    vis_dir: Annotated[Optional[Path], typer.Option(help="Visible folder (instead of a layout under ROOT).")] = None,
    recursive: Annotated[bool, typer.Option(help="Descend into subfolders, mirroring the tree.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Redo pairs whose output exists (default: skip, so reruns resume).")] = False,
    shard: Annotated[Optional[str], typer.Option(help="i/n: process the i-th (1-based) of n slices of the sorted pairs.")] = None,
    metrics: Annotated[bool, typer.Option(help="Score every output with the field's metrics (as `swinfuse evaluate`) "
                                               "and add them to the report.")] = False,
    weights: WeightsOpt = None,
    json_out: JsonOpt = False,
    **options,
):
    """Fuse every pair of a folder, streamed from disk, with a progress bar; failures are listed, the run goes on.
    Exit code 0 when every pair is written or skipped, 1 when any failed."""
    import time

    from swinfuse import render

    if prompt and len(prompt) > 1:
        raise typer.BadParameter(f"batch takes one prompt, got {len(prompt)}; run batch once per prompt, each "
                                 "with its own -o folder", param_hint="'--prompt' / '-p'")

    # The bar starts once the pairs are found and the weights loaded, so an early error stays one line.
    started = time.perf_counter()
    try:
        with render.progress_bar("fusing", "{task.fields[rate]}", transient=json_out) as update:
            def progress(done: int, total: int, record) -> None:
                elapsed = time.perf_counter() - started
                update(done, total, rate=f"{done / elapsed:.2f} pairs/s" if done else "")

            report = api.fuse_batch(root=root, output_dir=output, prompt=(prompt or [""])[0], weights=weights,
                                    ir_dir=ir_dir, vis_dir=vis_dir, recursive=recursive, overwrite=overwrite,
                                    shard=shard, progress=progress, metrics=metrics, options=_fuse_options(options))
    except KeyboardInterrupt as exc:
        # Ctrl-C: one line on what is on disk (the manifest was written for it) and how to go on.
        done = getattr(exc, "report", None)
        written = done.written if done is not None else 0
        where = f", recorded in {done.manifest}" if done is not None else ""
        typer.echo(f"interrupted: {written} output{'' if written == 1 else 's'} written this run{where}; "
                   "rerun the same command to resume (existing outputs are skipped)", err=True)
        raise typer.Exit(code=130) from None
    _render(report, render.batch_tables, json_out)
    if report.failed:
        raise typer.Exit(code=1)


def _register_optional_commands() -> None:
    from swinfuse import train_cmd

    train_cmd.register(app)
    try:
        from swinfuse import evaluate_cmd
    except ImportError:  # written in parallel; absent until it lands
        return
    evaluate_cmd.register(app)


_register_optional_commands()


def main() -> None:
    from swinfuse.devices import tune_process

    tune_process()  # the process is the command's: huge pages (before torch loads) and the CPU allocator
    warnings.showwarning = _one_line_warning
    try:
        # Typer runs in standalone mode: it prints usage errors its own way and exits 2, whichever click it
        # uses (typer 0.29 vendors its own, so catching the click package's class here would miss them), and
        # turns typer.Exit into sys.exit. Library errors are not Click's: they pass through to us.
        app()
    except SwinfuseError as exc:
        if os.environ.get("SWINFUSE_DEBUG"):
            raise
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(1)
