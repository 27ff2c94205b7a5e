"""A folder of pairs, fused under one prompt: streamed from disk (reads prefetched, writes in the background),
resumable (existing outputs are skipped), shardable, one failed pair recorded and the run going on, and a
manifest beside the outputs (swinfuse.fusing.manifest)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
import time
import warnings
from pathlib import Path
from typing import Callable

from swinfuse.data.loading import read_pair
from swinfuse.data.outputs import (check_not_an_input_folder, check_output, check_writable_folder, make_output_folder,
                                   same_file)
from swinfuse.errors import OutputError
from swinfuse.fusing.forward import check_tiling, fuse_y, model_upscale, run_device, to_tensor
from swinfuse.fusing.manifest import made_with, manifest_name, previous_records, write_manifest
from swinfuse.fusing.options import FuseOptions
from swinfuse.fusing.results import BatchInterrupted, BatchReport, PairRecord
from swinfuse.jsonable import to_jsonable
from swinfuse.memory import gpu_peak_mb, peak_rss_mb, reset_gpu_peak

Progress = Callable[[int, int, "PairRecord | None"], None]


def _plan(selected, output_dir: Path, ext: str, overwrite: bool):
    """Split the shard's pairs into those settled now ((index, record): the output exists, or would overwrite
    a source) and those to fuse ((index, pair, output)), both in order."""
    settled, todo = [], []
    for index, pair in enumerate(selected):
        out = output_dir / f"{pair.rel}{ext}"
        record = PairRecord(pair.rel, pair.ir, pair.vis, out, "skipped", "output exists")
        if same_file(out, pair.ir) or same_file(out, pair.vis):
            record.status, record.reason = "failed", f"{out}: output would overwrite an input image"
        if record.status == "failed" or (out.exists() and not overwrite):
            settled.append((index, record))
        else:
            todo.append((index, pair, out))
    return settled, todo


def _fuse_all(todo, finish: Callable[[int, PairRecord], None], *, model, text, upscale: int,
              options: FuseOptions) -> None:
    """Read (prefetched), fuse and write (in the background) every pair of todo; finish(index, record) for
    each as it is settled, in the order they settle."""
    import torch

    from swinfuse.data.io import compose_output, output_bit_depth
    from swinfuse.data.stream import AsyncWriter, error_line, prefetch

    in_flight: dict[int, tuple[PairRecord, float]] = {}

    def finish_write(result) -> None:
        record, elapsed_ms = in_flight.pop(result.tag)
        record.status, record.reason = ("failed", result.error) if result.error else ("written", None)
        record.latency_ms = elapsed_ms + result.write_ms
        finish(result.tag, record)

    with AsyncWriter() as writer:
        try:
            for loaded in prefetch(todo, lambda job: read_pair(job[1].ir, job[1].vis, options.resize, options.max_pixels)):
                index, pair, out = loaded.item
                record = PairRecord(pair.rel, pair.ir, pair.vis, out, "failed", loaded.error, loaded.load_ms)
                if loaded.error:
                    finish(index, record)
                    continue
                began = time.perf_counter()
                try:
                    visible = loaded.value.visible
                    depth = output_bit_depth(out, options.bit_depth, visible.bit_depth)
                    with torch.inference_mode():
                        y = fuse_y(model, to_tensor(loaded.value.ir, "cpu"), to_tensor(visible.y, "cpu"),
                                   text, upscale, options.tile, options.tile_overlap, loaded.value.notes, tone=options.tone)
                    array = compose_output(y, visible, options.gray, depth, options.stretch)
                except Exception as e:  # one pair's failure is recorded, the batch goes on
                    record.reason = error_line(e)
                    finish(index, record)
                    continue
                record.notes = loaded.value.notes
                in_flight[index] = (record, loaded.load_ms + (time.perf_counter() - began) * 1e3)
                writer.submit(out, array, tag=index)
                for result in writer.drain():
                    finish_write(result)
        except KeyboardInterrupt:
            # Ctrl-C: the writes already handed over complete (leaving the writer waits for them) and are
            # recorded, so the manifest lists them, before the interrupt goes on.
            for result in writer.close():
                finish_write(result)
            raise
        for result in writer.close():
            finish_write(result)


@dataclass
class BatchPlan:
    """What fuse_batch settles before it needs the model: the checked output folder, the pairs found and this
    shard's, and which of them are settled already (settled: (index, record)) or to fuse (todo)."""

    root: Path | None
    settings: dict  # the folder settings as given (root, ir_dir, vis_dir, recursive, overwrite), for the manifest
    output_dir: Path
    ext: str
    suffix: str  # added to each output's stem
    shard: tuple[int, int] | None
    found: object  # swinfuse.data.pairs.FoundPairs
    selected: list
    settled: list
    todo: list


