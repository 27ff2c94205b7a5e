"""The library's face: one keyword-only function per command, each returning a dataclass, and what the command
line needs to build its options (the config fields, FuseOptions, the metric conventions, TrainArgs).

    fuse (arrays in memory), fuse_pair, fuse_batch, fuse_video, profile_model, summarize_model, evaluate,
    evaluate_video, train

Only the standard library (and the standard-library modules errors and fusing.options) at module top: torch
and friends load inside the functions, so importing this module (and `swinfuse --help`) stays instant, and
tests can patch these functions cheaply. The command line (swinfuse.cli) imports this module, not the
packages behind it.
"""

from __future__ import annotations

import os
from pathlib import Path

from swinfuse.errors import CheckpointError, ConfigError, InputError
from swinfuse.fusing.options import TONES as FUSE_TONES, FuseOptions

DEFAULT_WEIGHTS_NAME = "swinfuse-default.safetensors"


def default_weights_path() -> Path:
    """The checkpoint used when no --weights is given: $SWINFUSE_WEIGHTS if set, else the one shipped inside
    the package (swinfuse/weights/, package data, so a wheel carries it; the repository's weights/ folder
    links to that same file)."""
    env = os.environ.get("SWINFUSE_WEIGHTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "weights" / DEFAULT_WEIGHTS_NAME


def parse_size(text: str) -> tuple[int, int]:
    """'64' -> (64, 64); '480x640' -> (480, 640)."""
    try:
        parts = [int(p) for p in str(text).lower().replace("×", "x").split("x")]
    except ValueError:
        raise ConfigError(f"size must be H or HxW (e.g. 64 or 480x640), got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigError(f"size must be H or HxW with positive numbers, got {text!r}")
    return parts[0], parts[1]


# -- what the command line builds its options from -------------------------------------------------------------
def default_threads() -> int:
    """The commands' CPU thread count when --threads is unset or 0 (swinfuse.devices.default_threads: the
    usable cores less those other processes keep busy, or OMP_NUM_THREADS)."""
    from swinfuse import devices

    return devices.default_threads()


def tune_process() -> bool:
    """The process-wide CPU tuning the `swinfuse` command applies before it runs (swinfuse.devices.tune_process);
    the library functions never apply it themselves."""
    from swinfuse import devices

    return devices.tune_process()


def config_fields() -> list[tuple[str, str]]:
    """The FusionConfig fields a command may override (all but the text encoder's spec), in order, each with its
    kind: 'ints' (a tuple of ints), 'bool', 'int', 'float' or 'str'. The commands make one option of each."""
    import dataclasses

    from swinfuse.model.config import FusionConfig

    fields = []
    for f in dataclasses.fields(FusionConfig):
        if f.name == "text":
            continue
        kind = str(f.type)
        fields.append((f.name, "ints" if "tuple" in kind else next(
            (k for k in ("bool", "int", "float") if kind.startswith(k)), "str")))
    return fields


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n), 1 <= i <= n (swinfuse.data.pairs.parse_shard); an InputError names what is wrong."""
    from swinfuse.data.pairs import parse_shard as parse

    return parse(text)


def prompt_suffix(k: int, prompt: str) -> str:
    """What the k-th (from 1) of several prompts adds to an output's name (swinfuse.data.outputs)."""
    from swinfuse.data.outputs import prompt_suffix as suffix

    return suffix(k, prompt)


def precisions() -> tuple[str, ...]:
    """The values --precision takes (swinfuse.devices.PRECISIONS)."""
    from swinfuse.devices import PRECISIONS

    return tuple(PRECISIONS)


def conventions() -> tuple[str, ...]:
    """The names of the metric conventions `evaluate` accepts (swinfuse.metrics.CONVENTIONS)."""
    from swinfuse.metrics import CONVENTIONS

    return tuple(CONVENTIONS)


def train_args(*, loss_weights: str | tuple[float, ...] = "10,20,20", command: str | None = None, **fields):
    """A TrainArgs (swinfuse.training.args) from the options of `swinfuse train`: loss_weights as the command
    line writes them ("10,20,20", then optionally the pyramid and SCD weights) or as numbers, checked here;
    command: the command line the checkpoint records (default: this process's, as a user would retype it)."""
    from swinfuse.training.args import TrainArgs, check_loss_weights
    from swinfuse.training.provenance import invocation

    values = loss_weights.split(",") if isinstance(loss_weights, str) else loss_weights
    try:
        weights = tuple(check_loss_weights(values).values())
    except ConfigError:
        raise ConfigError(f"--loss-weights takes three non-negative numbers like 10,20,20, then optionally a pyramid "
                          f"and an SCD weight like 10,10,60,0,5; got {loss_weights!r}") from None
    return TrainArgs(**fields, loss_weights=weights, command=invocation() if command is None else command)


def build_config(preset: str = "smoke", overrides: dict | None = None):
    from swinfuse.model.config import FusionConfig

    return FusionConfig.preset(preset, **{k: v for k, v in (overrides or {}).items() if v is not None})


def load_model(*, weights: str | Path | None, preset: str | None = None, overrides: dict | None = None,
               device, require_weights: bool = False):
    """-> (model, meta, source). With weights: the checkpoint. Without: a preset with random weights, unless
    the caller fuses images (require_weights), where random weights would be meaningless.

    The one place the CPU inference computation is switched on (swinfuse.model.cpu_inference: the modules'
    classes swapped for subclasses that compute the same outputs band by band and partly in place; under
    autograd, in training mode or on a GPU they compute the reference way). Every command's model and
    swinfuse.fuse's come from here."""
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.model.cpu_inference import enable_cpu_inference
    from swinfuse.model.network import SwinFuse

    if weights is None and require_weights:
        weights = default_weights_path()
        if not weights.exists():
            if os.environ.get("SWINFUSE_WEIGHTS"):
                raise CheckpointError(f"SWINFUSE_WEIGHTS names {weights}, which does not exist; set it to a "
                                      "swinfuse checkpoint, unset it for the shipped one, or pass --weights PATH")
            raise CheckpointError(f"no trained default checkpoint at {weights}; pass --weights PATH "
                                  "(swinfuse never fuses with random weights)")
    if weights is not None:
        if overrides and any(v is not None for v in overrides.values()):
            raise ConfigError("config options cannot be combined with --weights (the checkpoint holds its config)")
        model, meta = load_checkpoint(weights, device=device)
        source = str(weights)
    else:
        model = SwinFuse(build_config(preset or "smoke", overrides)).to(device).eval()
        meta = {"config": model.config, "provenance": {}, "sha256": None, "path": None}
        source = f"preset:{preset or 'smoke'}"
    enable_cpu_inference(model)
    return model, meta, source


def profile_model(*, preset: str | None = None, overrides: dict | None = None, weights: str | Path | None = None,
                  sizes: list[str] = ("64",), batch: int = 1, warmup: int = 2, repetitions: int = 10,
                  prompt: str = "", device: str = "auto", precision: str = "fp32", threads: int | None = None):
    """`swinfuse profile`: the model a user runs (the shipped checkpoint, or `weights`) unless a preset or config
    overrides are asked for (preset="smoke": the random 64x64 smoke-test configuration) -> ProfileReport."""
    from swinfuse import devices, profiling

    dev = devices.resolve_device(device)
    dtype = devices.resolve_dtype(precision, dev)
    n_threads = devices.set_threads(threads)
    if batch < 1 or warmup < 0 or repetitions < 1:
        raise ConfigError(f"need batch >= 1, warmup >= 0, repetitions >= 1; got {batch}, {warmup}, {repetitions}")
    shipped = weights is None and preset is None and not any(v is not None for v in (overrides or {}).values())
    model, _, source = load_model(weights=weights, preset=preset, overrides=overrides, device=dev,
                                  require_weights=shipped)
    return profiling.profile_model(model, source=source, sizes=[parse_size(s) for s in sizes], batch=batch,
                                   warmup=warmup, repetitions=repetitions, prompt=prompt, device=dev, dtype=dtype,
                                   threads=n_threads)


def summarize_model(*, preset: str = "smoke", overrides: dict | None = None, weights: str | Path | None = None,
                    size: str = "64", prompt: str = "", depth: int = 3, device: str = "auto"):
    from swinfuse import devices, summary

    dev = devices.resolve_device(device)
    if depth < 1:
        raise ConfigError(f"--depth must be >= 1, got {depth}")
    model, _, source = load_model(weights=weights, preset=preset, overrides=overrides, device=dev)
    return summary.summarize_model(model, source=source, size=parse_size(size), prompt=prompt, depth=depth,
                                   device=dev)


def _for_speed(model, dtype, compile: bool):
    """The model in the asked precision (cast whole: bf16 on CPU halves the memory traffic as well), with its
    LayerNorms under torch.compile when asked (opt-in: the first forward compiles; see compile_layer_norms)."""
    from swinfuse.model.network import compile_layer_norms

    model = model.to(dtype=dtype)
    if compile:
        compile_layer_norms(model)
    return model


def _speed(options):
    """The speed options applied before any work: the device resolved (so the options, the report and the
    manifest name the device used), the precision checked against it, torch's threads set ->
    (options, torch.device, dtype)."""
    import dataclasses

    from swinfuse import devices

    dev = devices.resolve_device(options.device)
    dtype = devices.resolve_dtype(options.precision, dev)
    devices.set_threads(options.threads)
    return dataclasses.replace(options, device=str(dev)), dev, dtype


def _fusing_model(weights, dev, dtype, options):
    """The checkpoint loaded for fusing (never random weights), in the asked precision, compiled when asked."""
    model, meta, _ = load_model(weights=weights, device=dev, require_weights=True)
    return _for_speed(model, dtype, options.compile), meta


# The checkpoint `fuse` runs when no model is given, kept for the next call: one model at a time, so a
# notebook that fuses with several checkpoints holds one in memory, not all of them.
_KEPT: dict = {"key": None, "model": None, "meta": None}


def _kept_model(weights, options: FuseOptions):
    """The checkpoint for these weights and speed options (device, precision, compile), loaded once and kept
    until a call asks for another (or the file changes); torch's threads set as the options say."""
    options, dev, dtype = _speed(options)
    path = Path(weights) if weights is not None else default_weights_path()
    st = path.stat() if path.is_file() else None
    stamp = (st.st_mtime_ns, st.st_ino, st.st_size) if st else None  # a file rewritten is a new checkpoint
    key = (str(path.resolve()), stamp, options.device, options.precision, options.compile)
    if _KEPT["key"] != key:
        _KEPT.update(key=None, model=None, meta=None)  # the old model goes before the new one loads
        model, meta = _fusing_model(weights, dev, dtype, options)  # None: the default, with its own error
        _KEPT.update(key=key, model=model, meta=meta)
    return _KEPT["model"]


def fuse(ir, vis, prompt: str | None = "", *, model=None, weights: str | Path | None = None, channel_order: str = "rgb",
         options: FuseOptions = FuseOptions()):
    """Fuse an infrared and a visible image held in memory -> the fused image; no files. Colour in, colour out,
    as the CLI does: the visible's BT.601 Y is fused with the infrared and its Cr/Cb put back; a gray visible
    gives a gray result.

    numpy: (H, W) or (H, W, 3) channel-last, uint8, uint16 or float in [0, 1] (RGB, or BGR with
    channel_order="bgr"); the result has the visible's dtype and layout. torch: (H, W), (1, H, W) or
    (3, H, W) channel-first floats in [0, 1]; the result is a float tensor in the visible's layout, on the CPU
    (swinfuse.data.arrays). Times the model's upscale in both cases.

    model: a loaded SwinFuse, run as it is; else the checkpoint `weights`, else the shipped default, loaded
    and kept for later calls (one model at a time). options: as for fuse_pair; device, precision, compile and
    threads say how a checkpoint runs; tile and tile_overlap as on the command line; resize: an infrared of
    another size is resized to the visible; gray: the fused Y only; bit_depth 8 or 16: a numpy result as
    uint8 or uint16 whatever the visible's dtype (a tensor result stays float)."""
    import numpy as np
    import torch

    from swinfuse import devices
    from swinfuse.data.arrays import read_arrays, to_caller
    from swinfuse.data.io import compose_output
    from swinfuse.fusing.forward import fuse_y, model_upscale

    if options.bit_depth not in (None, 8, 16):
        raise InputError(f"bit_depth must be 8 or 16, got {options.bit_depth}")
    prompt = "" if prompt is None else prompt  # no prompt: no instruction, as the command line
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be one string, got {type(prompt).__name__}; for several prompts call fuse "
                         "once per prompt")
    pair = read_arrays(ir, vis, channel_order=channel_order, resize=options.resize)
    if model is None:
        model = _kept_model(weights, options)  # threads set there, with the other speed options
    else:
        devices.set_threads(options.threads)
    with torch.inference_mode():
        text = model.encode_prompts([prompt])  # (1, D), on the model's device
        ir_t, vis_t = (torch.from_numpy(np.ascontiguousarray(x))[None, None] for x in (pair.ir, pair.visible.y))
        y = fuse_y(model, ir_t, vis_t, text, model_upscale(model), options.tile, options.tile_overlap,
                   tone=options.tone)
    return to_caller(compose_output(y, pair.visible, options.gray, stretch=options.stretch), pair, options.bit_depth)


