"""Issue 5's bars, measured: the shipped model against the classical baselines on the validation split.

    python benchmarks/evaluate_model.py --weights weights/swinfuse-default.safetensors \
        --data ../shared/data/roadscene --json-out benchmarks/validation.json --figures docs

1. Clean validation pairs (the last 21 stems, never trained on): the model with a neutral prompt against
   mean(Y, IR), max(Y, IR) and a Laplacian pyramid, on the nine metrics (EN SD SF AG MI SCD VIF Qabf SSIM;
   Nabf reported too). Every fused image is quantised to 8 bits first, as it would be written.
2. Degraded validation pairs, one fixed degradation per kind and pair (training's `degrade_fixed`): the
   model with the matching prompt, with a held-out paraphrase never trained on, and with a neutral prompt;
   metrics against the CLEAN sources. "Matching beats neutral" for a kind means it wins on more of the nine
   metrics than it loses. The baselines get the degraded inputs too, for the Qabf comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import fuse_laplacian, fuse_max, fuse_mean  # noqa: E402

NINE = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")
BASELINES = {"mean": fuse_mean, "max": fuse_max, "laplacian": fuse_laplacian}


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _metrics(job):
    from swinfuse_cli.metrics import compute_metrics

    key, fused, ir, vis = job
    return key, compute_metrics(fused, ir, vis)


def _mean(records: list[dict]) -> dict:
    return {k: float(np.nanmean([r[k] for r in records])) for k in records[0]}


def _wins(a: dict, b: dict) -> tuple[int, int]:
    """(metrics where a beats b, where b beats a) over the nine; all nine are higher-is-better."""
    return sum(a[k] > b[k] for k in NINE), sum(a[k] < b[k] for k in NINE)


def _table(title: str, rows: dict[str, dict]) -> str:
    cols = list(NINE) + ["Nabf"]
    lines = [title, f"{'method':<22}" + "".join(f"{c:>9}" for c in cols)]
    for name, m in rows.items():
        lines.append(f"{name:<22}" + "".join(f"{m[c]:>9.3f}" for c in cols))
    return "\n".join(lines)


def main(argv=None) -> int:
    import torch

    from swinfuse_cli.data.io import read_infrared, read_visible
    from swinfuse_cli.model.checkpoint import load_checkpoint
    from swinfuse_cli.training.degrade import KINDS, degrade_fixed
    from swinfuse_cli.training.prompts import HELD_OUT, canonical_prompt
    from swinfuse_cli.training.trainer import split_pairs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="weights/swinfuse-default.safetensors")
    ap.add_argument("--data", default="../shared/data/roadscene")
    ap.add_argument("--val-count", type=int, default=21)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N validation pairs (0: all)")
    ap.add_argument("--degraded-pairs", type=int, default=21, help="validation pairs used per degradation kind")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--figures", default=None, help="folder for the README pictures")
    ap.add_argument("--ship", default=None, help="write the checkpoint here with these results added to its "
                                                 "provenance (how weights/ gets its default model)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, meta = load_checkpoint(args.weights)
    _, val = split_pairs(args.data, args.val_count)
    val = val[:args.limit] if args.limit else val
    neutral = canonical_prompt("none")
    print(f"weights {args.weights} sha256:{meta['sha256'][:12]}  validation pairs: {len(val)}  "
          f"neutral prompt: {neutral!r}", flush=True)

    def fuse(ir: np.ndarray, y: np.ndarray, prompt: str) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(ir)[None, None], torch.from_numpy(y)[None, None], prompt)
        return out[0, 0].clamp(0, 1).numpy() * 255.0

    sources = [(stem, read_infrared(ir), read_visible(vis).y) for stem, ir, vis in val]
    jobs, started = [], time.perf_counter()
    # 1. clean validation
    for stem, ir, y in sources:
        ir255, y255 = ir * 255.0, y * 255.0
        jobs.append((("clean", "swinfuse", stem), _u8(fuse(ir, y, neutral)), _u8(ir255), _u8(y255)))
        for name, fn in BASELINES.items():
            jobs.append((("clean", name, stem), _u8(fn(y255, ir255)), _u8(ir255), _u8(y255)))
    # 2. degraded validation, metrics against the clean sources
    for kind in KINDS:
        if kind == "none":
            continue
        for i, (stem, ir, y) in enumerate(sources[:args.degraded_pairs]):
            d_ir, d_y = degrade_fixed(kind, torch.from_numpy(ir)[None], torch.from_numpy(y)[None], seed=i)
            d_ir, d_y = d_ir[0].numpy(), d_y[0].numpy()
            clean = (_u8(ir * 255.0), _u8(y * 255.0))
            for label, prompt in (("matching", canonical_prompt(kind)), ("held-out", HELD_OUT[kind][0]),
                                  ("neutral", neutral)):
                jobs.append(((kind, label, stem), _u8(fuse(d_ir, d_y, prompt)), *clean))
            for name, fn in BASELINES.items():
                jobs.append(((kind, name, stem), _u8(fn(d_y * 255.0, d_ir * 255.0)), *clean))
    print(f"fused {len(jobs)} images in {time.perf_counter() - started:.0f} s; computing metrics", flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_metrics, jobs, chunksize=4))

    groups: dict[tuple[str, str], list[dict]] = {}
    for (scenario, method, _), metrics in results:
        groups.setdefault((scenario, method), []).append(metrics)
    means = {k: _mean(v) for k, v in groups.items()}

    report = {"weights": str(args.weights), "sha256": meta["sha256"], "neutral_prompt": neutral,
              "validation_stems": [s for s, _, _ in val], "clean": {}, "degraded": {}}
    clean = {m: means[("clean", m)] for m in ("swinfuse", *BASELINES)}
    report["clean"] = clean
    print()
    print(_table(f"Clean validation pairs ({len(val)}), means:", clean))
    print()
    for base in BASELINES:
        won, lost = _wins(clean["swinfuse"], clean[base])
        print(f"swinfuse vs {base:<9}: better on {won}/9, worse on {lost}/9")
        report["clean"][f"wins_vs_{base}"] = won

    print()
    kinds_prompt_ok, kinds_heldout_ok, kinds_qabf_ok = 0, 0, 0
    for kind in KINDS if args.degraded_pairs > 0 else ():  # 0: the clean table only (a quick look)
        if kind == "none":
            continue
        rows = {m: means[(kind, m)] for m in ("matching", "held-out", "neutral", *BASELINES)}
        won, lost = _wins(rows["matching"], rows["neutral"])
        hwon, hlost = _wins(rows["held-out"], rows["neutral"])
        qabf_ok = all(rows["matching"]["Qabf"] > rows[b]["Qabf"] for b in BASELINES)
        kinds_prompt_ok += won > lost
        kinds_heldout_ok += hwon > hlost
        kinds_qabf_ok += qabf_ok
        report["degraded"][kind] = {**rows, "matching_vs_neutral": [won, lost], "heldout_vs_neutral": [hwon, hlost],
                                    "qabf_beats_all_baselines": qabf_ok,
                                    "prompts": {"matching": canonical_prompt(kind), "held-out": HELD_OUT[kind][0]}}
        print(_table(f"{kind} (metrics against the clean sources):", rows))
        print(f"  matching vs neutral: better on {won}/9, worse on {lost}/9; held-out paraphrase vs neutral: "
              f"{hwon}/9 vs {hlost}/9; matching Qabf beats all three baselines: {qabf_ok}")
        print()
    summary = {"matching_beats_neutral_kinds": kinds_prompt_ok, "heldout_beats_neutral_kinds": kinds_heldout_ok,
               "qabf_beats_baselines_kinds": kinds_qabf_ok}
    report["summary"] = summary
    if args.degraded_pairs > 0:
        print(f"matching prompt beats neutral on {kinds_prompt_ok}/8 kinds (held-out paraphrase: {kinds_heldout_ok}/8); "
              f"matching-prompt Qabf beats all baselines on {kinds_qabf_ok}/8 kinds")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))
    if args.figures:
        _figures(Path(args.figures), sources, fuse, neutral)
    if args.ship and args.degraded_pairs > 0:
        from swinfuse_cli.model.checkpoint import save_checkpoint

        provenance = dict(meta["provenance"])
        provenance["validation_metrics"] = {
            "command": "python benchmarks/evaluate_model.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "clean_means": {m: clean[m] for m in ("swinfuse", *BASELINES)},
            "wins_vs_baselines": {b: report["clean"][f"wins_vs_{b}"] for b in BASELINES},
            "degraded": summary}
        save_checkpoint(model, args.ship, provenance)
        print(f"shipped {args.ship}")
    return 0


def _figures(folder: Path, sources, fuse, neutral: str) -> None:
    """README pictures: infrared | visible | fused for a validation pair; a degraded pair, neutral vs matching."""
    import cv2
    import torch

    from swinfuse_cli.training.degrade import degrade_fixed
    from swinfuse_cli.training.prompts import canonical_prompt

    folder.mkdir(parents=True, exist_ok=True)

    def tile(img01: np.ndarray, caption: str) -> np.ndarray:
        t = cv2.cvtColor(_u8(img01 * 255.0 if img01.max() <= 1.0 else img01), cv2.COLOR_GRAY2BGR)
        cv2.rectangle(t, (0, 0), (t.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(t, caption, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        return t

    stem, ir, y = sources[0]
    row = [tile(ir, "infrared"), tile(y, "visible (Y)"), tile(fuse(ir, y, neutral) / 255.0, "swinfuse")]
    cv2.imwrite(str(folder / "fused_example.png"), np.hstack(row))
    kind = "vis_overexposure"
    d_ir, d_y = degrade_fixed(kind, torch.from_numpy(ir)[None], torch.from_numpy(y)[None], seed=0)
    d_ir, d_y = d_ir[0].numpy(), d_y[0].numpy()
    row = [tile(d_y, "visible, overexposed"), tile(fuse(d_ir, d_y, neutral) / 255.0, f"prompt: '{neutral}'"),
           tile(fuse(d_ir, d_y, canonical_prompt(kind)) / 255.0, f"prompt: '{canonical_prompt(kind)}'")]
    cv2.imwrite(str(folder / "prompt_effect.png"), np.hstack(row))
    print(f"figures from validation pair {stem} in {folder}")


if __name__ == "__main__":
    raise SystemExit(main())
