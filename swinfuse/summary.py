"""`swinfuse summary`: a layer table from a real forward pass (collected by torchinfo)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LayerRow:
    name: str  # dotted path from the model root
    type: str
    depth: int
    output_shape: list
    params: int  # the module and everything below it
    own_params: int  # the module's own tensors: these add up to the total


@dataclass
class SummaryReport:
    source: str
    input_shape: list[int]
    prompt: str
    depth: int
    layers: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    params_mb: float = 0.0
    activations_mb: float = 0.0  # forward outputs of every layer, torchinfo's estimate


def summarize_model(model, *, source: str, size: tuple[int, int] = (64, 64), prompt: str = "", depth: int = 3,
                    device) -> SummaryReport:
    import torch
    import torchinfo

    cfg = model.config
    model = model.to(device).eval()
    ir = torch.rand(1, cfg.in_chans, *size, device=device)
    vis = torch.rand(1, cfg.in_chans, *size, device=device)
    model._prompt_cache.clear()  # so the text encoder runs inside the traced forward and is listed
    stats = torchinfo.summary(model, input_data=[ir, vis], text=prompt, depth=depth, verbose=0, device=device,
                              mode="eval", col_names=("output_size", "num_params"))
    report = SummaryReport(source=source, input_shape=list(ir.shape), prompt=prompt, depth=depth)
    # One row per module, named by where it lives. torchinfo marks a container "recursive" when the calls of
    # its children interleave with another container's (the decoder's FiLM and Re stages alternate), so its
    # flag is not used: a module's first row is kept, any later one dropped.
    names = {id(m): name for name, m in model.named_modules()}
    seen = set()
    for info in stats.summary_list:
        name = names.get(id(info.module), info.var_name)
        level = name.count(".") + 1 if name else 0
        if id(info.module) in seen or level > depth:
            continue
        seen.add(id(info.module))
        own = sum(p.numel() for p in info.module.parameters(recurse=False))
        if level == depth:  # collapsed: the row stands for its whole subtree
            own = info.num_params
        report.layers.append(LayerRow(name=name or "(model)", type=info.class_name, depth=level,
                                      output_shape=list(info.output_size), params=info.num_params, own_params=own))
    report.layers.sort(key=lambda row: _order(row.name, names))
    report.total_params = sum(p.numel() for p in model.parameters())
    report.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report.params_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2 ** 20
    report.activations_mb = stats.total_output_bytes / 2 ** 20
    return report


def _order(name: str, names: dict) -> tuple:
    """Sort rows in the model's own module order, so children sit under their parent."""
    order = {n: i for i, n in enumerate(names.values())}
    return (order.get(name if name != "(model)" else "", len(order)),)