def fuse_pair(*, ir: str | Path, vis: str | Path, prompts: list[str] = (), output: str | Path | None = None,
              weights: str | Path | None = None, sheet: str | Path | None = None,
              options: FuseOptions = FuseOptions(), progress=None):
    """`swinfuse fuse`: fuse one pair once per prompt (none: the empty prompt, no instruction) and write the
    outputs -> FuseResult. options: a FuseOptions (resize, gray, bit_depth, tile, tile_overlap, max_pixels,
    precision, compile, threads, device). progress(done, total) follows a tiled forward tile by tile."""
    import time

    from swinfuse import fusing

    options, dev, dtype = _speed(options)
    # Paths and images first: a typo in a file name costs no model load (seconds).
    opened = fusing.open_pair(ir_path=ir, vis_path=vis, prompts=prompts, output=output, sheet=sheet, options=options)
    t0 = time.perf_counter()
    model, meta = _fusing_model(weights, dev, dtype, options)
    load_ms = (time.perf_counter() - t0) * 1000
    result = fusing.fuse_pair(opened, model=model, meta=meta, options=options, on_tile=progress)
    result.latency_ms["weights"] = load_ms
    return result


def fuse_batch(*, root: str | Path | None, output_dir: str | Path, prompt: str = "", weights: str | Path | None = None,
               ir_dir: str | Path | None = None, vis_dir: str | Path | None = None, recursive: bool = False,
               overwrite: bool = False, shard: str | None = None, progress=None, metrics: bool = False,
               ext: str = "png", suffix: str = "", options: FuseOptions = FuseOptions()):
    """`swinfuse batch`: fuse every pair of a folder into output_dir/<stem><suffix>.<ext> -> BatchReport (with
    metrics, the field's metrics of every output). options: as fuse_pair's. The checkpoint stays loaded for the
    next call with the same weights and options (one prompt after another: see swinfuse.fuse)."""
    from swinfuse import fusing

    # Folders first, model-free: a bad -o costs no model load, and a rerun with every output present loads
    # neither the model nor torch.
    plan = fusing.plan_batch(root=root, output_dir=output_dir, ir_dir=ir_dir, vis_dir=vis_dir, recursive=recursive,
                             overwrite=overwrite, shard=shard, ext=ext, suffix=suffix, options=options)
    if plan.todo:
        model = _kept_model(weights, options)
        meta, options = _KEPT["meta"], _speed(options)[0]
    else:
        model, meta = None, checkpoint_record(weights)
    report = fusing.fuse_batch(plan=plan, prompt=prompt, model=model, meta=meta, progress=progress, options=options)
    if metrics:
        report.metrics = score_batch(report)
    return report


