"""The root of the command line: the Typer app with every command group registered, --version, and main(),
the one place library errors become exit codes.

Exit codes: 0 done; 1 a library error (SwinfuseError), printed as one line `Error: ...` on stderr, or a run
whose pairs or images partly failed (batch, evaluate); 2 a usage error (Typer's own message); 130 Ctrl-C.
SWINFUSE_DEBUG=1 shows a library error's traceback instead of its line.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
import warnings
from typing import Annotated

import typer
import typer.core

from swinfuse import __version__, api
from swinfuse.cli import evaluate, fuse, model, prompts, train, video
from swinfuse.errors import SwinfuseError

app = typer.Typer(help="Text-guided infrared-visible image fusion (SwinFusion encoders + Text-IF prompts).",
                  context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True,
                  pretty_exceptions_show_locals=False, add_completion=False)

# One module per command group, registered in this order (the order `swinfuse --help` lists them in).
COMMAND_GROUPS = (model, fuse, video, train, evaluate, prompts)


def _version(value: bool):
    if value:
        print(f"swinfuse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False):
    """Fuse infrared and visible images (and videos) under a text prompt; profile and summarize model
    configurations."""


def _unwrap(text: str | None) -> str | None:
    """A docstring as help: its hard line breaks joined within each paragraph, so the terminal wraps it at its
    own width (a 120-column help no longer breaks mid-sentence at the docstring's 110)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


_METAVARS = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "path": "PATH"}


def _readable_type(param, ctx) -> str | None:
    """The type column of --help: nothing for a flag, PATH / TEXT / INTEGER / FLOAT (a list: its element's),
    a metavar where one was given, instead of typer's <bool>, <list[str]>, <int range>."""
    if getattr(param, "is_flag", False):
        return None
    if param.metavar:
        return param.metavar
    label = param.display_type(ctx).strip("<>").lower()
    label = label.removeprefix("list[").removesuffix("]").removesuffix(" range")
    return _METAVARS.get(label, label.upper())


class ReadableCommand(typer.core.TyperCommand):
    """Every command's --help as a person reads it: arguments named in capitals in the usage line (IR VIS, not
    {ir} {vis}) and the types above. Built on typer 0.29's hooks (display_type_rich, _usage_display_name);
    where a typer lacks them, its own rendering stands."""

    def get_params(self, ctx):
        params = super().get_params(ctx)  # the command's own, and --help
        for param in params:
            if hasattr(param, "display_type_rich") and hasattr(param, "display_type"):
                param.display_type_rich = types.MethodType(_readable_type, param)
            if isinstance(param, typer.core.TyperArgument) and hasattr(param, "_usage_display_name"):
                name = (param.metavar or param.name).upper()
                param._usage_display_name = (lambda shown: lambda: shown)(
                    name if param.required else f"[{name}]")
        return params


for _group in COMMAND_GROUPS:
    _group.register(app)
for _info in app.registered_commands:
    _info.cls = ReadableCommand
    _info.help = _unwrap(_info.help or inspect.getdoc(_info.callback))


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings in the CLI are one line on stderr, like notes (not Python's file:line and source line)."""
    typer.echo(f"Warning: {message}", err=True)


def main() -> None:
    """The command line in this process: parse sys.argv, run the command, exit through SystemExit (tests call
    it in-process). The console script and `python -m swinfuse` call run()."""
    api.tune_process()  # the process is the command's: huge pages (before torch loads) and the CPU allocator
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


def run() -> None:
    """The `swinfuse` process (the console script and `python -m swinfuse`): main(), then the process ends
    without the interpreter's teardown.

    With torch loaded, Python's teardown (clearing every module, collecting, C++ destructors) takes 0.2-0.6 s
    after the command is done (benchmarks/RESULTS.md, issue 21). Everything a command writes is closed when
    it returns, so after the exit handlers have run (those of torch, logging, multiprocessing, tempfile, in
    Python's order) and the standard streams are flushed, the process exits with the command's code. Where
    that cannot be done as Python would (another non-daemon thread still runs, an exit message that is not a
    code, an exception), Python's own exit goes on. `swinfuse train` keeps Python's exit: its data loaders
    and writers are cleaned up there."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
        if not _may_skip_teardown(code):
            raise
    else:
        if not _may_skip_teardown(code):
            return
    _exit_now(code)


def _may_skip_teardown(code) -> bool:
    """Whether the process may end now as Python would end it, less the teardown (see run)."""
    import atexit
    import threading

    if code is not None and not isinstance(code, int):
        return False  # Python prints the message
    if "train" in sys.argv[1:2] or not hasattr(atexit, "_run_exitfuncs"):
        return False
    main_thread = threading.main_thread()
    return not any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate())


def _exit_now(code: int | None) -> None:
    """What Python's exit does that matters once the command is done, then os._exit: the exit handlers, the
    standard streams flushed (a flush that fails exits 120, as Python does) and C's stdio buffers."""
    import atexit

    atexit._run_exitfuncs()
    status = 0 if code is None else code
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            status = 120
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)  # what a C library printed (libc's exit would flush it)
    except Exception:  # no C library by that name (Windows): nothing buffered there to lose
        pass
    os._exit(status)
