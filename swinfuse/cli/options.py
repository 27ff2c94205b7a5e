"""The options the commands share, declared once, and the options generated from the library's records.

- DeviceOpt, ThreadsOpt, JsonOpt, WeightsOpt: every command that takes --device, --threads, --json or
  --weights declares it with these, so each has one help text and one meaning.
- check_prompts: the callback of every --prompt (a prompt must be UTF-8 text).
- with_config_options / config_overrides: one option per model config field (profile, summary).
- with_fuse_options / fuse_options: one option per FuseOptions field (fuse, batch), their help written beside
  the fields (swinfuse.fusing.options).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from swinfuse import api
from swinfuse.errors import ConfigError

def _check_device(value: str) -> str:
    """--device is checked as it is parsed (a usage error, before anything loads); whether CUDA is there is
    the library's to say."""
    name = (value or "auto").strip().lower()
    index = name.partition(":")[2]
    if name not in ("auto", "cpu", "cuda") and not (name.startswith("cuda:") and index.isdigit()):
        raise typer.BadParameter(f"{value!r} is not one of auto, cpu, cuda, cuda:N")
    return value


def check_precision(value: str) -> str:
    if value not in api.precisions():
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(api.precisions())}")
    return value


def _check_bit_depth(value):
    if value not in (None, 8, 16):
        raise typer.BadParameter(f"{value} is not 8 or 16")
    return value


DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N.", callback=_check_device)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout (nothing else there).")]
WeightsOpt = Annotated[Optional[Path], typer.Option(help="A swinfuse checkpoint (.safetensors).")]


def _threads(value: Optional[int]) -> int:
    """--threads unset or 0 -> api.default_threads(): the free cores, not torch's all-cores default, which
    collapses when another process keeps a core busy (benchmarks/RESULTS.md, "Threads on a shared machine")."""
    return value or api.default_threads()  # a count asked for is used as given


ThreadsOpt = Annotated[Optional[int], typer.Option(min=0, callback=_threads, help=(
    "CPU threads for torch. 0 or unset: OMP_NUM_THREADS if set, else the usable cores (CPU affinity, cgroup "
    "quota) less those other processes keep busy, sampled for 0.2 s at start; at least 1. Where load may "
    "start later (a long batch), OMP_WAIT_POLICY=PASSIVE keeps 2+ threads from slowing down many times."))]


def check_prompts(value):
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


def _insert_parameters(func, params: list[inspect.Parameter], after: str | None = None):
    """func with `params` added to the signature Typer reads (after the parameter `after`, else at the end), in
    place of its **kwargs, which then receive their values."""
    sig = inspect.signature(func, eval_str=True)  # resolve the postponed annotations for Typer
    base = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    cut = [p.name for p in base].index(after) + 1 if after else len(base)
    func.__signature__ = sig.replace(parameters=base[:cut] + params + base[cut:])
    return func


# -- one option per model config field, generated so the command line never drifts from the config -----------
_CONFIG_PANEL = "Model configuration (override the preset)"
_CONFIG_TYPES = {"ints": Optional[str], "bool": Optional[bool], "int": Optional[int], "float": Optional[float],
                 "str": Optional[str]}


def _config_parameters() -> list[inspect.Parameter]:
    params = []
    for name, kind in api.config_fields():
        flag = "--" + name.replace("_", "-")
        if kind == "bool":
            option = typer.Option(f"{flag}/--no-{name.replace('_', '-')}", help=f"Config field {name}.",
                                  rich_help_panel=_CONFIG_PANEL)
        else:
            hint = "; comma-separated ints, e.g. 2,2" if kind == "ints" else ""
            option = typer.Option(flag, help=f"Config field {name} (SwinFusion's meaning){hint}.",
                                  rich_help_panel=_CONFIG_PANEL)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[_CONFIG_TYPES[kind], option]))
    return params


def with_config_options(func):
    """Add every config field as an option to a command whose body reads them from **config."""
    return _insert_parameters(func, _config_parameters())


def config_overrides(values: dict) -> dict:
    """The config options given (not None), comma-separated integers parsed into tuples."""
    out = {}
    for name, kind in api.config_fields():
        v = values.get(name)
        if v is None:
            continue
        if kind == "ints":
            try:
                v = tuple(int(x) for x in str(v).split(",") if x.strip())
            except ValueError:
                raise ConfigError(f"--{name.replace('_', '-')} takes comma-separated integers, got {v!r}") from None
        out[name] = v
    return out


# -- one option per FuseOptions field (their help is in swinfuse.fusing.options) ------------------------------
def _check_tone(value: str) -> str:
    if value not in api.FUSE_TONES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(api.FUSE_TONES)}")
    return value


_FUSE_CHECKS = {"precision": check_precision, "bit_depth": _check_bit_depth, "tone": _check_tone}  # usage errors, as parsed
_FUSE_TYPES = {"bool": bool, "str": str, "int": int, "int | None": Optional[int]}


def _fuse_option_parameters(exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    shared = {"threads": ThreadsOpt, "device": DeviceOpt}  # the options every command takes, as declared above
    params = []
    for f in dataclasses.fields(api.FuseOptions):
        if f.name in exclude:
            continue
        meta = f.metadata
        option = typer.Option(*[meta["flag"]] if meta["flag"] else [], help=meta["help"], min=meta["min"],
                              callback=_FUSE_CHECKS.get(f.name))
        annotation = shared.get(f.name) or Annotated[_FUSE_TYPES[str(f.type)], option]
        params.append(inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default,
                                        annotation=annotation))
    return params


def with_fuse_options(after: str, exclude: tuple[str, ...] = ()):
    """Add the FuseOptions fields (but those in exclude, which keep their defaults) as options to a command,
    after its parameter `after`; the body receives them in **options and builds the one FuseOptions it hands to
    the api (fuse_options)."""
    return lambda func: _insert_parameters(func, _fuse_option_parameters(exclude), after)


def fuse_options(values: dict):
    return api.FuseOptions(**values)
