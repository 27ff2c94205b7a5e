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
    # Name rows by where a module lives, not by who called it (the decoder calls the FiLM layers).
    names = {id(m): name for name, m in model.named_modules()}
    for info in stats.summary_list:
        name = names.get(id(info.module), info.var_name)
        level = name.count(".") + 1 if name else 0
        if info.is_recursive or level > depth:
            continue
        own = sum(p.numel() for p in info.module.parameters(recurse=False))
        if level == depth:  # collapsed: the row stands for its whole subtree
            own = info.num_params
        report.layers.append(LayerRow(name=name or "(model)", type=info.class_name, depth=level,
                                      output_shape=list(info.output_size), params=info.num_params, own_params=own))
    # Containers whose children are called directly (the FiLM list) never run as a module, so torchinfo
    # does not list them: add them, so the own-params column still adds up to the total.
    listed = {row.name for row in report.layers}
    for name, module in model.named_modules():
        level = name.count(".") + 1
        if name and level <= depth and name not in listed:
            own = sum(p.numel() for p in module.parameters(recurse=level == depth))
            report.layers.append(LayerRow(name=name, type=type(module).__name__, depth=level, output_shape=[],
                                          params=sum(p.numel() for p in module.parameters()), own_params=own))
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