def checkpoint_record(weights: str | Path | None = None) -> dict:
    """What a manifest records of a checkpoint (config, provenance, sha256, path), read from its header and
    bytes without building the model or importing torch: what a batch with nothing to fuse records."""
    import json

    from swinfuse.model.config import FusionConfig
    from swinfuse.model.header import file_sha256, header_metadata

    path = Path(weights) if weights is not None else default_weights_path()
    meta = header_metadata(path) if path.is_file() else None
    try:
        config = FusionConfig.from_json(meta["config"])
        provenance = json.loads(meta.get("provenance", "{}"))
    except (TypeError, KeyError, ValueError, ConfigError):
        # missing, or not a readable checkpoint: the error loading it gives
        _, meta, _ = load_model(weights=weights, device="cpu", require_weights=True)
        return {k: meta[k] for k in ("config", "provenance", "sha256", "path")}
    return {"config": config, "provenance": provenance, "sha256": file_sha256(path), "path": str(path)}


def prompts(*, weights: str | Path | None = None, examples: int = 3) -> dict:
    """`swinfuse prompts`: what a checkpoint was trained to understand, from its own metadata (the degradation
    kinds its provenance lists; a checkpoint without that list says so) -> {"weights", "kinds": [{"kind",
    "examples"}], "neutral", "note"}. The wordings are the training corpus' (swinfuse.training.prompts) for
    each kind listed. Reads the header only: no torch, no model."""
    from swinfuse.training.prompts import CORPUS, canonical_prompt

    record = checkpoint_record(weights)
    kinds = record["provenance"].get("degradations")
    listed = [k for k in kinds if k != "none"] if isinstance(kinds, list) else []
    return {
        "weights": record["path"], "sha256": record["sha256"],
        "kinds": [{"kind": k, "examples": [w for w in CORPUS.get(k, ()) if w][:examples]} for k in listed],
        "neutral": canonical_prompt("none") if isinstance(kinds, list) and "none" in kinds else "",
        "note": ("Any wording works: the model responds to the degradation words it was trained on, as in these "
                 "examples; an empty prompt means no instruction." if listed else
                 "This checkpoint's metadata lists no degradations it was trained on (not trained by swinfuse "
                 "train, or before it recorded them)."),
    }


