"""The shipped model's bars, measured: on RoadScene's validation split and on out-of-distribution folders,
against the classical baselines and (given its code and checkpoint) the learned peer SeAFusion.

    # RoadScene split + out-of-distribution sets + SeAFusion, a candidate beside the shipped model
    taskset -c 1 python tools/evaluate_model.py --weights runs/new/model.safetensors \
        --compare-weights weights/swinfuse-default.safetensors \
        --data ../shared/data/roadscene --ood ../shared/data/m3svd_val --ood ../shared/data/m3fd_val \
        --seafusion-root /path/to/VIF-Benchmark --cache runs/seafusion_cache \
        --threads 1 --workers 1 --json-out runs/eval.json

1. Clean pairs of each set: RoadScene's validation split (the last 21 stems of --data, never trained on) and
   every pair of each --ood folder (cameras the training data does not have). Each model (--weights, and
   every --compare-weights) with the neutral prompt against mean(Y, IR), max(Y, IR) and a Laplacian pyramid,
   and against SeAFusion (--seafusion-root: a checkout of github.com/Linfeng-Tang/VIF-Benchmark, imported at
   run time, see seafusion_peer.py) under two conventions: raw against raw, and both stretched the way
   VIF-Benchmark saves SeAFusion's output (one global min-max of the colour image to 0..255, then its gray;
   the stretch rewards EN, SD, SF, AG). Nine metrics (EN SD SF AG MI SCD VIF Qabf SSIM; Nabf reported too),
   every fused image quantised to 8 bits first, as it would be written. "beats X on k/9": metrics where the
   model's mean is strictly higher. The tone of each output with the neutral prompt: its mean Y against the
   brighter source's, and its share of pixels at 250 or more against the sources'. The wrong-prompt measure:
   every pair fused again with each degradation's prompt, compared with the neutral fusion (skip it with
   --no-prompt-harm); a pair named by --present SET/STEM:KIND visibly carries that degradation, so the kind's
   prompt is not wrong there: the measure leaves it out and reports it apart. The bars, per set (BARS and the constants below): >= 6/9 against SeAFusion in both
   conventions, 9/9 against mean, worse than each compared model on at most 2, mean Y at most 5 levels above
   the brighter source, saturation at most 1 point above the sources', every wrong prompt within 3 % on each
   metric and 10 levels of mean Y; and MI among the wins against SeAFusion on at least two sets.
2. Degraded RoadScene validation pairs (skipped with --clean-only / --degraded-pairs 0; with --degraded-ood
   also every pair of each --ood set, pooled per kind: more pairs, cameras never trained on), one fixed
   degradation per kind and pair (training's `degrade_fixed`; --degraded-kinds picks some kinds): each model with the matching prompt, with a held-out
   paraphrase never trained on (five of them per kind, taking turns over the pairs), and with a neutral prompt; metrics against the CLEAN sources. "Matching beats
   neutral" for a kind means it wins on more of the nine metrics than it loses; reported beside it, issue 19's
   measure: better on both Qabf and VIF (EN, SD, SF and AG ignore the clean sources and rise with the noise a
   restoration removes). The baselines get the degraded inputs too, for the Qabf comparison.

SeAFusion's outputs are cached per image under --cache (keyed by its checkpoint and the input pixels), so a
second run only fuses with our models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import fuse_laplacian, fuse_max, fuse_mean  # noqa: E402
from swinfuse.fusing.options import TONES, FuseOptions  # noqa: E402  (standard library only: cheap)

NINE = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM")
BASELINES = {"mean": fuse_mean, "max": fuse_max, "laplacian": fuse_laplacian}
PEERS = ("SeAFusion-raw", "SeAFusion-stretched")
ROADSCENE = "roadscene-val"
STRETCHED = "-stretched"  # suffix of a model's output stretched as VIF-Benchmark saves SeAFusion's
# The bars, per set: (our output, reference, wins needed out of 9). Both conventions against SeAFusion: raw
# against raw, and ours stretched the way VIF-Benchmark stretches SeAFusion's against that.
BARS = (("", "SeAFusion-raw", 6), (STRETCHED, "SeAFusion-stretched", 6), ("", "mean", 9))
MI_SETS = 2  # MI must be among the wins against SeAFusion (both conventions) on at least this many sets
WORSE_THAN_COMPARED = 2  # at most this many metrics worse than each --compare-weights model, per set
# Tone with the neutral prompt, per set (means over its images): fused mean Y at most BRIGHTER_BY levels above
# the brighter source's, and at most SATURATED_BY points more pixels >= SATURATION than the more saturated source
BRIGHTER_BY, SATURATED_BY, SATURATION = 5.0, 1.0, 250
# A degradation prompt on a clean pair (the wrong prompt) must leave the fusion near the neutral one:
# every metric's set mean within HARM_METRIC (relative) and the mean Y within HARM_LEVELS
HARM_METRIC, HARM_LEVELS = 0.03, 10.0


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _tone(fused: np.ndarray, ir: np.ndarray, y: np.ndarray) -> dict:
    """8-bit fused and sources -> how far the fusion's mean Y is above the brighter source's (levels), and its
    share of pixels >= SATURATION above the more saturated source's (points)."""
    sat = [100.0 * float((a >= SATURATION).mean()) for a in (fused, ir, y)]
    return {"mean_y": float(fused.mean()), "above_brighter": float(fused.mean() - max(ir.mean(), y.mean())),
            "saturated": sat[0], "saturated_above_sources": sat[0] - max(sat[1:])}


