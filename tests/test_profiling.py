"""FLOPs as `profile` counts them: torch's FlopCounterMode plus our formula for the fused CPU attention op."""

from __future__ import annotations

import torch

from swinfuse.model.config import FusionConfig
from swinfuse.model.network import SwinFuse
from swinfuse.profiling import count_flops


def test_flops_formula_counts_the_fused_cpu_attention_as_its_two_matmuls():
    # Under inference_mode the CPU path (attend_cpu) computes attention with baddbmm/bmm, which torch counts
    # itself. With gradients enabled but no tensor requiring one, the same forward calls SDPA, which on CPU
    # is aten._scaled_dot_product_flash_attention_for_cpu: torch has no formula for it (0 FLOPs), only ours.
    # Both must count the same work; without our formula the SDPA count falls short by all the attention.
    from swinfuse.model.cpu_inference import enable_cpu_inference

    torch.manual_seed(0)
    model = SwinFuse(FusionConfig.smoke(upscale=1, upsampler="")).eval().requires_grad_(False)
    enable_cpu_inference(model)  # as api.load_model does
    x = torch.rand(1, 1, 16, 16)
    with torch.inference_mode():
        text = model.encode_prompts([""])
        matmuls = count_flops(model, x, x, text)
    text = text.clone()  # a normal tensor: inference tensors cannot enter a grad-enabled forward
    with torch.enable_grad():
        fused = count_flops(model, x, x, text)
    L, C, tokens = 16, 8, 16 * 16  # window 4: 16 tokens a window; embed_dim 8
    attention = 2 * 2 * tokens * L * C  # QK^T and AV over the image's windows, one block
    blocks = 1 + 1 + 2 + 1  # Ex ir, Ex vis, fusion both directions, Re
    assert fused == matmuls
    assert fused >= blocks * attention


def test_attention_formula_is_two_batched_matmuls():
    from swinfuse.profiling import _sdpa_flop

    # (windows, heads, L, hd) queries against (windows, heads, S, hd) keys and values
    assert _sdpa_flop((6, 2, 16, 8), (6, 2, 25, 8), (6, 2, 25, 4)) == 2 * 12 * 16 * 25 * 8 + 2 * 12 * 16 * 25 * 4
