"""Prompted degradation-aware training of SwinFuse (Text-IF's recipe, SwinFusion's loss): the loop.

Each step trains on a global batch of degraded crops whose prompts name the degradation, against the clean
sources (`batches`); AdamW with linear warmup and cosine decay, gradient clipping (`schedule`); every
`val_every` steps it validates (`validation`) and saves the trainer state and the checkpoint (`state`,
`provenance`). Runs in one process, or unchanged under `torchrun --nproc-per-node N` (`distributed`).
Kept apart from the library, as open_clip keeps `open_clip_train`; `swinfuse.train` (api.train) calls it.

Run dir: `model.safetensors` (the library's checkpoint, with provenance), `trainer_state.pt` (model,
optimizer, scheduler, step, RNG states; read with `torch.load(weights_only=True)`), `log.jsonl` (a
`train` record every `log_every` steps, a `val` record at every validation).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Callable

import torch

from swinfuse.devices import set_threads
from swinfuse.errors import InputError, OutputError, SwinfuseError
from swinfuse.training.args import TrainArgs, TrainResult, check_loss_weights, model_config, normalised
from swinfuse.training.batches import find_data, load_data, make_batch, make_gate_batch
from swinfuse.training.distributed import any_rank, barrier, gather, setup_distributed, teardown, wrap
from swinfuse.training.losses import uses_frame_stats
from swinfuse.training.prompts import canonical_prompt
from swinfuse.training.provenance import provenance
from swinfuse.training.sampling import Augment
from swinfuse.training.schedule import make_optimizer
from swinfuse.training.state import RunFiles, init_record, load_state, restore, rng_state, save_state
from swinfuse.training.teacher import Teacher
from swinfuse.training.validation import output_loss, validation_record

# progress(step, steps, loss, steps_per_s): called by the main process before the first step and after each
Progress = Callable[[int, int, float, float], None]


def train(args: TrainArgs, progress: Progress | None = None) -> TrainResult:
    """Run (or continue) the training `args` describe -> what this call did. Nothing is written before the
    options, the folders, the model (a CLIP encoder's weights may be missing) and a saved state are checked."""
    weights = check_loss_weights(args.loss_weights)
    args = normalised(args)
    files = RunFiles.of(args.out)
    _check_run_folder(files.dir)
    if not args.resume and not args.overwrite and files.state.exists():
        raise InputError(f"{args.out} already holds a run: --resume continues it, --overwrite starts over "
                         "(its checkpoint, state and log are replaced)")
    set_threads(args.threads)
    rank, world, device, owns_group = setup_distributed(args.device)
    try:
        return _train(args, weights, files, rank, world, device, progress)
    finally:
        teardown(owns_group)


def _consistency(model, out: torch.Tensor, ir_in: torch.Tensor, vis_in: torch.Tensor, mask: torch.Tensor,
                 bf16: bool, frame: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1 between `out` and the network's own fusion under the neutral prompt, over the samples of `mask`
    (clean inputs prompted with a degradation); 0 when there are none. The reference is computed without
    gradient and without drop-path (eval mode), so it is the fusion a user would get. `frame`: the samples' frame means (output 'mixed-base'),
    so that the reference has the same base as `out`."""
    mask = mask.to(out.device)
    if not bool(mask.any()):
        return out.sum() * 0.0  # keeps the graph (and every rank's) alike
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(out.device.type, dtype=torch.bfloat16, enabled=bf16):
            kw = {} if frame is None else {"frame": frame[mask]}
            ref = model(ir_in[mask], vis_in[mask], [canonical_prompt("none")], **kw)
    finally:
        model.train()
    return (out[mask].float() - ref.float()).abs().mean()


def _gate_loss(gate: torch.Tensor, applies: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the prompt gate (B, 1) against whether each sample's prompt applies (B,): 1 or
    0, NaN (a neutral prompt, which the gate cannot change) left out; 0 when every sample is NaN."""
    known = ~applies.isnan()
    if not bool(known.any()):
        return gate.sum() * 0.0
    g = gate[:, 0].float()[known.to(gate.device)].clamp(1e-6, 1 - 1e-6)
    return torch.nn.functional.binary_cross_entropy(g, applies[known].to(g.device))


def input_frame_means(stats: torch.Tensor, ir_in: torch.Tensor, vis_in: torch.Tensor, ir: torch.Tensor,
                      vis: torch.Tensor) -> torch.Tensor:
    """The frame means (network.frame_means) of the inputs' whole frames, for output 'mixed-base': `stats` (b, >=3)
    are the clean frames' (shift, mean ir, mean vis) (sampling.whole_frame_stats), the inputs a degraded crop of
    them; a degradation moves the frame's means by what it moves the crop's (exact for clean inputs, for which
    the correction is zero). A NaN row (a frame not at hand) takes the input crop's own means."""
    from swinfuse.model.network import frame_means

    stats = stats.to(ir_in)
    shift, m_ir, m_vis = stats[:, 0], stats[:, 1], stats[:, 2]
    clean = torch.stack([m_ir, m_vis, torch.maximum(m_ir, m_vis) - shift], 1)  # (b, 3)
    own = frame_means(ir_in, vis_in)
    moved = clean + own - frame_means(ir, vis)
    return torch.where(stats[:, :1].isnan(), own, moved)


def _fusion_step(net, model, images, args: TrainArgs, weights: dict, teacher, step: int, rank: int, world: int,
                 aug: Augment, device: torch.device):
    """One step's loss of the whole network on a batch of degraded crops -> (loss, terms)."""
    teacher_frame = teacher is not None and teacher.shift == "frame"
    base = model.config.output == "mixed-base"
    frame_match = uses_frame_stats(args.intensity_target) or teacher_frame or base
    ir_in, vis_in, ir, vis, prompts, wrong_on_clean, applies, *frame = make_batch(
        images, args.crop, args.seed, step, args.batch_size, rank, world, args.prompt_augment, aug, args.clean_share,
        args.wrong_prompt_share, args.wrong_prompt_on, args.neutral_on_degraded, frame_match,
        teacher.frame_offset if teacher_frame else None)
    ir_in, vis_in, ir, vis = (t.to(device, non_blocking=True) for t in (ir_in, vis_in, ir, vis))
    means = input_frame_means(frame[0], ir_in, vis_in, ir, vis) if base else None
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
        out = net(ir_in, vis_in, prompts, **({"frame": means} if base else {}))
    gate = model.last_gate  # this forward's (the consistency term's own forward replaces it)
    loss, terms = output_loss(out, ir, vis, weights, args.gradient_target, args.intensity_target,
                              frame[0][:, :3] if frame else None)
    if teacher is not None:
        target = teacher.target(ir, vis, out.shape[-2:], frame[0][:, 3] if teacher_frame else None)
        l_teacher = args.teacher_weight * (out.float() - target).abs().mean()
        loss, terms = loss + l_teacher, {**terms, "teacher": l_teacher.detach()}
    if args.gate_weight > 0:
        l_gate = args.gate_weight * _gate_loss(gate, applies)
        loss, terms = loss + l_gate, {**terms, "gate": l_gate.detach()}
    if args.prompt_consistency > 0:
        l_cons = args.prompt_consistency * _consistency(model, out, ir_in, vis_in, wrong_on_clean, args.bf16, means)
        loss, terms = loss + l_cons, {**terms, "consistency": l_cons.detach()}
    return loss, terms


def _gate_step(model, images, args: TrainArgs, step: int, rank: int, world: int, aug: Augment,
               device: torch.device):
    """--gate-only: the gate's cross-entropy on samples of several sizes (make_gate_batch), each read by the
    frozen encoders in eval mode, as a user's forward reads it -> (loss, terms)."""
    samples = make_gate_batch(images, args.seed, step, args.batch_size, rank, world, args.prompt_augment, aug)
    if model.training:  # once, and again after a validation: eval() also empties the prompt cache
        model.eval()
    gates = torch.cat([model.prompt_gate(ir.to(device), vis.to(device), [prompt]) for ir, vis, prompt, _ in samples])
    applies = torch.tensor([a for *_, a in samples])
    loss = _gate_loss(gates, applies)
    closed = gates[applies.to(device) == 0].detach()
    opened = gates[applies.to(device) == 1].detach()
    terms = {"gate": loss.detach()}  # and the mean gate of each target, when the batch has it (no NaN in the log)
    if len(closed):
        terms["gate_wrong"] = closed.mean()
    if len(opened):
        terms["gate_own"] = opened.mean()
    return loss, terms


def _check_run_folder(folder: Path) -> None:
    """--out must be a folder this process can create or write in; checked before anything is made."""
    from swinfuse.data.outputs import check_writable_folder

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder}: is a file, expected a run folder")
    check_writable_folder(folder)


def _stopped(step: int, args: TrainArgs, out_of_time: bool) -> str:
    return "finished" if step >= args.steps else "max-minutes" if out_of_time else "stop-after"


def _train(args: TrainArgs, weights: dict, files: RunFiles, rank: int, world: int, device: torch.device,
           progress: Progress | None) -> TrainResult:
    from swinfuse.model.checkpoint import save_checkpoint
    from swinfuse.model.network import SwinFuse

    main = rank == 0
    if args.batch_size % world:
        raise SwinfuseError(f"batch size {args.batch_size} is not divisible by the {world} processes")
    if args.gate_only and world > 1:
        raise SwinfuseError("--gate-only runs in one process (the gate is small; its gradients are not shared)")
    # Cheap checks first: the folders, the model (a CLIP encoder may be missing), the saved state.
    data = find_data(args)
    config = model_config(args)
    torch.manual_seed(args.seed)  # same initial weights on every rank
    model = SwinFuse(config).to(device)
    if args.gate_only:  # only the gate trains: the rest has no gradient and no optimizer state
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("gate."))
    optimizer, scheduler = make_optimizer(model, args)
    state = load_state(files.state, args) if args.resume and files.state.exists() else None
    teacher = Teacher.parse(args.teacher, device, args.teacher_shift) if args.teacher else None
    init = init_record(state, model, args, config)
    torch.manual_seed(args.seed + 1 + rank)  # drop path differs per rank, as the samples do
    step, last_val = 0, None
    if state is not None:
        step, last_val = restore(state, model=model, optimizer=optimizer, scheduler=scheduler, rank=rank, world=world)
    elif args.resume and main:
        print(f"no {files.state} yet: starting from step 0", file=sys.stderr)
    end = min(args.steps, args.stop_after) if args.stop_after > 0 else args.steps

    def result(**kw) -> TrainResult:
        return TrainResult(run_dir=str(files.dir), step=step, steps=args.steps, finished=step >= args.steps,
                           val_loss=last_val, checkpoint=str(files.model), state=str(files.state),
                           log=str(files.log), world_size=world, **kw)

    if state is not None and step >= end:  # nothing to do: no validation, no rewritten checkpoint
        return result(steps_per_s=0.0, trained_steps=0, stopped=_stopped(step, args, False))

    load_data(data, args, main)
    if main:
        files.dir.mkdir(parents=True, exist_ok=True)
        if state is None and files.log.exists():
            files.log.unlink()  # a new run (no state to continue): its log does not continue an old one's
    net = wrap(model, world, device)
    aug = Augment(rescale=args.rescale, gamma=args.gamma_jitter, gain=args.gain_jitter)
    last_record = None

    def log(record: dict) -> None:
        if main:
            with open(files.log, "a") as f:
                f.write(json.dumps(record) + "\n")

    def validate() -> None:
        nonlocal last_val, last_record
        if main:
            last_record = validation_record(model, data, device)
            last_val = last_record["val_loss"]
            log({"type": "val", "step": step, **last_record})

    saved_step = step  # the step of the state on disk (none yet for a new run: 0 is never saved)

    def save(final: bool) -> None:
        nonlocal saved_step
        saved_step = step
        rngs = gather(rng_state(), world)
        if main:
            save_state(files.state, model=model, optimizer=optimizer, scheduler=scheduler, step=step, rngs=rngs,
                       args=args, val_loss=last_val, init=init)
            save_checkpoint(model, files.model, provenance(args, data, step=step, final=final, val_loss=last_val,
                                                          world=world, loss_weights=weights, init=init,
                                                          teacher=teacher.record(args.teacher_weight) if teacher else None))

    report = progress if main and callable(progress) else (lambda *_: None)
    t_start = t_rate = t_log = time.perf_counter()
    first, steps_at_rate, steps_at_log, rate = step, step, step, 0.0
    running: dict[str, float] = {}
    last_train: dict[str, float] = {}
    out_of_time = False
    net.train()
    report(step, args.steps, float("nan"), 0.0)
    try:
        while step < end:
            if args.gate_only:
                loss, terms = _gate_step(model, data.images, args, step, rank, world, aug, device)
            else:
                loss, terms = _fusion_step(net, model, data.images, args, weights, teacher, step, rank, world, aug,
                                           device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            for k, v in {"loss": loss.detach(), **terms, "grad_norm": grad_norm}.items():
                running[k] = running.get(k, 0.0) + float(v)
            now = time.perf_counter()
            if now - t_rate > 2.0 or step == end:
                rate, t_rate, steps_at_rate = (step - steps_at_rate) / (now - t_rate), now, step
            report(step, args.steps, float(loss.detach()), rate)
            if step % args.log_every == 0 or step == end:
                n = step - steps_at_log
                last_train = {k: v / n for k, v in running.items()}
                log({"type": "train", "step": step, "lr": scheduler.get_last_lr()[0],
                     "steps_per_s": n / max(now - t_log, 1e-9), **last_train})
                running, t_log, steps_at_log = {}, now, step
            if args.max_minutes > 0:  # every rank must stop at the same step
                out_of_time = any_rank(now - t_start > 60 * args.max_minutes, world, device)
            if step == end or out_of_time:
                break
            if args.val_every > 0 and step % args.val_every == 0:
                validate()
                save(final=False)
    except KeyboardInterrupt:
        # Ctrl-C: the steps done since the last save are saved, then the interrupt goes on (a single process;
        # under torchrun each rank stops at its own point, so the last periodic save stands).
        if world == 1 and step > saved_step:
            save(final=False)
        raise
    validate()
    save(final=step >= args.steps)
    barrier(world)
    elapsed = time.perf_counter() - t_start
    return result(steps_per_s=(step - first) / elapsed if elapsed > 0 else 0.0, trained_steps=step - first,
                  stopped=_stopped(step, args, out_of_time), loss=last_train.get("loss"), minutes=elapsed / 60,
                  val=last_record)