def plan_batch(*, root: str | Path | None, output_dir: str | Path, ir_dir: str | Path | None = None,
               vis_dir: str | Path | None = None, recursive: bool = False, overwrite: bool = False,
               shard: str | tuple[int, int] | None = None, ext: str = ".png", suffix: str = "",
               options: FuseOptions = FuseOptions()) -> BatchPlan:
    """Find the pairs, check the output folder (a writable format, not a file, not an input folder, writable)
    and split this shard's pairs into those settled already (the output exists) and those to fuse. No model
    and no torch: a bad folder costs no model load, and a rerun with every output present needs none. suffix:
    added to every output's stem (one prompt of several: data.outputs.prompt_suffix)."""
    from swinfuse.data.pairs import find_pairs, parse_shard
    from swinfuse.data.pairs import shard as take_shard

    output_dir = Path(output_dir)
    ext = ext if ext.startswith(".") else f".{ext}"
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"{output_dir}: is a file, expected an output folder")
    check_writable_folder(output_dir)
    check_output(output_dir / f"<stem>{ext}", options.bit_depth)
    shard = parse_shard(shard) if isinstance(shard, str) else shard
    found = find_pairs(root, ir_dir=ir_dir, vis_dir=vis_dir, recursive=recursive)
    check_not_an_input_folder(output_dir, found.ir_dir, found.vis_dir)
    selected = take_shard(found.pairs, *shard) if shard else found.pairs
    settled, todo = _plan(selected, output_dir, suffix + ext, overwrite)
    settings = {"root": root, "ir_dir": ir_dir, "vis_dir": vis_dir, "recursive": recursive, "overwrite": overwrite}
    return BatchPlan(Path(root) if root is not None else None, settings, output_dir, ext, suffix, shard, found,
                     selected, settled, todo)


