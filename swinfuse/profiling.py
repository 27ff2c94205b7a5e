"""`swinfuse profile`: build a model (preset, overrides or weights), feed random inputs, measure it.

Latency: warm-up runs, then timed repetitions (CUDA events on GPU); memory: process RSS sampled in a
background thread (and CUDA allocator peaks); FLOPs: torch.utils.flop_counter on one forward.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field


@dataclass
class SizeResult:
    input_shape: list[int]
    output_shape: list[int]
    expected_output_shape: list[int]
    shape_ok: bool
    gflops: float
    latency_ms: dict[str, float]  # mean, median, p95, min
    fps: float
    rss_mb: dict[str, float]  # before, after, peak
    gpu_mb: dict[str, float] | None  # allocated, reserved, peak


@dataclass
class ProfileReport:
    source: str  # preset name or weights path
    config: dict
    device: str
    dtype: str
    threads: int
    batch: int
    warmup: int
    repetitions: int
    prompt: str
    params: dict[str, int]
    sizes: list[SizeResult] = field(default_factory=list)


def _sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of attention (two batched matmuls); the CPU fused op has no formula of torch's own."""
    *batch, L, E = query_shape
    S, Ev = key_shape[-2], value_shape[-1]
    n = 1
    for b in batch:
        n *= b
    return 2 * n * L * S * E + 2 * n * L * S * Ev


def count_flops(model, ir, vis, text) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flop}
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with counter:
        model(ir, vis, text)
    return counter.get_total_flops()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def time_forward(model, ir, vis, text, warmup: int, repetitions: int, device) -> list[float]:
    """Milliseconds per forward over `repetitions` runs after `warmup` runs."""
    import torch

    from swinfuse.memory import sync

    for _ in range(warmup):
        model(ir, vis, text)
    times = []
    if device.type == "cuda":
        sync(device)
        for _ in range(repetitions):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(ir, vis, text)
            end.record()
            sync(device)
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repetitions):
            t0 = time.perf_counter()
            model(ir, vis, text)
            times.append((time.perf_counter() - t0) * 1000)
    return times


def profile_size(model, size: tuple[int, int], *, batch: int, warmup: int, repetitions: int, prompt: str,
                 device, dtype) -> SizeResult:
    import torch

    from swinfuse.memory import MB, RssSampler, gpu_memory_mb, reset_gpu_peak, rss_mb

    cfg = model.config
    H, W = size
    gen = torch.Generator().manual_seed(0)
    ir = torch.rand(batch, cfg.in_chans, H, W, generator=gen).to(device, dtype)
    vis = torch.rand(batch, cfg.in_chans, H, W, generator=gen).to(device, dtype)
    with torch.inference_mode():
        text = model.encode_prompts([prompt]).to(dtype)  # one prompt for the batch, encoded once
        rss_before = rss_mb()
        reset_gpu_peak(device)
        sampler = RssSampler()
        with sampler.watch():
            out = model(ir, vis, text)
            times = time_forward(model, ir, vis, text, warmup, repetitions, device)
        rss_after = rss_mb()
        flops = count_flops(model, ir, vis, text)
    gpu = gpu_memory_mb(device)
    expected = [batch, cfg.in_chans, H * cfg.upscale, W * cfg.upscale]
    mean = statistics.fmean(times)
    return SizeResult(
        input_shape=[batch, cfg.in_chans, H, W], output_shape=list(out.shape), expected_output_shape=expected,
        shape_ok=list(out.shape) == expected, gflops=flops / 1e9,
        latency_ms={"mean": mean, "median": statistics.median(times), "p95": _percentile(times, 0.95),
                    "min": min(times)},
        fps=1000.0 * batch / mean,
        rss_mb={"before": rss_before, "after": rss_after, "peak": sampler.peak / MB},
        gpu_mb=gpu)


def profile_model(model, *, source: str, sizes: list[tuple[int, int]], batch: int = 1, warmup: int = 2,
                  repetitions: int = 10, prompt: str = "", device, dtype, threads: int) -> ProfileReport:
    import dataclasses

    from swinfuse.model.network import count_parameters

    model = model.to(device=device, dtype=dtype).eval()
    report = ProfileReport(source=source, config=dataclasses.asdict(model.config), device=str(device),
                           dtype=str(dtype).replace("torch.", ""), threads=threads, batch=batch, warmup=warmup,
                           repetitions=repetitions, prompt=prompt, params=count_parameters(model))
    for size in sizes:
        report.sizes.append(profile_size(model, size, batch=batch, warmup=warmup, repetitions=repetitions,
                                         prompt=prompt, device=device, dtype=dtype))
    return report
