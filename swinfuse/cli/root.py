"""The root of the command line: the Typer app with every command group registered, --version, and main(),
the one place library errors become exit codes.

Exit codes: 0 done; 1 a library error (SwinfuseError), printed as one line `Error: ...` on stderr, or a run
whose pairs or images partly failed (batch, evaluate); 2 a usage error (Typer's own message); 130 Ctrl-C.
SWINFUSE_DEBUG=1 shows a library error's traceback instead of its line.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated

import typer

from swinfuse import __version__, api
from swinfuse.cli import evaluate, fuse, model, prompts, train
from swinfuse.errors import SwinfuseError

app = typer.Typer(help="Text-guided infrared-visible image fusion (SwinFusion encoders + Text-IF prompts).",
                  context_settings={"help_option_names": ["-h", "--help"]}, no_args_is_help=True,
                  pretty_exceptions_show_locals=False, add_completion=False)

# One module per command group, registered in this order (the order `swinfuse --help` lists them in).
COMMAND_GROUPS = (model, fuse, train, evaluate, prompts)


def _version(value: bool):
    if value:
        print(f"swinfuse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False):
    """Fuse infrared and visible images under a text prompt; profile and summarize model configurations."""


for _group in COMMAND_GROUPS:
    _group.register(app)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings in the CLI are one line on stderr, like notes (not Python's file:line and source line)."""
    typer.echo(f"Warning: {message}", err=True)


def main() -> None:
    """The `swinfuse` console script (and `python -m swinfuse`)."""
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