def fuse_batch(*, root: str | Path | None = None, output_dir: str | Path | None = None, prompt: str, model,
               meta: dict, ir_dir: str | Path | None = None, vis_dir: str | Path | None = None,
               recursive: bool = False, overwrite: bool = False, shard: str | tuple[int, int] | None = None,
               ext: str = ".png", weights: str | Path | None = None, progress: Progress | None = None,
               options: FuseOptions = FuseOptions(), plan: BatchPlan | None = None) -> BatchReport:
    """Fuse every pair under `root` (or ir_dir/vis_dir) into output_dir/<rel><ext>, streaming from disk.

    Existing outputs are skipped unless overwrite, so a killed run resumes where it stopped. A pair that
    fails (unreadable, sizes differ, model error) is recorded with its one-line reason, leaves no file,
    and the run goes on. shard 'i/n' (1-based) or (i, n) takes the i-th of n slices of the sorted pairs.
    progress(done, total, record) is called once with record None before the first pair, then after
    each pair. A manifest.json (manifest-shard-i-of-n.json for a shard, so concurrent shards writing to
    one folder don't overwrite each other's) is written beside the outputs, its settings the folder's and
    dataclasses.asdict(options). The options are read as open_pair and fuse_pair read them.

    plan: what plan_batch returned (then root, output_dir, ir_dir, vis_dir, recursive, overwrite, shard and
    ext are not read). With nothing to fuse, model may be None: no torch is needed.
    """
    from swinfuse.data.io import stale_temporaries

    if plan is None:
        plan = plan_batch(root=root, output_dir=output_dir, ir_dir=ir_dir, vis_dir=vis_dir, recursive=recursive,
                          overwrite=overwrite, shard=shard, ext=ext, options=options)
    output_dir, shard, found, selected = plan.output_dir, plan.shard, plan.found, plan.selected
    ext = plan.suffix + plan.ext  # what follows each output's relative stem
    if plan.todo:
        device = run_device(model, options.device)
        check_tiling(model, options.tile, options.tile_overlap)
        reset_gpu_peak(device)
    else:
        device = options.device  # nothing to run: the device as given, and no torch imported for it
    make_output_folder(output_dir)  # once every check passed: a refused run leaves no folder behind
    # A run killed by SIGKILL leaves its half-written temporaries (hidden, never taken for outputs): this run
    # owns these outputs, so it removes them.
    for stale in stale_temporaries(output_dir / f"{pair.rel}{ext}" for pair in selected):
        stale.unlink(missing_ok=True)
    total = len(selected)
    records: list[PairRecord | None] = [None] * total
    done = 0

    def finish(index: int, record: PairRecord) -> None:
        nonlocal done
        records[index] = record
        done += 1
        if progress:
            progress(done, total, record)

    if progress:
        progress(0, total, None)
    for index, record in plan.settled:
        finish(index, record)
    todo = plan.todo

    start = time.perf_counter()
    interrupted = False
    try:
        if todo:
            import torch

            with torch.inference_mode():
                text = model.encode_prompts([prompt]).to(device)  # (1, D), once for the whole batch
            _fuse_all(todo, finish, model=model, text=text, upscale=model_upscale(model), options=options)
    except KeyboardInterrupt:
        interrupted = True  # the manifest still records what was written, then the interrupt goes on
    wall = time.perf_counter() - start

    settled_records = [r for r in records if r is not None]
    written = [r for r in settled_records if r.status == "written"]
    report = BatchReport(
        root=plan.root, output_dir=output_dir, prompt=prompt,
        shard=f"{shard[0]}/{shard[1]}" if shard else None,
        pairs_found=len(found.pairs), pairs_selected=total, written=len(written),
        skipped=sum(r.status == "skipped" for r in settled_records),
        failed=sum(r.status == "failed" for r in settled_records),
        unmatched_ir=found.unmatched_ir, unmatched_vis=found.unmatched_vis, duplicates=found.duplicates,
        mean_latency_ms=sum(r.latency_ms for r in written) / len(written) if written else None,
        throughput_pairs_per_s=len(written) / wall if written and wall > 0 else None,
        wall_s=wall, peak_rss_mb=peak_rss_mb(), peak_gpu_mb=gpu_peak_mb(device) if todo else None,
        manifest=output_dir / manifest_name(shard), records=settled_records,
    )
    # The folder's settings, then the options; "device" is the one the run used (the api resolved 'auto').
    recorded = {**plan.settings, "shard": report.shard, "ext": plan.ext, **dataclasses.asdict(options),
                "device": str(device)}
    outputs, differing = _output_records(report.manifest, selected, records, output_dir, ext,
                                         made_with(meta.get("sha256"), prompt, recorded))
    write_manifest(report.manifest, report, meta, weights, recorded, outputs, interrupted)
    if differing:
        warnings.warn(f"{differing} skipped output{'s' if differing > 1 else ''} in {output_dir} "
                      f"{'were' if differing > 1 else 'was'} made with other weights, prompt or settings than "
                      f"this run (the manifest records what made each); rerun with --overwrite to remake "
                      f"{'them' if differing > 1 else 'it'} with these", stacklevel=2)
    if interrupted:
        raise BatchInterrupted(report)
    return report


def _output_records(manifest: Path, selected, records, output_dir: Path, ext: str, current: dict):
    """What made each output in the folder, for the manifest: this run's record for the outputs it wrote, the
    previous manifest's for the rest (those skipped, those a failure or an interrupt left as they were, those
    of other pairs), None where nothing recorded it; and how many skipped outputs it made otherwise."""
    previous, legacy = previous_records(manifest)

    def key(record) -> str:
        return json.dumps(to_jsonable(record), sort_keys=True)

    outputs = {name: record for name, record in previous.items() if (output_dir / name).is_file()}
    differing = 0
    for pair, record in zip(selected, records):
        name = f"{pair.rel}{ext}"
        if record is not None and record.status == "written":
            outputs[name] = current
        elif (output_dir / name).is_file() and not (record is not None and record.status == "failed"
                                                     and name not in outputs):
            made = outputs.get(name, legacy)
            outputs[name] = made
            if record is not None and record.status == "skipped" and made is not None and key(made) != key(current):
                differing += 1
    return outputs, differing
