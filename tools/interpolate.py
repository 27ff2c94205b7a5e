"""Interpolate a fine-tuned checkpoint's weights towards the checkpoint it was warm-started from (WiSE-FT:
Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022): (1 - alpha) x fine-tuned + alpha x start.
Fine-tuning on a recipe that helps one camera can cost the cameras it never saw; a point on the line between the
two networks often keeps most of the gain and most of what the start had.

    python tools/interpolate.py --weights runs/f64/model.safetensors --towards runs/snaps/start.safetensors \
        --alpha 0.5 --out runs/f64-wise50.safetensors

Both files must hold the same architecture (config). The result's provenance is the fine-tuned run's, with an
`interpolated` record (the start's path and sha256, alpha, this command); `ship.py` keeps it. Buffers that are not
floating point (none today) are taken from --weights.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def interpolate(weights: str, towards: str, alpha: float, out: str, command: str = "") -> Path:
    from swinfuse.errors import CheckpointError
    from swinfuse.model.checkpoint import load_checkpoint, save_checkpoint

    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    model, meta = load_checkpoint(weights)
    start, start_meta = load_checkpoint(towards)
    if meta["config"] != start_meta["config"]:
        raise CheckpointError(f"{towards} holds another architecture than {weights}: only the same config interpolates")
    theirs = start.state_dict()
    mixed = {k: (1 - alpha) * v + alpha * theirs[k] if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    model.load_state_dict(mixed)
    provenance = dict(meta["provenance"])
    provenance.pop("validation_metrics", None)  # measured on the fine-tuned weights, not on these
    provenance["interpolated"] = {"weights_sha256": meta["sha256"], "towards": str(towards),
                                  "towards_sha256": start_meta["sha256"], "alpha": alpha, "command": command}
    return save_checkpoint(model, out, provenance)


def main(argv=None) -> int:
    from swinfuse.errors import SwinfuseError

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="the fine-tuned checkpoint")
    ap.add_argument("--towards", required=True, help="the checkpoint it was warm-started from")
    ap.add_argument("--alpha", type=float, required=True, help="0: --weights as it is, 1: --towards")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if Path(args.out).exists():
        ap.error(f"{args.out} exists; choose another --out")
    command = "python tools/interpolate.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    try:
        path = interpolate(args.weights, args.towards, args.alpha, args.out, command)
    except (SwinfuseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({1 - args.alpha:g} x {args.weights} + {args.alpha:g} x {args.towards})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
