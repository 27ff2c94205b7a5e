"""Results to people and machines: a rich table on stdout, or JSON on stdout (nothing else there).
Progress, notes and warnings go to stderr. Table and JSON are drawn from the same dict (show_result)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from swinfuse import jsonable

stdout = Console(soft_wrap=False)
stderr = Console(stderr=True)


def to_jsonable(value: Any) -> Any:
    """The JSON form of a result, as every command prints it: `swinfuse.jsonable.to_jsonable` with floats
    rounded to 6 decimals (NaN/inf become null)."""
    return jsonable.to_jsonable(value, digits=6)


def emit_json(data: Any, *, digits: int | None = 6) -> None:
    print(jsonable.dumps(data, digits=digits))


def show_result(data, tables_fn, as_json: bool) -> None:
    """A command's result (a dataclass with to_dict, or a dict): its JSON on stdout, or tables_fn's tables of
    the same dict."""
    payload = to_jsonable(data.to_dict() if hasattr(data, "to_dict") else data)
    if as_json:
        emit_json(payload)
    else:
        show(tables_fn(payload))


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "×".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else ", ".join(map(str, value))
    if value is None:
        return "-"
    return str(value)


PROMPT_SHOWN = 60  # characters of a prompt a table shows


def prompt_label(prompt: str, limit: int = PROMPT_SHOWN) -> str:
    """A prompt as tables show it: quoted, and past `limit` characters cut with an ellipsis and its length
    (a 5000-character prompt is one line, not a 160-line cell; the JSON keeps it whole)."""
    if len(prompt) <= limit:
        return repr(prompt)
    return f"{prompt[:limit]!r}… ({len(prompt):,} characters)"


def key_value_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # a path longer than the column folds onto more lines instead of being cut
    for key, value in rows:
        table.add_row(key, fmt(value))
    return table


def wide_tables(title: str, label: str, columns: list[str], rows: list[tuple[str, list[str]]],
                footer: list[tuple[str, list[str]]] = (), width: int | None = None) -> list[Table]:
    """One table of labelled rows under many numeric columns, split into several tables (the label column
    repeated in each) where one would be wider than `width` (default: stdout's): rich squeezes a table to the
    console and cuts its numbers ("7.5…"), so the columns are grouped to fit instead. footer rows come after a
    rule, in bold."""
    from rich.text import Text

    def cell_len(text: str) -> int:  # cells may carry rich markup ([bold]); measure what is shown
        return Text.from_markup(text).cell_len

    width = width or stdout.width
    every = [*rows, *footer]
    label_w = max([cell_len(label), *(cell_len(name) for name, _ in every)])
    col_w = [max([cell_len(c), *(cell_len(values[i]) for _, values in every)]) for i, c in enumerate(columns)]
    groups, group, used = [], [], 1 + label_w + 3  # the left edge; each column adds 2 padding + 1 rule
    for i, w in enumerate(col_w):
        if group and used + w + 3 > width:
            groups.append(group)
            group, used = [], 1 + label_w + 3
        group.append(i)
        used += w + 3
    groups.append(group)

    tables = []
    for k, group in enumerate(groups):
        part = f" ({k + 1}/{len(groups)})" if len(groups) > 1 else ""
        table = Table(title=title + part, title_justify="left")
        table.add_column(label, overflow="fold")  # a long name folds onto a second line, never cut
        for i in group:
            table.add_column(columns[i], justify="right", no_wrap=True, min_width=col_w[i])
        for name, values in rows:
            table.add_row(name, *(values[i] for i in group))
        if footer:
            table.add_section()
            for name, values in footer:
                table.add_row(name, *(values[i] for i in group), style="bold")
        tables.append(table)
    return tables


def profile_tables(report: dict) -> list[Table]:
    params = report["params"]
    head = key_value_table("swinfuse profile", [
        ("model", report["source"]), ("device", report["device"]), ("dtype", report["dtype"]),
        ("threads", report["threads"]), ("batch", report["batch"]),
        ("warm-up / repetitions", f"{report['warmup']} / {report['repetitions']}"),
        ("prompt", prompt_label(report["prompt"])),
        *[(f"params: {k}", v) for k, v in params.items()]])
    # One column per input size: a sweep reads across, and the table stays narrow.
    sizes = Table(title="per input size", title_justify="left")
    sizes.add_column("")
    for s in report["sizes"]:
        sizes.add_column(fmt(s["input_shape"][2:]), justify="right")
    def row(label, get):
        sizes.add_row(label, *[get(s) for s in report["sizes"]])
    row("input", lambda s: fmt(s["input_shape"]))
    row("output", lambda s: fmt(s["output_shape"]))
    row("output = input × upscale", lambda s: "yes" if s["shape_ok"] else f"NO (expected {fmt(s['expected_output_shape'])})")
    row("GFLOPs", lambda s: fmt(s["gflops"]))
    for k in ("mean", "median", "p95", "min"):
        row(f"latency {k} ms", lambda s, k=k: fmt(s["latency_ms"][k]))
    row("images/s", lambda s: fmt(s["fps"]))
    for k in ("before", "after", "peak"):
        row(f"RSS {k} MB", lambda s, k=k: fmt(s["rss_mb"][k]))
    if any(s["gpu_mb"] for s in report["sizes"]):
        for k in ("allocated", "reserved", "peak"):
            row(f"GPU {k} MB", lambda s, k=k: fmt((s["gpu_mb"] or {}).get(k)))
    return [head, sizes]


def summary_tables(report: dict) -> list[Table]:
    table = Table(title=f"swinfuse summary: {report['source']}, input {fmt(report['input_shape'])}, "
                        f"prompt {prompt_label(report['prompt'])}", title_justify="left")
    for col, just in (("module", "left"), ("type", "left"), ("output shape", "right"), ("params", "right"),
                      ("own params", "right")):
        table.add_column(col, justify=just)
    for row in report["layers"]:
        indent = "  " * max(row["depth"] - 1, 0)
        table.add_row(indent + row["name"].split(".")[-1] if row["depth"] else row["name"], row["type"],
                      fmt(row["output_shape"]), fmt(row["params"]), fmt(row["own_params"]))
    totals = key_value_table("totals", [
        ("total params", report["total_params"]), ("trainable params", report["trainable_params"]),
        ("params MB", report["params_mb"]), ("activations MB (estimate)", report["activations_mb"])])
    return [table, totals]


def prompts_tables(report: dict) -> list[Table]:
    from rich.markup import escape

    table = Table(title=f"swinfuse prompts: {escape(str(report['weights']))}", title_justify="left")
    table.add_column("degradation")
    table.add_column("example wordings")
    for row in report["kinds"]:
        table.add_row(row["kind"], escape("\n".join(repr(w) for w in row["examples"])))
    table.add_row("(none: neutral)", escape(repr(report["neutral"])))
    return [table]


def fuse_tables(result: dict) -> list[Table]:
    lat = result["latency_ms"]
    rows = [("infrared", f"{result['ir_path']}  {fmt(result['ir_shape'])}"),
            ("visible", f"{result['vis_path']}  {fmt(result['vis_shape'])}")]
    for out in result["outputs"]:
        rows.append((f"output for {prompt_label(out['prompt'])}", f"{out['path']}  {fmt(out['shape'])}  {out['bit_depth']}-bit"))
    if result.get("sheet"):
        rows.append(("sheet", result["sheet"]))
    rows += [("weights", f"{result['weights']}  sha256:{result['weights_short_hash']}"), ("params", result["params"]),
             ("device", result["device"])]
    rows += [(f"latency {k} ms", v) for k, v in lat.items()]
    rows += [("peak RSS MB", result["peak_rss_mb"]), ("peak GPU MB", result["peak_gpu_mb"])]
    return [key_value_table("swinfuse fuse", rows)]


def batch_tables(report: dict) -> list[Table]:
    rows = [("pairs found", report["pairs_found"]), ("pairs in this run", report["pairs_selected"]),
            ("written", report["written"]), ("skipped (existing)", report["skipped"]), ("failed", report["failed"]),
            ("unmatched infrared", len(report["unmatched_ir"])), ("unmatched visible", len(report["unmatched_vis"])),
            ("mean latency ms", report["mean_latency_ms"]), ("throughput pairs/s", report["throughput_pairs_per_s"]),
            ("wall s", report["wall_s"]), ("peak RSS MB", report["peak_rss_mb"]), ("peak GPU MB", report["peak_gpu_mb"]),
            ("prompt", prompt_label(report["prompt"])), ("shard", report["shard"]), ("output", report["output_dir"]),
            ("manifest", report["manifest"])]
    tables = [key_value_table("swinfuse batch", rows)]
    if report.get("metrics") and report["metrics"]["mean"]:
        mean = report["metrics"]["mean"]
        tables += wide_tables(f"metrics, mean of {len(report['metrics']['images'])} outputs (CDDFuse conventions)",
                              "", list(mean), [("mean", [fmt(v) for v in mean.values()])])
    failed = [r for r in report["records"] if r["status"] == "failed"]
    if failed:
        t = Table(title="failed pairs", title_justify="left")
        t.add_column("pair")
        t.add_column("reason")
        for r in failed:
            t.add_row(r["rel"], r["reason"] or "")
        tables.append(t)
    unmatched = [("infrared", p) for p in report["unmatched_ir"]] + [("visible", p) for p in report["unmatched_vis"]]
    if unmatched:
        t = Table(title="unmatched files (no partner with the same stem)", title_justify="left")
        t.add_column("side")
        t.add_column("file")
        for side, p in unmatched:
            t.add_row(side, str(p))
        tables.append(t)
    return tables


def evaluate_tables(report) -> list[Table]:
    """`swinfuse evaluate`. One method: its per-image table and mean, split into column groups where the
    console is too narrow for all ten metrics. Several: one row per method, mean ± std, best in bold."""
    from rich.markup import escape

    def values(record: dict) -> list[str]:
        return [f"{record[m]:.4f}" for m in report.metrics]

    if len(report.methods) == 1:
        m = report.methods[0]
        return wide_tables(f"swinfuse evaluate: {escape(str(m.fused))}", "image", list(report.metrics),
                           [(escape(row["name"]), values(row)) for row in m.images],
                           footer=[(f"mean ({m.count})", values(m.mean))])
    ranked = any(m.rank is not None for m in report.methods)
    best_rank = min((m.rank for m in report.methods if m.rank is not None), default=None)
    columns = ["images", *(report.heading(k) for k in report.metrics),
               *(["rank ↓"] if ranked else [])]
    rows = []
    for m in report.methods:
        cells = [str(m.count)]
        for k in report.metrics:
            mean = "-" if m.mean[k] != m.mean[k] else f"{m.mean[k]:.4f}"
            cells.append(f"[bold green]{mean}*[/]" if m.name in report.best[k] else mean)
        if ranked:
            r = "-" if m.rank is None else f"{m.rank:.2f}"
            cells.append(f"[bold green]{r}*[/]" if m.rank is not None and m.rank == best_rank else r)
        rows.append((escape(m.name), cells))
    stds = [(f"± std {escape(m.name)}", ["", *(("-" if m.std[k] != m.std[k] else f"{m.std[k]:.4f}")
                                              for k in report.metrics), *([""] if ranked else [])])
            for m in report.methods]
    return wide_tables(f"swinfuse evaluate, convention {report.convention} (best: bold, *)", "method", columns,
                       rows, footer=stds)


def show_evaluation(report, output_format: str, csv=None) -> None:
    """`swinfuse evaluate`'s report in the format asked for on stdout; on stderr, the names each method could
    not match, the images that failed, the warnings and the CSV file written."""
    from rich.markup import escape

    if output_format == "json":
        emit_json(report.to_dict(), digits=None)
    elif output_format == "markdown":
        print(report.to_markdown(), end="")
    elif output_format == "latex":
        print(report.to_latex(), end="")
    elif output_format == "csv":
        print(report.to_csv(), end="")
    else:
        show(evaluate_tables(report))
        if len(report.methods) > 1:
            stdout.print(escape(report.caption()))
    several = len(report.methods) > 1
    for m in report.methods:
        who = f"{m.name}: " if several else ""
        kinds = [("fused images without a source pair", m.unmatched)]
        if not several:
            kinds.append(("source pairs without a fused image", m.missing))
        for kind, names in kinds:
            if names:
                shown = escape(", ".join(names[:10]))
                stderr.print(f"{escape(who)}{len(names)} {kind}: {shown}{' ...' if len(names) > 10 else ''}")
        for record in m.failed:
            stderr.print(f"[red]failed[/red] {escape(who)}{escape(record['name'])}: {escape(record['error'])}")
    for warning in report.warnings:
        stderr.print(f"[yellow]warning[/yellow]: {escape(warning)}")
    if csv is not None:
        stderr.print(f"wrote {escape(str(csv))}")


@contextlib.contextmanager
def progress_bar(label: str, *fields: str, elapsed: bool = False, transient: bool = False, enabled: bool = True):
    """The progress bar of every long command, on stderr: `label`, the bar, done/total, then `fields` (rich
    format strings over the task's fields, e.g. "{task.fields[rate]}"), the elapsed time when asked, and the
    time left. Yields update(completed, total, **fields). The bar appears at the first update, so an error
    before the work starts stays one line, and it stops on leaving (kept on screen unless transient)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), *(TextColumn(f) for f in fields),
               *([TimeElapsedColumn()] if elapsed else []), TimeRemainingColumn()]
    bar = Progress(*columns, console=stderr, transient=transient, disable=not enabled)
    task = None

    def update(completed: int, total: int | None, **values) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(label, total=total, completed=completed, **values)
        else:
            bar.update(task, completed=completed, total=total, **values)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