def fuse_video(*, ir: str | Path, vis: str | Path, output: str | Path, prompt: str = "",
               weights: str | Path | None = None, start: int = 0, frames: int | None = None,
               ir_offset: str | int | None = None, trim: bool = False, match_rate: bool = False,
               fps: float | None = None, codec: str | None = None, overwrite: bool = False, metrics: bool = True,
               temporal_smoothing: float = 0.0, progress=None, options: FuseOptions = FuseOptions()):
    """`swinfuse video`: fuse an infrared and a visible video (files or folders of numbered frames) into a video
    file or a folder of PNG frames, streamed -> VideoReport (swinfuse.video). The output keeps the visible's
    frame rate; rates or lengths that differ are refused unless match_rate / ir_offset / trim say how to pair
    them; start and frames pick a part. metrics: flicker and warping error of the output and the sources.
    temporal_smoothing: the optional stabiliser's strength (0: off). options: as fuse_pair's. Ctrl-C raises
    swinfuse.video.VideoInterrupted, a KeyboardInterrupt carrying the report (a playable partial output kept
    if any frame was written); progress(done, total) after each frame."""
    from swinfuse.video import pipeline
    from swinfuse.video.smoothing import make_smoother

    options, dev, dtype = _speed(options)
    make_smoother(temporal_smoothing)  # a bad value is refused before anything is opened
    # Inputs, pairing and output first: a mismatch costs no model load.
    opened = pipeline.open_video(ir=ir, vis=vis, output=output, options=options, start=start, frames=frames,
                                 ir_offset=ir_offset, trim=trim, match_rate=match_rate, fps=fps, codec=codec,
                                 overwrite=overwrite)
    model, meta = _fusing_model(weights, dev, dtype, options)
    return pipeline.fuse_video(opened, prompt=prompt, model=model, meta=meta, options=options,
                               weights=weights, metrics=metrics, temporal_smoothing=temporal_smoothing,
                               progress=progress)


