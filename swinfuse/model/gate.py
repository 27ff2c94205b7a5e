"""The prompt gate (FusionConfig.prompt_gate): how much of a prompt's effect to apply, read from the inputs.

A prompt names what may be wrong with the sources; the FiLM layers alone apply it whatever the image shows
(their scale and shift depend on the text only), so "the visible image is in low light" brightens a normal
frame. The gate looks at both: g = sigmoid(MLP([statistics of each source, prompt - reference])) in (0, 1),
and the decoder gets reference + g * (prompt - reference), where the reference is the neutral prompt's vector.
g = 0 gives the neutral fusion exactly; the neutral prompt itself is unchanged by any g. Training can supervise
g with the degradation it applied (1: the prompt names it, 0: it does not)."""

from __future__ import annotations

import torch
from torch import nn

# The reference the gate interpolates from: the neutral prompt validation and evaluation use
# (training/prompts.py's first phrasing of 'none'; a test keeps the two equal).
REFERENCE_PROMPT = "fuse the infrared and visible images"
_RAW_STATS = 4  # per source: mean, standard deviation, mean |d/dx|, mean |d/dy|
LR_SCALE = 10.0  # the gate trains at this multiple of the run's learning rate (it starts from nothing)


def raw_statistics(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> (B, 4): level, contrast, and the log of horizontal / vertical detail (noise
    and stripes raise one or both, blur lowers both; the log spreads their small values, 0.005 to 0.2)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    flat = x.flatten(1)
    return torch.stack([flat.mean(1), flat.std(1), (dx + 1e-3).log(), (dy + 1e-3).log()], dim=1)


class PromptGate(nn.Module):
    def __init__(self, text_dim: int, channels: int, in_chans: int = 1, hidden: int = 32):
        super().__init__()
        features = 2 * (2 * channels + _RAW_STATS * in_chans) + text_dim
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, 1))
        # Start open (g = sigmoid(4) = 0.98): a gate added to a trained network leaves its prompts working.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.constant_(self.net[-1].bias, 4.0)

    def forward(self, ir: torch.Tensor, vis: torch.Tensor, ir_tokens: torch.Tensor, vis_tokens: torch.Tensor,
                text: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """ir, vis: (B, in, H, W); tokens: (B, h, w, C) (the encoders' outputs); text: (B, D); reference: (1, D)
        -> g: (B, 1). It reads its inputs without gradient: training the gate leaves the rest of the network
        as its own losses make it."""
        ir, vis, ir_tokens, vis_tokens = (t.detach() for t in (ir, vis, ir_tokens, vis_tokens))
        text, reference = text.detach(), reference.detach()
        parts = []
        for image, tokens in ((ir, ir_tokens), (vis, vis_tokens)):
            flat = tokens.float().flatten(1, 2)  # (B, h*w, C)
            parts += [flat.mean(1), flat.std(1)]
            parts += [raw_statistics(image[:, c:c + 1].float()) for c in range(image.shape[1])]
        parts.append((text - reference).float())
        return torch.sigmoid(self.net(torch.cat(parts, dim=1)))