def batch_interrupted_line(report) -> str:
    """What Ctrl-C left of a batch (its partial BatchReport, or None when it came before any pair)."""
    written = report.written if report is not None else 0
    where = f", recorded in {report.manifest}" if report is not None else ""
    return (f"interrupted: {written} output{'' if written == 1 else 's'} written this run{where}; "
            "rerun the same command to resume (existing outputs are skipped)")


def train_line(result: dict) -> str:
    """`swinfuse train`'s one line on stderr: where the run stands, and its checkpoint."""
    where = f"{result['step']}/{result['steps']}"
    if result["trained_steps"] == 0:
        why = "finished" if result["finished"] else "its --stop-after"
        return f"nothing to do: {result['run_dir']} is already at step {where} ({why}) -> {result['checkpoint']}"
    state = "finished" if result["finished"] else "stopped (continue with --resume)"
    val = "n/a" if result["val_loss"] is None else f"{result['val_loss']:.4f}"
    return f"{state} at step {where}, val loss {val}, {result['steps_per_s']:.2f} steps/s -> {result['checkpoint']}"


def train_interrupted_line(saved) -> str:
    """What Ctrl-C left of a training run (a training.state.SavedState, or None when unknown)."""
    if saved is None:
        what = "the last saved state, if any, is in the run folder"
    elif not saved.exists:
        what = f"nothing saved yet in {saved.run_dir} (a state is written every --val-every steps)"
    elif saved.step is None:
        what = f"the last saved state is {saved.state}"
    else:
        what = f"the last saved state is step {saved.step} in {saved.run_dir} (written every --val-every steps)"
    return f"interrupted: {what}; continue with the same command and --resume"