def _metrics(job):
    from swinfuse.metrics import compute_metrics

    key, fused, ir, vis = job
    return key, compute_metrics(fused, ir, vis)


def _mean(records: list[dict]) -> dict:
    return {k: float(np.nanmean([r[k] for r in records])) for k in records[0]}


def _harm(neutral: list[dict], wrong: list[dict], neutral_tone: list[dict], wrong_tone: list[dict]) -> dict:
    """The wrong-prompt measure over some pairs: each metric's relative change of the set mean, the mean Y's
    change, the largest change and whether it is within HARM_METRIC and HARM_LEVELS."""
    a, b = _mean(neutral), _mean(wrong)
    rel = {k: float((b[k] - a[k]) / abs(a[k])) if a[k] else 0.0 for k in NINE}
    dy = _mean(wrong_tone)["mean_y"] - _mean(neutral_tone)["mean_y"]
    worst = max(rel, key=lambda k: abs(rel[k]))
    return {"relative": rel, "mean_y_change": dy, "worst_metric": worst,
            "ok": abs(rel[worst]) <= HARM_METRIC and abs(dy) <= HARM_LEVELS}


def _wins(a: dict, b: dict) -> tuple[int, int]:
    """(metrics where a beats b, where b beats a) over the nine; all nine are higher-is-better."""
    return sum(a[k] > b[k] for k in NINE), sum(a[k] < b[k] for k in NINE)


def _signs(a: dict, b: dict) -> str:
    """Metric by metric: '+' where a is higher, '-' lower, '=' equal."""
    return " ".join(f"{k}{'+' if a[k] > b[k] else '-' if a[k] < b[k] else '='}" for k in NINE)


def _table(title: str, rows: dict[str, dict]) -> str:
    cols = list(NINE) + ["Nabf"]
    width = max(22, *(len(n) + 2 for n in rows))
    lines = [title, f"{'method':<{width}}" + "".join(f"{c:>9}" for c in cols)]
    for name, m in rows.items():
        lines.append(f"{name:<{width}}" + "".join(f"{m[c]:>9.3f}" for c in cols))
    return "\n".join(lines)


def _model_tags(others: list[str]) -> list[str]:
    """'swinfuse' for --weights (the name the JSON always used), 'cmp:<file stem>' for each compared one."""
    tags = ["swinfuse"]
    for i, path in enumerate(others):
        tag = f"cmp:{Path(path).name.split('.')[0]}"
        tags.append(tag if tag not in tags else f"{tag}#{i + 1}")
    return tags


class _PeerCache:
    """SeAFusion's (raw, stretched) per image, computed once: DIR/<set>/<stem>.npz with a key of the checkpoint's
    sha256 and the input pixels (a changed file or checkpoint recomputes)."""

    def __init__(self, peer, folder: str | None):
        self.peer, self.folder = peer, Path(folder) if folder else None
        self.hits = self.misses = 0
        self.seconds = 0.0

    def get(self, set_name: str, stem: str, ir, vis):
        h = hashlib.sha256(self.peer.sha256.encode())
        for a in (ir, vis.y, vis.cr, vis.cb):
            h.update(b"-" if a is None else np.ascontiguousarray(a, np.float32).tobytes())
        key = h.hexdigest()[:24]
        path = self.folder / set_name / f"{stem.replace('/', '__')}.npz" if self.folder else None
        if path is not None and path.is_file():
            try:
                with np.load(path) as z:
                    if str(z["key"]) == key:
                        self.hits += 1
                        return z["raw"], z["stretched"]
            except (OSError, KeyError, ValueError):
                pass  # unreadable or stale: recompute
        started = time.perf_counter()
        raw, stretched = self.peer.fuse(ir, vis.y, vis.cr, vis.cb)
        self.seconds += time.perf_counter() - started
        self.misses += 1
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{key[:8]}.tmp.npz")
            np.savez_compressed(tmp, raw=raw, stretched=stretched, key=np.array(key))
            tmp.replace(path)
        return raw, stretched