def evaluate_video(*, fused: str | Path, ir: str | Path | None = None, vis: str | Path | None = None,
                   sources: str | Path | None = None, start: int = 0, ir_offset: str | int | None = None,
                   match_rate: bool = False, progress=None):
    """`swinfuse evaluate --video`: flicker and warping error of a fused video (or folder of frames) against its
    sources -> VideoEvaluation. The sources: ir and vis (videos or frame folders), or a clip folder `sources`
    holding ir.mp4 + vis.mp4 or ir/ + vis/ (swinfuse.video.sources.find_clip)."""
    from swinfuse.video.evaluate import evaluate_video as evaluate_frames
    from swinfuse.video.sources import find_clip

    if sources is not None:
        if ir is not None or vis is not None:
            raise ConfigError("give a clip folder or the infrared and visible sources, not both")
        ir, vis = find_clip(sources)
    elif ir is None or vis is None:
        raise ConfigError("give the infrared and the visible sources (or a clip folder holding both)")
    return evaluate_frames(fused=fused, ir=ir, vis=vis, start=start, ir_offset=ir_offset, match_rate=match_rate,
                           progress=progress)


def score_batch(report) -> dict:
    """The field's metrics for every fused output of a batch (written now or earlier) against its sources."""
    from swinfuse import metrics

    jobs = [(r.rel, r.output, r.ir, r.vis) for r in report.records if r.status in ("written", "skipped")]
    records = metrics.evaluate_triples(jobs)
    scored = [r for r in records if "error" not in r]
    return {"images": records, "mean": metrics.mean_record(scored) if scored else None}