def show_train(result, as_json: bool) -> None:
    """A TrainResult: JSON on stdout, or its line on stderr (progress and the line never touch stdout)."""
    payload = to_jsonable(result)
    if as_json:
        emit_json(payload)
    else:
        print(train_line(payload), file=sys.stderr)


def show(tables: list[Table]) -> None:
    for t in tables:
        stdout.print(t)


def _fps_text(fps) -> str:
    return "-" if fps is None else f"{fps:g} fps"


def temporal_table(temporal: dict) -> Table:
    """Flicker and warping error of the output and of the sources (swinfuse.metrics.temporal)."""
    table = Table(title="frame to frame (grey levels of 255)", title_justify="left")
    for column in ("", "flicker", "warping error"):
        table.add_column(column, justify="left" if not column else "right")
    names = {"fused": "fused", "infrared": "infrared", "visible": "visible", "mean_of_sources": "mean(IR, VIS)"}
    for key, name in names.items():
        table.add_row(name, fmt(temporal["flicker"][key]), fmt(temporal["warping_error"][key]))
    valid = temporal["valid_fraction"]
    table.caption = (f"flicker: mean |Y(t) - Y(t-1)|; warping error: the same with frame t-1 warped onto t by the "
                     f"{temporal['method']}" + (f", where valid ({valid:.0%} of pixels)" if valid is not None else ""))
    table.caption_justify = "left"
    return table


