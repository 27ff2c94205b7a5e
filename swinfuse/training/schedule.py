"""Optimizer and learning-rate schedule: AdamW (no weight decay on biases, norms and the relative-position
bias tables, as Swin trains), linear warmup then cosine decay to `min_lr_ratio` of the peak."""

from __future__ import annotations

import math

import torch
from torch import nn


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, args) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters (a frozen CLIP text encoder has none) and its schedule."""
    from swinfuse.model.gate import LR_SCALE

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [(n, p) for n, p in named if not n.startswith("gate.")]
    decays = [p.ndim >= 2 and "relative_position_bias_table" not in n for n, p in params]
    groups = [{"params": [p for (_, p), d in zip(params, decays) if d], "weight_decay": args.weight_decay},
              {"params": [p for (_, p), d in zip(params, decays) if not d], "weight_decay": 0.0}]
    gate = [p for n, p in named if n.startswith("gate.")]
    if gate:  # a prompt gate (model/gate.py) learns from nothing: its own, faster group, after the others
        groups.append({"params": gate, "weight_decay": 0.0, "lr": args.lr * LR_SCALE})
    optimizer = torch.optim.AdamW(groups, lr=args.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, args.warmup, args.steps, args.min_lr_ratio))
    return optimizer, scheduler
