"""Ship a checkpoint with the evaluation it was judged by: copy `--weights` to `--out` with the results of an
`evaluate_model.py --json-out` run (of the same checkpoint, checked by SHA-256) added to its provenance.

    python tools/ship.py --weights runs/NEW.safetensors --results runs/eval.json \
        --command "python tools/evaluate_model.py ..." --out weights/swinfuse-default.safetensors

`evaluate_model.py --ship` does the same at the end of an evaluation; this script ships one made earlier, so a
long evaluation is not run twice. Per-image values stay in the JSON file, not in the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def lineage(provenance: dict, limit: int = 50) -> list[dict]:
    """Every earlier stage a warm-started checkpoint came from, newest first: each stage's own provenance (its
    command, data, augmentations, commit, step) without its validation, read from the --init file its `init`
    record names while that file is still there; the last entry says where the chain ends and why. A
    checkpoint's own `init` record holds only the stage before it. A stage that was itself shipped carries its
    own `lineage`: that record ends the walk (its earlier files are usually gone by then)."""
    from swinfuse.model.checkpoint import read_metadata

    stages, init = [], provenance.get("init")
    while init and len(stages) < limit:
        path = Path(init.get("path", ""))
        if not path.is_file():
            stages.append({"path": str(path), "sha256": init.get("sha256"), "command": init.get("command"),
                           "end": "file not found: its own command is above, earlier stages are not recorded"})
            return stages
        found = read_metadata(path)["provenance"]
        stage = {k: v for k, v in found.items() if k not in ("validation_metrics", "lineage")}
        stages.append({"path": str(path), "sha256": init.get("sha256"), **stage})
        if found.get("lineage"):
            return stages + list(found["lineage"])[:max(0, limit - len(stages))]
        init = stage.get("init")
    return stages


def main(argv=None) -> int:
    from swinfuse.model.checkpoint import load_checkpoint, save_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--results", required=True, help="evaluate_model.py --json-out file of this checkpoint")
    ap.add_argument("--command", required=True, help="the evaluate_model.py command that wrote --results")
    ap.add_argument("--note", default="", help="recorded beside the results (e.g. why this checkpoint)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    model, meta = load_checkpoint(args.weights)
    results = json.loads(Path(args.results).read_text())
    if results.get("sha256") != meta["sha256"]:
        print(f"error: {args.results} evaluated sha256 {str(results.get('sha256'))[:12]}, "
              f"{args.weights} is {meta['sha256'][:12]}", file=sys.stderr)
        return 1
    provenance = dict(meta["provenance"])
    provenance["validation_metrics"] = {
        "command": args.command, "note": args.note, "neutral_prompt": results["neutral_prompt"],
        "seafusion": results.get("seafusion"), "bars": results.get("bars"),
        "sets": {name: {k: v for k, v in s.items() if k != "per_image"} for name, s in results["sets"].items()},
        "bars_met": results.get("bars_met"), "degraded": results.get("degraded"), "summary": results.get("summary"),
    }
    provenance["lineage"] = lineage(meta["provenance"])
    save_checkpoint(model, args.out, provenance)
    print(f"shipped {args.out} (from {args.weights}, sha256 of the weights' source {meta['sha256'][:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
