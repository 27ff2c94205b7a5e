"""What a training run is asked to do and what it did: `TrainArgs` (the options of `swinfuse train`, saved
as JSON in the trainer state), their checks, the model configuration they describe, and `TrainResult`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from swinfuse.errors import ConfigError
from swinfuse.model.config import OUTPUTS
from swinfuse.training.batches import WRONG_PROMPT_INPUTS
from swinfuse.training.losses import GRADIENT_TARGETS, INTENSITY_TARGETS, OPTIONAL_WEIGHTS, WEIGHTS, intensity_share
from swinfuse.training.sampling import Augment, as_specs


@dataclass
class TrainArgs:
    data: str | tuple[str, ...] = ()  # folders, `DIR` or `DIR:WEIGHT`; the first one's last val_count stems are val
    val_data: tuple[str, ...] = ()  # folders validated on whole, never trained on (other cameras)
    out: str = "runs/default"
    preset: str = "default"
    steps: int = 3000  # length of the LR schedule
    stop_after: int = 0  # stop (and checkpoint) at this step; 0 = at `steps`. Resume to continue
    max_minutes: float = 0.0  # stop (and checkpoint) after this much wall time; 0 = no limit
    batch_size: int = 8  # global: split over the processes
    lr: float = 2e-4
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    warmup: int = 100
    grad_clip: float = 1.0
    crop: int = 64
    prompt_augment: float = 0.3  # probability that a training prompt gets random word edits
    val_count: int = 21  # the last `val_count` stems (sorted) of the first folder are validation, never trained on
    rescale: float = 1.0  # random rescale of each crop, log-uniform in [1/rescale, rescale]; 1: none
    gamma_jitter: float = 0.0  # per-modality gamma exp(U(-g, g)) on the clean sources; 0: none
    gain_jitter: float = 0.0  # per-modality gain U(1 - g, 1); 0: none
    clean_share: float = 0.0  # probability of the 'none' kind; 0: uniform over all 9 kinds
    wrong_prompt_share: float = 0.0  # probability that the prompt names a degradation the input does not have
    wrong_prompt_on: str = "any"  # which inputs may get a wrong prompt: 'any' or 'clean' (batches.WRONG_PROMPT_INPUTS)
    # weight of L1(output, the same network's output with the neutral prompt, no gradient) on the clean
    # samples whose prompt names a degradation: a wrong prompt should leave a clean fusion as it is; 0: off
    prompt_consistency: float = 0.0
    # share of degraded samples given a neutral prompt, their target the degraded sources as given; 0: none
    neutral_on_degraded: float = 0.0
    prompt_gate: bool = False  # the preset with FusionConfig.prompt_gate on (model/gate.py)
    gate_weight: float = 0.0  # weight of the gate's cross-entropy against 'the prompt names the degradation applied'
    # fit only the prompt gate of the --init network (everything else frozen, in eval mode) on crops of several
    # sizes and whole frames (batches.make_gate_batch): the gate is used on whole frames, trained on crops
    gate_only: bool = False
    gradient_target: str = "magnitude"  # L_grad's target: SwinFusion's 'magnitude' or 'signed' (losses.py)
    intensity_target: str = "max"  # L_int's target: SwinFusion's 'max' or 'max-matched' (losses.py)
    bf16: bool = False  # bf16 autocast for forward and loss (CPU AVX-512 bf16 / CUDA)
    val_every: int = 250
    val_crop: int = 96
    log_every: int = 25
    seed: int = 0
    resume: bool = False
    overwrite: bool = False  # start over in a run folder that holds a run
    init: str = ""  # warm start: weights from this checkpoint (same preset); fresh optimizer and schedule
    loss_weights: tuple[float, ...] = tuple(WEIGHTS.values())  # in WEIGHTS' order: ssim, intensity, gradient
    device: str = "auto"
    threads: int = 0  # 0: torch's default
    progress: bool = True  # the command draws a progress bar (the library reports to api.train's `progress`)
    command: str = ""  # recorded in the checkpoint; empty: sys.argv
    # "" (or "compact"): the preset's compact encoder, trained with the network; "MODEL:TAG" or "MODEL:FILE":
    # a frozen pretrained open_clip text encoder (TextEncoderSpec.parse), the FiLM layers sized to its vectors
    text_encoder: str = ""
    # "seafusion:ROOT": a frozen teacher whose output on the clean sources (shifted to the brighter source's
    # mean) is one more L1 target, at teacher_weight (training/teacher.py); "": none
    teacher: str = ""
    teacher_weight: float = 0.0
    teacher_shift: str = "crop"  # where the teacher target's shift is measured: 'crop' or 'frame' (teacher.py)
    # deeper Swin stages than the preset's, "ex=3,fusion=3,re=3/3" (a group left out keeps the preset's
    # depths); with --init, the blocks the checkpoint lacks start as the identity (state.warm_start)
    depths: str = ""
    # the head's output (FusionConfig.output): "" keeps the preset's; "mix", "mix-fine" or "mixed-base" from a
    # "direct" --init starts with the head's last conv at zero, the fusion then mean(visible, infrared) or the
    # base (state.warm_start)
    output: str = ""
    # output 'mixed-base': the deviations' gain of its base (FusionConfig.base_gain); 0 keeps the preset's
    base_gain: float = 0.0


# Settings a resumed run must share with the saved one; a key older states lack takes its default.
RESUME_KEYS = ("preset", "crop", "batch_size", "seed", "steps", "lr", "warmup", "data", "val_count", "init",
               "loss_weights", "rescale", "gamma_jitter", "gain_jitter", "clean_share", "wrong_prompt_share",
               "wrong_prompt_on", "prompt_consistency", "prompt_gate", "gate_weight", "gate_only",
               "neutral_on_degraded", "gradient_target", "intensity_target",
               "text_encoder", "teacher", "teacher_weight", "depths", "teacher_shift", "output",
               "base_gain")


@dataclass
class TrainResult:
    """What one call of `train` did. `step`/`steps`: where the run stands; `trained_steps`: the steps this
    call ran (0: the run was already at its end, nothing was rewritten)."""

    run_dir: str
    step: int
    steps: int
    finished: bool
    val_loss: float | None
    steps_per_s: float
    checkpoint: str
    trained_steps: int = -1  # -1: not counted
    stopped: str = ""  # why it stopped: 'finished' (at --steps), 'stop-after' or 'max-minutes'
    loss: float | None = None  # mean training loss of the last logged steps
    minutes: float = 0.0  # wall time of this call's steps
    state: str = ""  # trainer_state.pt: what --resume continues from
    log: str = ""  # log.jsonl
    val: dict | None = None  # the last validation this call made: per kind, held-out, neutral, other cameras
    world_size: int = 1


def check_loss_weights(values) -> dict[str, float]:
    """Three finite non-negative numbers in WEIGHTS' order, then optionally OPTIONAL_WEIGHTS' in order (pyramid,
    scd) -> {name: weight}; ConfigError otherwise."""
    names = [*WEIGHTS, *OPTIONAL_WEIGHTS]
    try:
        weights = [float(v) for v in values]
    except (TypeError, ValueError):
        weights = []
    if not len(WEIGHTS) <= len(weights) <= len(names) or not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ConfigError(f"loss weights must be {len(WEIGHTS)} non-negative numbers ({', '.join(WEIGHTS)}), "
                          f"then optionally {', '.join(OPTIONAL_WEIGHTS)}; got {values!r}")
    return dict(zip(names, weights))


def text_encoder_spec(value: str):
    """--text-encoder -> None (the preset's compact encoder) or the CLIP TextEncoderSpec it names; the spec
    parses and checks itself (an empty tag is refused there)."""
    from swinfuse.model.config import TextEncoderSpec

    if value.strip() in ("", "compact"):
        return None
    return TextEncoderSpec.parse(value)


def normalised(args: TrainArgs) -> TrainArgs:
    """The args checked before anything is made, with data folders as `DIR[:WEIGHT]` strings in a tuple and
    the text encoder as its spec writes it (JSON-stable, so a resumed run compares equal)."""
    specs = as_specs(args.data)
    if args.gradient_target not in GRADIENT_TARGETS:
        raise ConfigError(f"gradient target must be one of {', '.join(GRADIENT_TARGETS)}, got {args.gradient_target!r}")
    try:
        intensity_share(args.intensity_target)
    except ValueError:
        raise ConfigError(f"intensity target must be one of {', '.join(INTENSITY_TARGETS)} (mixed:S, S in [0, 1]), "
                          f"got {args.intensity_target!r}") from None
    if not 0 <= args.wrong_prompt_share <= 1:
        raise ConfigError(f"wrong prompt share must be in [0, 1], got {args.wrong_prompt_share}")
    if args.wrong_prompt_on not in WRONG_PROMPT_INPUTS:
        raise ConfigError(f"wrong prompt inputs must be one of {', '.join(WRONG_PROMPT_INPUTS)}, "
                          f"got {args.wrong_prompt_on!r}")
    if not (math.isfinite(args.prompt_consistency) and args.prompt_consistency >= 0):
        raise ConfigError(f"prompt consistency must be a non-negative number, got {args.prompt_consistency}")
    if args.prompt_consistency > 0 and not (args.wrong_prompt_share > 0 and args.clean_share > 0):
        raise ConfigError("--prompt-consistency needs clean samples with wrong prompts: set --clean-share and "
                          "--wrong-prompt-share above 0")
    if not 0 <= args.neutral_on_degraded <= 1:
        raise ConfigError(f"neutral-on-degraded share must be in [0, 1], got {args.neutral_on_degraded}")
    if not (math.isfinite(args.gate_weight) and args.gate_weight >= 0):
        raise ConfigError(f"gate weight must be a non-negative number, got {args.gate_weight}")
    if args.gate_weight > 0 and not args.prompt_gate:
        raise ConfigError("--gate-weight trains the prompt gate: add --prompt-gate")
    if args.gate_only and not (args.prompt_gate and args.init):
        raise ConfigError("--gate-only fits the prompt gate of a trained network: add --prompt-gate and --init CKPT")
    if not 0 <= args.clean_share <= 1:
        raise ConfigError(f"clean share must be in [0, 1], got {args.clean_share}")
    if not (math.isfinite(args.teacher_weight) and args.teacher_weight >= 0):
        raise ConfigError(f"teacher weight must be a non-negative number, got {args.teacher_weight}")
    if bool(args.teacher.strip()) != (args.teacher_weight > 0):
        raise ConfigError("--teacher and --teacher-weight go together: a teacher needs a weight above 0, "
                          "and a weight needs a teacher")
    if args.teacher_shift not in ("crop", "frame"):
        raise ConfigError(f"teacher shift must be 'crop' or 'frame', got {args.teacher_shift!r}")
    if args.output and args.output not in OUTPUTS:
        raise ConfigError(f"output must be {', '.join(map(repr, OUTPUTS[:-1]))} or {OUTPUTS[-1]!r}, "
                          f"got {args.output!r}")
    if not (math.isfinite(args.base_gain) and 0 <= args.base_gain <= 2):
        raise ConfigError(f"base gain must be in [0, 2] (0 keeps the preset's), got {args.base_gain}")
    Augment(rescale=args.rescale, gamma=args.gamma_jitter, gain=args.gain_jitter)
    parse_depths(args.depths)
    text = text_encoder_spec(args.text_encoder)
    return dataclasses.replace(args, data=tuple(str(s) for s in specs), val_data=tuple(str(d) for d in args.val_data),
                               text_encoder=f"{text.model_name}:{text.pretrained}" if text else "")


DEPTH_GROUPS = ("ex", "fusion", "re")


def parse_depths(text: str) -> dict[str, tuple[int, ...]]:
    """--depths "ex=3,fusion=3,re=3/3" -> {"ex_depths": (3,), "fusion_depths": (3,), "re_depths": (3, 3)}: one
    depth per stage of the group, '/' between stages. The stage counts are checked against the preset's."""
    out: dict[str, tuple[int, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        group, sep, value = part.partition("=")
        if not sep or group.strip() not in DEPTH_GROUPS:
            raise ConfigError(f"depths entries are GROUP=DEPTH (DEPTH/DEPTH for two stages) with GROUP one of "
                              f"{', '.join(DEPTH_GROUPS)}, got {part!r}")
        try:
            depths = tuple(int(d) for d in value.split("/"))
        except ValueError:
            raise ConfigError(f"depths entry {part!r}: depths must be whole numbers") from None
        if any(d < 1 for d in depths):
            raise ConfigError(f"depths entry {part!r}: every depth must be >= 1")
        key = f"{group.strip()}_depths"
        if key in out:
            raise ConfigError(f"depths names {group.strip()!r} twice")
        out[key] = depths
    return out


def model_config(args: TrainArgs):
    """The preset at the crop size, with the CLIP text encoder of --text-encoder when given: text_dim is then
    the width of that model's text vectors (an unknown model name is left to the encoder to refuse)."""
    from swinfuse.model.config import FusionConfig

    config = FusionConfig.preset(args.preset, img_size=args.crop, **({"prompt_gate": True} if args.prompt_gate else {}))
    depths = parse_depths(args.depths)
    for key, value in depths.items():
        if len(value) != len(getattr(config, key)):
            raise ConfigError(f"--depths gives {len(value)} stage(s) for {key.split('_')[0]}, preset "
                              f"{args.preset!r} has {len(getattr(config, key))}")
    config = dataclasses.replace(config, **depths, **({"output": args.output} if args.output else {}),
                                 **({"base_gain": args.base_gain} if args.base_gain else {}))
    text = text_encoder_spec(args.text_encoder)
    if text is None:
        return config
    import open_clip

    clip = open_clip.get_model_config(text.model_name)
    return dataclasses.replace(config, text=text, text_dim=clip["embed_dim"] if clip else config.text_dim)