def evaluate(*, methods, sources: str | Path | None = None, ir_dir: str | Path | None = None,
             vis_dir: str | Path | None = None, convention: str | None = None, all_images: bool = False,
             rank: bool = False, workers: int = 0, csv: str | Path | None = None, on_done=None):
    """`swinfuse evaluate`: score one or several methods' fused images against the same source pairs and
    return an EvaluationReport (see swinfuse.evaluation.evaluate for the arguments)."""
    from swinfuse import evaluation

    return evaluation.evaluate(methods=methods, sources=sources, ir_dir=ir_dir, vis_dir=vis_dir,
                               convention=convention, all_images=all_images, rank=rank, workers=workers, csv=csv,
                               on_done=on_done)


def train(args=None, *, progress=None, **options):
    """`swinfuse train`: prompted degradation-aware training (swinfuse.training) -> TrainResult.

    args: a swinfuse.TrainArgs, or its fields as keyword arguments (they replace those of args), e.g.
    `swinfuse.train(data=("pairs/",), out="runs/a", preset="smoke", steps=100)`. progress(step, steps, loss,
    steps_per_s) is called by the main process before the first step and after each. On Ctrl-C the
    KeyboardInterrupt goes on carrying `saved` (training.state.SavedState): the last state on disk, which
    --resume continues from."""
    import dataclasses

    from swinfuse.training import trainer
    from swinfuse.training.args import TrainArgs
    from swinfuse.training.state import last_saved

    args = dataclasses.replace(args if args is not None else TrainArgs(), **options)
    try:
        return trainer.train(args, progress=progress)
    except KeyboardInterrupt as exc:
        exc.saved = last_saved(args.out)
        raise