def main(argv=None) -> int:
    import torch

    from swinfuse.data.io import read_infrared, read_visible
    from swinfuse.data.pairs import find_pairs
    from swinfuse.model.checkpoint import load_checkpoint
    from swinfuse.model.cpu_inference import enable_cpu_inference
    from swinfuse.training.degrade import KINDS, degrade_fixed
    from swinfuse.training.prompts import HELD_OUT, canonical_prompt
    from swinfuse.training.batches import split_pairs
    from seafusion_peer import stretch_like_vif_benchmark

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="weights/swinfuse-default.safetensors")
    ap.add_argument("--compare-weights", action="append", default=[], metavar="PATH",
                    help="another checkpoint evaluated side by side on the same pairs (repeatable)")
    ap.add_argument("--data", default="../shared/data/roadscene",
                    help="RoadScene folder whose last --val-count pairs are the validation split ('' to skip it)")
    ap.add_argument("--val-count", type=int, default=21)
    ap.add_argument("--ood", action="append", default=[], metavar="DIR",
                    help="an out-of-distribution folder (ir/ + vis/ or another known layout); every pair is "
                         "validation (repeatable)")
    ap.add_argument("--seafusion-root", default=None, metavar="PATH",
                    help="VIF-Benchmark checkout (SeAFusion/FusionNet.py, Checkpoint/SeAFusion/SeAFusion.pth): "
                         "adds SeAFusion, raw and stretched, to every set")
    ap.add_argument("--cache", default=None, metavar="DIR", help="cache SeAFusion's outputs here")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N pairs of every set (0: all)")
    ap.add_argument("--degraded-pairs", type=int, default=21, help="validation pairs used per degradation kind")
    ap.add_argument("--clean-only", action="store_true", help="skip the degraded pairs (= --degraded-pairs 0)")
    ap.add_argument("--degraded-ood", action="store_true",
                    help="degrade every pair of each --ood set too, pooled with the RoadScene pairs per kind")
    ap.add_argument("--degraded-kinds", default="", metavar="K1,K2",
                    help="only these degradation kinds (default: all eight)")
    ap.add_argument("--held-out-wordings", type=int, default=5, choices=range(1, 6), metavar="1..5",
                    help="paraphrases never trained on, taking turns over the degraded pairs (pair i gets i mod N)")
    ap.add_argument("--no-prompt-harm", action="store_true",
                    help="skip fusing the clean pairs with every degradation prompt (the wrong-prompt measure)")
    ap.add_argument("--present", action="append", default=[], metavar="SET/STEM:KIND",
                    help="a clean pair that visibly carries this degradation (a foggy frame for vis_haze): that "
                         "kind's prompt applies there, so the wrong-prompt measure of the kind leaves the pair out "
                         "and reports it apart (repeatable; SET as the report names it, e.g. m3fd_val)")
    ap.add_argument("--tone", default=FuseOptions().tone, choices=TONES,
                    help="the models' tone option, as `swinfuse fuse --tone` (default: the product's, cap)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out", default=None, help="write the whole report, per-image values included, as JSON "
                    "(what tools/ship.py reads; large, so keep it out of the repository: runs/ is ignored)")
    ap.add_argument("--figures", default=None, help="folder for the README pictures")
    ap.add_argument("--figure-kind", default="vis_haze", help="degradation shown in the prompt figure")
    ap.add_argument("--ship", default=None, help="write the checkpoint here with these results added to its "
                                                 "provenance (how weights/ gets its default model)")
    args = ap.parse_args(argv)
    if args.clean_only:
        args.degraded_pairs = 0
    all_kinds = [k for k in KINDS if k != "none"]
    degraded_kinds = [k.strip() for k in args.degraded_kinds.split(",") if k.strip()] or all_kinds
    unknown = [k for k in degraded_kinds if k not in all_kinds]
    if unknown:
        ap.error(f"--degraded-kinds: unknown kind(s) {', '.join(unknown)}; known: {', '.join(all_kinds)}")
    if args.ship and degraded_kinds != all_kinds:
        ap.error("--ship records the degraded summary of all eight kinds: leave out --degraded-kinds")
    present: dict[tuple[str, str], set[str]] = {}  # (set, kind) -> stems where the kind's prompt applies
    for item in args.present:
        where, _, kind = item.rpartition(":")
        set_name, _, stem = where.partition("/")
        if not set_name or not stem or kind not in all_kinds:
            ap.error(f"--present {item!r}: expected SET/STEM:KIND with KIND one of {', '.join(all_kinds)}")
        present.setdefault((set_name, kind), set()).add(stem)

    torch.set_num_threads(args.threads)
    tags = _model_tags(args.compare_weights)
    models, metas = {}, {}
    for tag, path in zip(tags, [args.weights, *args.compare_weights]):
        models[tag], metas[tag] = load_checkpoint(path)
        enable_cpu_inference(models[tag].eval())  # as swinfuse.api.load_model runs every command's model
    model, meta = models["swinfuse"], metas["swinfuse"]
    neutral = canonical_prompt("none")
    for tag, path in zip(tags, [args.weights, *args.compare_weights]):
        print(f"{tag}: weights {path} sha256:{metas[tag]['sha256'][:12]}", flush=True)
    print(f"neutral prompt: {neutral!r}; tone: {args.tone} (as swinfuse fuse --tone)", flush=True)

    peer = None
    if args.seafusion_root:
        from seafusion_peer import SeAFusionPeer

        peer = SeAFusionPeer(args.seafusion_root)
        print(f"SeAFusion: {peer.net_file.parent.parent} ({peer.params} params, checkpoint sha256:"
              f"{peer.sha256[:12]}); VIF-Benchmark's pre/post-processing, see tools/seafusion_peer.py",
              flush=True)
    cache = _PeerCache(peer, args.cache) if peer else None

    # the sets: (name, [(stem, ir path, vis path)])
    sets: list[tuple[str, list]] = []
    if args.data:
        _, val = split_pairs(args.data, args.val_count)
        sets.append((ROADSCENE, val))
    for folder in args.ood:
        found = find_pairs(folder)
        unmatched = [p.name for p in found.unmatched_ir + found.unmatched_vis]
        if unmatched:
            print(f"warning: {folder}: {len(unmatched)} unmatched files skipped: {', '.join(unmatched[:10])}",
                  file=sys.stderr)
        name = Path(folder).resolve().name
        while name in (n for n, _ in sets):
            name += "'"
        sets.append((name, [(p.rel, p.ir, p.vis) for p in found.pairs]))
    known = {(name, stem) for name, pairs in sets for stem, _, _ in pairs}
    for set_name, kind in present:  # a misspelt pair would silently stay in the measure
        for stem in sorted(present[(set_name, kind)]):
            if (set_name, stem) not in known:
                ap.error(f"--present {set_name}/{stem}:{kind}: no such pair in the sets evaluated "
                         f"({', '.join(name for name, _ in sets)})")
    sets = [(name, pairs[:args.limit] if args.limit else pairs) for name, pairs in sets]
    for name, pairs in sets:
        print(f"set {name}: {len(pairs)} pairs", flush=True)

    from swinfuse.fusing.forward import fuse_y

    def fuser(net):
        def fuse(ir: np.ndarray, y: np.ndarray, prompt: str) -> np.ndarray:  # the whole frame, as `fuse` writes it
            with torch.inference_mode():
                text = net.encode_prompts([prompt])
                return fuse_y(net, torch.from_numpy(ir)[None, None], torch.from_numpy(y)[None, None], text,
                              net.config.upscale, tone=args.tone) * 255.0
        return fuse

    fusers = {tag: fuser(m) for tag, m in models.items()}
    fuse = fusers["swinfuse"]
    stretched_tags = [t + STRETCHED for t in tags]
    methods = [*tags, *stretched_tags, *BASELINES, *(PEERS if peer else ())]
    wrong_kinds = [] if args.no_prompt_harm else [k for k in KINDS if k != "none"]
    tone: dict[tuple[str, str], list[dict]] = {}

    jobs, started, model_seconds = [], time.perf_counter(), {t: 0.0 for t in tags}
    roadscene_sources, ood_sources, figure_pairs = [], [], []
    # 1. clean pairs of every set
    for set_name, pairs in sets:
        for stem, ir_path, vis_path in pairs:
            ir, vis = read_infrared(ir_path), read_visible(vis_path)
            y = vis.y
            if set_name == ROADSCENE:
                roadscene_sources.append((stem, ir, y))
            elif args.degraded_ood:
                ood_sources.append((f"{set_name}/{stem}", ir, y))
            if set_name != ROADSCENE and args.figures and not figure_pairs:  # the README's picture: a camera never trained on
                figure_pairs.append((set_name, stem, ir, vis))
            ir255, y255 = ir * 255.0, y * 255.0
            src = (_u8(ir255), _u8(y255))
            for tag in tags:
                t0 = time.perf_counter()
                fused = fusers[tag](ir, y, neutral)
                model_seconds[tag] += time.perf_counter() - t0
                jobs.append(((set_name, tag, stem), _u8(fused), *src))
                tone.setdefault((set_name, tag), []).append(_tone(_u8(fused), *src))
                stretched = stretch_like_vif_benchmark(_u8(fused) / 255.0, vis.cr, vis.cb) * 255.0
                jobs.append(((set_name, tag + STRETCHED, stem), _u8(stretched), *src))
                for kind in wrong_kinds:  # a degradation prompt on a clean pair: the wrong prompt
                    wrong = _u8(fusers[tag](ir, y, canonical_prompt(kind)))
                    jobs.append(((f"{set_name} wrong:{kind}", tag, stem), wrong, *src))
                    tone.setdefault((f"{set_name} wrong:{kind}", tag), []).append(_tone(wrong, *src))
            for name, fn in BASELINES.items():
                jobs.append(((set_name, name, stem), _u8(fn(y255, ir255)), *src))
            for name, fn in BASELINES.items():
                tone.setdefault((set_name, name), []).append(_tone(_u8(fn(y255, ir255)), *src))
            if peer:
                raw, stretched = cache.get(set_name, stem, ir, vis)
                jobs.append(((set_name, "SeAFusion-raw", stem), _u8(raw * 255.0), *src))
                jobs.append(((set_name, "SeAFusion-stretched", stem), _u8(stretched * 255.0), *src))
                tone.setdefault((set_name, "SeAFusion-raw"), []).append(_tone(_u8(raw * 255.0), *src))
    # 2. degraded RoadScene validation (and with --degraded-ood every out-of-distribution pair), metrics against
    # the clean sources
    degraded_sources = roadscene_sources[:args.degraded_pairs] + ood_sources if args.degraded_pairs > 0 else []
    if degraded_sources:
        print(f"degraded pairs per kind: {len(degraded_sources)} ({min(len(roadscene_sources), args.degraded_pairs)} "
              f"RoadScene, {len(ood_sources)} out-of-distribution); kinds: {', '.join(degraded_kinds)}", flush=True)
    for kind in degraded_kinds if degraded_sources else ():
        for i, (stem, ir, y) in enumerate(degraded_sources):
            d_ir, d_y = degrade_fixed(kind, torch.from_numpy(ir)[None], torch.from_numpy(y)[None], seed=i)
            d_ir, d_y = d_ir[0].numpy(), d_y[0].numpy()
            clean = (_u8(ir * 255.0), _u8(y * 255.0))
            for tag in tags:
                prefix = "" if tag == "swinfuse" else f"{tag} "
                held_out = HELD_OUT[kind][i % args.held_out_wordings]  # the wordings take turns over the pairs
                for label, prompt in (("matching", canonical_prompt(kind)), ("held-out", held_out),
                                      ("neutral", neutral)):
                    jobs.append(((kind, prefix + label, stem), _u8(fusers[tag](d_ir, d_y, prompt)), *clean))
            for name, fn in BASELINES.items():
                jobs.append(((kind, name, stem), _u8(fn(d_y * 255.0, d_ir * 255.0)), *clean))
    timing = ", ".join(f"{t} {s:.0f} s" for t, s in model_seconds.items())
    peer_note = (f"; SeAFusion {cache.seconds:.0f} s ({cache.misses} computed, {cache.hits} from the cache)"
                 if peer else "")
    print(f"fused {len(jobs)} images in {time.perf_counter() - started:.0f} s (clean pairs: {timing}{peer_note}); "
          "computing metrics", flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_metrics, jobs, chunksize=4))

    groups: dict[tuple[str, str], list[dict]] = {}
    per_image: dict[str, dict[str, dict[str, dict]]] = {}
    for (scenario, method, stem), metrics in results:
        groups.setdefault((scenario, method), []).append(metrics)
        per_image.setdefault(scenario, {}).setdefault(method, {})[stem] = metrics
    means = {k: _mean(v) for k, v in groups.items()}

    report = {"weights": str(args.weights), "sha256": meta["sha256"], "neutral_prompt": neutral, "tone": args.tone,
              "models": {tag: {"weights": str(p), "sha256": metas[tag]["sha256"]}
                         for tag, p in zip(tags, [args.weights, *args.compare_weights])},
              "seafusion": None if not peer else {
                  "root": str(Path(args.seafusion_root).resolve()), "checkpoint": str(peer.checkpoint),
                  "checkpoint_sha256": peer.sha256, "params": peer.params,
                  "processing": "VIF-Benchmark SeAFusion/SeAFusion.py: Y of the PIL RGB visible and the PIL 'L' "
                                "infrared in [0, 1], FusionNet(vi_Y, ir); raw = network output; stretched = "
                                "YCbCr2RGB with the visible's Cr/Cb, one global min-max over RGB to 0..255, "
                                "uint8 truncation, then its BT.601 gray"},
              "bars": {ref: need for _, ref, need in BARS},
              "present": sorted(args.present),
              "validation_stems": [s for s, _, _ in next((p for n, p in sets if n == ROADSCENE), [])],
              "sets": {}, "clean": {}, "degraded": {}, "per_image": per_image}

    print()
    verdicts: dict[str, dict[str, bool]] = {tag: {} for tag in tags}
    mi_sets: dict[str, int] = {tag: 0 for tag in tags}
    for set_name, pairs in sets:
        rows = {m: means[(set_name, m)] for m in methods}
        title = (f"Clean validation pairs ({len(pairs)}, RoadScene's split), means:" if set_name == ROADSCENE
                 else f"Out-of-distribution set {set_name} ({len(pairs)} pairs, all validation), means:")
        print(_table(title, rows))
        entry = {"pairs": len(pairs), "stems": [s for s, _, _ in pairs], "means": rows, "wins": {},
                 "worse": {}, "metric_by_metric": {}, "bars": {}, "tone": {}, "prompt_harm": {}}
        for method in [*tags, *BASELINES, *(("SeAFusion-raw",) if peer else ())]:
            entry["tone"][method] = _mean(tone[(set_name, method)])
        for tag in tags:
            refs = [r for r in methods if r not in (tag, tag + STRETCHED)]
            entry["wins"][tag], entry["worse"][tag], entry["metric_by_metric"][tag] = {}, {}, {}
            for ref in refs:
                mine = rows[tag + STRETCHED] if ref == "SeAFusion-stretched" else rows[tag]  # equal footing
                won, lost = _wins(mine, rows[ref])
                entry["wins"][tag][ref], entry["worse"][tag][ref] = won, lost
                entry["metric_by_metric"][tag][ref] = {k: float(mine[k] - rows[ref][k]) for k in NINE}
                label = f"{tag + STRETCHED if ref == 'SeAFusion-stretched' else tag} beats {ref}"
                print(f"  {label:<48} on {won}/9 (worse on {lost}/9)   {_signs(mine, rows[ref])}")
            bars = {}
            for suffix, ref, need in BARS:
                if ref in rows:
                    bars[ref] = entry["wins"][tag][ref] >= need
            for other in tags:
                if other != tag:
                    bars[f"worse than {other} on <= {WORSE_THAN_COMPARED}"] = \
                        entry["worse"][tag][other] <= WORSE_THAN_COMPARED
            t = entry["tone"][tag]
            bars[f"mean Y <= brighter source + {BRIGHTER_BY:g}"] = t["above_brighter"] <= BRIGHTER_BY
            bars[f"saturated <= sources + {SATURATED_BY:g} pt"] = t["saturated_above_sources"] <= SATURATED_BY
            if peer and all(rows[tag + c]["MI"] > rows[r]["MI"] for c, r in (("", "SeAFusion-raw"),
                                                                              (STRETCHED, "SeAFusion-stretched"))):
                mi_sets[tag] += 1
            harm = {}
            stems = [s for s, _, _ in pairs]
            for kind in wrong_kinds:
                scenario = f"{set_name} wrong:{kind}"
                applies = present.get((set_name, kind), set()) & set(stems)

                def over(idx: list[int]) -> dict:
                    return _harm([per_image[set_name][tag][stems[i]] for i in idx],
                                 [per_image[scenario][tag][stems[i]] for i in idx],
                                 [tone[(set_name, tag)][i] for i in idx], [tone[(scenario, tag)][i] for i in idx])

                keep = [i for i, s in enumerate(stems) if s not in applies]  # the pairs where the prompt is wrong
                if not keep:  # every pair carries the degradation: nothing to measure the wrong prompt on
                    continue
                harm[kind] = {**over(keep), "prompt": canonical_prompt(kind), "pairs": len(keep)}
                if applies:  # reported apart: there the prompt names what is wrong
                    apart = over([i for i, s in enumerate(stems) if s in applies])
                    harm[kind]["present"] = {"stems": sorted(applies), **{k: v for k, v in apart.items() if k != "ok"}}
            if harm:
                entry["prompt_harm"][tag] = harm
                bars[f"wrong prompts within {HARM_METRIC:.0%} / {HARM_LEVELS:g} levels"] = all(
                    h["ok"] for h in harm.values())
            entry["bars"][tag] = bars
            verdicts[tag][set_name] = all(bars.values()) and peer is not None
            print(f"  {tag} tone: mean Y {t['mean_y']:.1f}, {t['above_brighter']:+.1f} against the brighter source; "
                  f"{t['saturated']:.2f} % pixels >= {SATURATION} ({t['saturated_above_sources']:+.2f} pt against "
                  "the sources)")
            for kind, h in harm.items():
                apart = h.get("present")
                note = (f"  ({len(apart['stems'])} pair(s) where it applies left out: {', '.join(apart['stems'])}: "
                        f"mean Y {apart['mean_y_change']:+.1f}, {apart['worst_metric']} "
                        f"{apart['relative'][apart['worst_metric']]:+.1%})") if apart else ""
                print(f"  {tag} wrong prompt {kind:<17} mean Y {h['mean_y_change']:+6.1f}, largest metric change "
                      f"{h['worst_metric']} {h['relative'][h['worst_metric']]:+.1%}  {'ok' if h['ok'] else 'FAIL'}{note}")
            marks = ", ".join(f"{name}: {'ok' if good else 'FAIL'}" for name, good in bars.items())
            missing = "" if peer else "; SeAFusion not run (--seafusion-root), so the bars are incomplete"
            print(f"  {tag} bars on {set_name}: {marks}{missing}")
        report["sets"][set_name] = entry
        print()
    if ROADSCENE in report["sets"]:  # the structure earlier runs wrote
        rs = report["sets"][ROADSCENE]
        report["clean"] = {m: rs["means"][m] for m in methods}
        for base in (*BASELINES, *(PEERS if peer else ())):
            report["clean"][f"wins_vs_{base}"] = rs["wins"]["swinfuse"][base]

    # summary: wins per set and reference, one row per model
    refs = [*BASELINES, *(PEERS if peer else ())]
    header = f"{'model':<24}{'set':<16}" + "".join(f"{r:>21}" for r in refs) + f"{'bars':>10}"
    print("Summary: model beats X on k/9 (SeAFusion-stretched: ours stretched the same way). Bars per set: "
          "SeAFusion raw and stretched >= 6, mean 9, tone, wrong prompts, compared models")
    print(header)
    for tag in tags:
        for set_name, _ in sets:
            w = report["sets"][set_name]["wins"][tag]
            verdict = "met" if verdicts[tag][set_name] else ("NOT met" if peer else "incomplete")
            print(f"{tag:<24}{set_name:<16}" + "".join(f"{w[r]:>19}/9" for r in refs) + f"{verdict:>10}")
    for other in tags[1:]:
        line = ", ".join(f"{s} {report['sets'][s]['wins']['swinfuse'][other]}/9 (worse on "
                         f"{report['sets'][s]['worse']['swinfuse'][other]}/9)" for s, _ in sets)
        print(f"swinfuse beats {other} on: {line}")
    overall = {tag: all(verdicts[tag].values()) and peer is not None and mi_sets[tag] >= MI_SETS for tag in tags}
    for tag in tags:
        print(f"{tag}: MI beats SeAFusion (both conventions) on {mi_sets[tag]} set(s) (need {MI_SETS}); clean bars "
              f"{'met on every set' if overall[tag] else 'NOT met on every set'}" + ("" if peer else " (SeAFusion not run)"))
    report["bars_met"] = {tag: {"per_set": verdicts[tag], "mi_sets": mi_sets[tag], "all": overall[tag]}
                          for tag in tags}
    print()

    kinds_ok = {}
    for tag in tags if degraded_sources else ():  # none: the clean tables only (a quick look)
        prefix = "" if tag == "swinfuse" else f"{tag} "
        kinds_prompt_ok, kinds_heldout_ok, kinds_qabf_ok, kinds_reference_ok = 0, 0, 0, 0
        for kind in degraded_kinds:
            rows = {prefix + m: means[(kind, prefix + m)] for m in ("matching", "held-out", "neutral")}
            rows.update({m: means[(kind, m)] for m in BASELINES})
            won, lost = _wins(rows[prefix + "matching"], rows[prefix + "neutral"])
            hwon, hlost = _wins(rows[prefix + "held-out"], rows[prefix + "neutral"])
            qabf_ok = all(rows[prefix + "matching"]["Qabf"] > rows[b]["Qabf"] for b in BASELINES)
            # Issue 19's measure of a prompt's help: Qabf and VIF, which compare with the sources (EN, SD, SF
            # and AG do not, and rise with noise a restoration removes)
            reference_ok = all(rows[prefix + "matching"][m] > rows[prefix + "neutral"][m] for m in ("Qabf", "VIF"))
            kinds_prompt_ok += won > lost
            kinds_heldout_ok += hwon > hlost
            kinds_qabf_ok += qabf_ok
            kinds_reference_ok += reference_ok
            record = {**rows, "matching_vs_neutral": [won, lost], "heldout_vs_neutral": [hwon, hlost],
                      "qabf_beats_all_baselines": qabf_ok, "matching_beats_neutral_on_qabf_and_vif": reference_ok,
                      "prompts": {"matching": canonical_prompt(kind), "held-out": list(HELD_OUT[kind][:args.held_out_wordings])}}
            if tag == "swinfuse":
                report["degraded"][kind] = record
            else:
                report["degraded"].setdefault("compared", {}).setdefault(tag, {})[kind] = record
            print(_table(f"{kind} (metrics against the clean sources):", rows))
            print(f"  {prefix}matching vs neutral: better on {won}/9, worse on {lost}/9; held-out paraphrase vs "
                  f"neutral: {hwon}/9 vs {hlost}/9; on Qabf and VIF both: {reference_ok}; matching Qabf beats all "
                  f"three baselines: {qabf_ok}")
            print()
        kinds_ok[tag] = {"matching_beats_neutral_kinds": kinds_prompt_ok,
                         "heldout_beats_neutral_kinds": kinds_heldout_ok, "qabf_beats_baselines_kinds": kinds_qabf_ok,
                         "qabf_and_vif_beat_neutral_kinds": kinds_reference_ok}
        n = len(degraded_kinds)
        print(f"{tag}: matching prompt beats neutral on {kinds_prompt_ok}/{n} kinds (held-out paraphrase: "
              f"{kinds_heldout_ok}/{n}), on Qabf and VIF both on {kinds_reference_ok}/{n}; matching-prompt Qabf "
              f"beats all baselines on {kinds_qabf_ok}/{n} kinds")
    summary = kinds_ok.get("swinfuse", {"matching_beats_neutral_kinds": 0, "heldout_beats_neutral_kinds": 0,
                                        "qabf_beats_baselines_kinds": 0, "qabf_and_vif_beat_neutral_kinds": 0})
    report["summary"] = summary
    report["degraded_pairs"] = {"pairs": [s for s, _, _ in degraded_sources], "kinds": degraded_kinds}
    if len(kinds_ok) > 1:
        report["summary_compared"] = {t: v for t, v in kinds_ok.items() if t != "swinfuse"}
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=1))
    if args.figures and roadscene_sources:
        _figures(Path(args.figures), roadscene_sources, figure_pairs, fuse, neutral, args.figure_kind)
    if args.ship and degraded_sources and degraded_kinds == all_kinds and ROADSCENE in report["sets"]:
        from swinfuse.model.checkpoint import save_checkpoint

        provenance = dict(meta["provenance"])
        provenance["validation_metrics"] = {
            "command": "python tools/evaluate_model.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "clean_means": {m: report["clean"][m] for m in ("swinfuse", *BASELINES, *(PEERS if peer else ()))},
            "wins_vs_baselines": {b: report["clean"][f"wins_vs_{b}"] for b in (*BASELINES, *(PEERS if peer else ()))},
            "degraded": summary}
        others = [s for s, _ in sets if s != ROADSCENE]
        if others or peer:
            provenance["validation_metrics"]["sets"] = {
                s: {"pairs": report["sets"][s]["pairs"], "means": {m: report["sets"][s]["means"][m]
                                                                   for m in ("swinfuse", *refs)},
                    "wins": report["sets"][s]["wins"]["swinfuse"], "bars_met": verdicts["swinfuse"][s]}
                for s, _ in sets}
        save_checkpoint(model, args.ship, provenance)
        print(f"shipped {args.ship}")
    return 0


