"""`swinfuse prompts`: what the loaded checkpoint was trained to understand (api.prompts): its degradation
kinds with example wordings, and the neutral prompt, from the checkpoint's own metadata."""

from __future__ import annotations

import typer

from swinfuse import api
from swinfuse.cli import render
from swinfuse.cli.options import JsonOpt, WeightsOpt


def prompts(weights: WeightsOpt = None, json_out: JsonOpt = False) -> None:
    """List the degradations the checkpoint was trained for, with example wordings, and the neutral prompt."""
    report = api.prompts(weights=weights)
    render.show_result(report, render.prompts_tables, json_out)
    if not json_out:
        render.stdout.print(report["note"], markup=False)


def register(app: typer.Typer) -> None:
    app.command()(prompts)
