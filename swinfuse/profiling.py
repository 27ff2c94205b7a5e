"""`swinfuse profile`: build a model (preset, overrides or weights), feed random inputs, measure it.

Latency: warm-up runs, then timed repetitions (CUDA events on GPU); memory: process RSS sampled in a
background thread (and CUDA allocator peaks); FLOPs: torch.utils.flop_counter on one forward.
"""

from __future__ import annotations

import statistics
import threading
import time
from contextlib import contextmanager
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


class _RssSampler:
    """Peak resident memory of this process while a block runs, sampled every few milliseconds."""

    def __init__(self, interval: float = 0.002):
        import psutil

        self._proc, self._interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    @contextmanager
    def watch(self):
        self.peak = self._proc.memory_info().rss
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self._stop.clear()
            self.peak = max(self.peak, self._proc.memory_info().rss)


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

    for _ in range(warmup):
        model(ir, vis, text)
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repetitions):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(ir, vis, text)
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repetitions):
            t0 = time.perf_counter()
            model(ir, vis, text)
            times.append((time.perf_counter() - t0) * 1000)
    return times


def profile_size(model, size: tuple[int, int], *, batch: int, warmup: int, repetitions: int, prompt: str,
                 device, dtype) -> SizeResult:
    import psutil
    import torch

    cfg = model.config
    H, W = size
    gen = torch.Generator().manual_seed(0)
    ir = torch.rand(batch, cfg.in_chans, H, W, generator=gen).to(device, dtype)
    vis = torch.rand(batch, cfg.in_chans, H, W, generator=gen).to(device, dtype)
    proc = psutil.Process()
    with torch.inference_mode():
        text = model.encode_prompts([prompt]).to(dtype)  # one prompt for the batch, encoded once
        rss_before = proc.memory_info().rss
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sampler = _RssSampler()
        with sampler.watch():
            out = model(ir, vis, text)
            times = time_forward(model, ir, vis, text, warmup, repetitions, device)
        rss_after = proc.memory_info().rss
        flops = count_flops(model, ir, vis, text)
    gpu = None
    if device.type == "cuda":
        mb = 2 ** 20
        gpu = {"allocated": torch.cuda.memory_allocated(device) / mb,
               "reserved": torch.cuda.memory_reserved(device) / mb,
               "peak": torch.cuda.max_memory_allocated(device) / mb}
    expected = [batch, cfg.in_chans, H * cfg.upscale, W * cfg.upscale]
    mean = statistics.fmean(times)
    return SizeResult(
        input_shape=[batch, cfg.in_chans, H, W], output_shape=list(out.shape), expected_output_shape=expected,
        shape_ok=list(out.shape) == expected, gflops=flops / 1e9,
        latency_ms={"mean": mean, "median": statistics.median(times), "p95": _percentile(times, 0.95),
                    "min": min(times)},
        fps=1000.0 * batch / mean,
        rss_mb={"before": rss_before / 2 ** 20, "after": rss_after / 2 ** 20, "peak": sampler.peak / 2 ** 20},
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