def video_tables(report: dict) -> list[Table]:
    out = report["output"] or report["partial"]
    what = "PNG frames" if report["kind"] == "frames" else report["codec"]
    rows = [("infrared", f"{report['ir']}  {_fps_text(report['fps_in']['infrared'])}"),
            ("visible", f"{report['vis']}  {_fps_text(report['fps_in']['visible'])}"),
            ("output", f"{out}  {what}  {_fps_text(report['fps_out'])}" + ("  (partial)" if report["partial"] else "")),
            ("frames", f"{report['frames']} of {report['planned']}, from visible frame {report['start']}"
                       + (f", infrared offset {report['ir_offset']}" if report["ir_offset"] else "")),
            ("size in / out", f"{fmt(report['size_in'])} / {fmt(report['size_out'])}"),
            ("prompt", prompt_label(report["prompt"])),
            ("weights", report["weights"]),
            ("device", report["device"]),
            *((f"{k} ms/frame", v) for k, v in report["latency_ms"].items()),
            ("throughput frames/s", report["throughput_fps"]),
            ("wall s", report["wall_s"]),
            ("temporal smoothing", report["temporal_smoothing"] or "off"),
            ("peak RSS MB", report["peak_rss_mb"]),
            ("peak GPU MB", report["peak_gpu_mb"])]
    tables = [key_value_table("swinfuse video", rows)]
    if report["temporal"]:
        tables.append(temporal_table(report["temporal"]))
    return tables


def video_interrupted_line(report) -> str:
    """What Ctrl-C left of `swinfuse video` (its partial VideoReport, or None when it came before the output
    was opened)."""
    frames = report.frames if report is not None else 0
    kept = (f"kept as {report.partial} (playable)" if report is not None and report.partial
            else "nothing kept")
    return f"interrupted: {frames} frame{'' if frames == 1 else 's'} written, {kept}"


def video_evaluation_tables(evaluation: dict) -> list[Table]:
    rows = [("fused", evaluation["fused"]), ("infrared", evaluation["ir"]), ("visible", evaluation["vis"]),
            ("frames", f"{evaluation['frames']}, from visible frame {evaluation['start']}"
                       + (f", infrared offset {evaluation['ir_offset']}" if evaluation["ir_offset"] else ""))]
    return [key_value_table("swinfuse evaluate --video", rows), temporal_table(evaluation["temporal"])]
