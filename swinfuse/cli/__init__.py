"""The `swinfuse` command line (Typer + rich), a thin layer over the library's face, swinfuse.api.

    root.py      the app, --version, the one error -> exit-code map, main() (the command line in-process) and
                 run() (the console script: main(), then an exit without the interpreter's teardown)
    options.py   the options every command shares (--device, --threads, --json, --weights), declared once, and
                 the generated ones (one option per model config field, one per FuseOptions field)
    render.py    tables and JSON on stdout, progress bars, notes and warnings on stderr
    fuse.py      fuse, batch          model.py     profile, summary
    video.py     video                evaluate.py  evaluate (and evaluate --video)
    train.py     train

A command group is one module with a `register(app)` function, listed once in root.COMMAND_GROUPS. A command
body parses its options, calls one api function and renders what it returns. These modules import typer,
rich, the standard library and swinfuse.api / swinfuse.errors / swinfuse.jsonable at the top; torch and the
rest load inside the api's functions, so `swinfuse --help` stays instant.
"""

from swinfuse.cli.root import app, main, run

__all__ = ["app", "main", "run"]
