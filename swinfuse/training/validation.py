"""Validation, and the loss at the network's output size that training and validation share.

Each validation scores the fixed degraded crops of the first folder's validation split with three prompts:
the matching one (the corpus's first phrasing of the kind), a held-out paraphrase and the neutral prompt;
the gap to neutral is what the prompt does. Folders of other cameras (`val_data`) are scored clean. The
validation loss always uses SwinFusion's weights (10, 20, 20), so runs with other --loss-weights compare."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from swinfuse.training.losses import fusion_loss
from swinfuse.training.prompts import HELD_OUT, canonical_prompt


def output_loss(out: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor, weights: dict[str, float] | None = None,
                gradient_target: str = "magnitude", intensity_target: str = "max", frame: torch.Tensor | None = None):
    """SwinFusion's loss of the fused (B, 1, H', W') against the clean (B, 1, H, W) sources -> (total, terms);
    `frame`: the (B, 3) frame statistics of the -frame intensity targets."""
    if out.shape[-2:] != ir.shape[-2:]:  # upscale > 1: compare at the output's size
        ir = F.interpolate(ir, size=out.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        vis = F.interpolate(vis, size=out.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    return fusion_loss(ir, vis, out.float(), weights, gradient_target, intensity_target, frame)


@torch.no_grad()
def validate(model: nn.Module, val_set, device) -> dict:
    """Loss on the fixed degraded val crops with the matching prompt, a held-out paraphrase and a neutral
    prompt -> {val_loss, val_heldout, val_neutral, and each per kind}."""
    was_training = model.training
    model.eval()
    results: dict[str, dict[str, float]] = {"matching": {}, "heldout": {}, "neutral": {}}
    for kind, tensors in val_set.items():
        ir_in, vis_in, ir, vis = (t.to(device) for t in tensors)
        n = ir.shape[0]
        prompts = {"matching": [canonical_prompt(kind)] * n,
                   "heldout": [HELD_OUT[kind][i % len(HELD_OUT[kind])] for i in range(n)],
                   "neutral": [canonical_prompt("none")] * n}
        for name, texts in prompts.items():
            if kind == "none" and name == "neutral":  # the same prompt as "matching"
                results[name][kind] = results["matching"][kind]
                continue
            out = model(ir_in, vis_in, model.encode_prompts(texts, cache=False))
            results[name][kind] = float(output_loss(out, ir, vis)[0])
    model.train(was_training)
    record = {f"val_{name}": sum(r.values()) / len(r) for name, r in results.items()}
    record["val_loss"] = record.pop("val_matching")
    record["val_per_kind"] = results["matching"]
    record["val_heldout_per_kind"] = results["heldout"]
    record["val_neutral_per_kind"] = results["neutral"]
    return record


@torch.no_grad()
def validate_clean(model: nn.Module, sets: dict[str, dict], device) -> dict[str, float]:
    """Loss on the clean centre crops of each whole validation folder, neutral prompt -> {folder: loss}."""
    was_training = model.training
    model.eval()
    out = {}
    for name, val_set in sets.items():
        ir_in, vis_in, ir, vis = (t.to(device) for t in val_set["none"])
        text = model.encode_prompts([canonical_prompt("none")] * ir.shape[0], cache=False)
        out[name] = float(output_loss(model(ir_in, vis_in, text), ir, vis)[0])
    model.train(was_training)
    return out


def validation_record(model: nn.Module, data, device) -> dict:
    """One validation of a run (its TrainingData) -> the record log.jsonl keeps (without type and step)."""
    record = validate(model, data.val_set, device)
    if data.other_val:
        record["val_clean_by_folder"] = validate_clean(model, data.other_val, device)
    return record