def _figures(folder: Path, sources, colour_pairs, fuse, neutral: str, kind: str) -> None:
    """README pictures: infrared | visible | fused, in colour, for the first pair of the first
    out-of-distribution set (else a RoadScene validation pair); and a degraded RoadScene validation pair
    fused with the neutral and with the matching prompt."""
    import cv2
    import torch

    from swinfuse.data.io import compose_output
    from swinfuse.training.degrade import degrade_fixed
    from swinfuse.training.prompts import canonical_prompt

    folder.mkdir(parents=True, exist_ok=True)

    def tile(img: np.ndarray, caption: str) -> np.ndarray:
        t = img if img.ndim == 3 else cv2.cvtColor(_u8(img * 255.0 if img.max() <= 1.0 else img), cv2.COLOR_GRAY2BGR)
        t = t.copy()
        cv2.rectangle(t, (0, 0), (t.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(t, caption, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        return t

    if colour_pairs:
        set_name, stem, ir, vis = colour_pairs[0]
        visible = compose_output(vis.y, vis, bit_depth=8)
        fused = compose_output(fuse(ir, vis.y, neutral) / 255.0, vis, bit_depth=8)
        row = [tile(ir, "infrared"), tile(visible, "visible"), tile(fused, "swinfuse")]
    else:
        set_name, (stem, ir, y) = ROADSCENE, sources[0]
        row = [tile(ir, "infrared"), tile(y, "visible (Y)"), tile(fuse(ir, y, neutral) / 255.0, "swinfuse")]
    cv2.imwrite(str(folder / "fused_example.png"), np.hstack(row))
    print(f"fused_example.png from {set_name} pair {stem}")
    if not sources:
        return
    stem, ir, y = sources[0]
    d_ir, d_y = degrade_fixed(kind, torch.from_numpy(ir)[None], torch.from_numpy(y)[None], seed=0)
    d_ir, d_y = d_ir[0].numpy(), d_y[0].numpy()
    row = [tile(d_y, f"visible, {kind}"), tile(fuse(d_ir, d_y, neutral) / 255.0, f"prompt: '{neutral}'"),
           tile(fuse(d_ir, d_y, canonical_prompt(kind)) / 255.0, f"prompt: '{canonical_prompt(kind)}'")]
    cv2.imwrite(str(folder / "prompt_effect.png"), np.hstack(row))
    print(f"prompt_effect.png from {ROADSCENE} pair {stem}, {kind}")


if __name__ == "__main__":
    raise SystemExit(main())
