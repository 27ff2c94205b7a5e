"""Measuring memory and time on a device: process RSS (now, peak so far, sampled while a block runs), the
CUDA allocator's peak, torch's own CPU allocations, and the synchronisation that makes a CUDA timing true.

The one place fusing, profiling and the benchmarks take these from. Only the standard library is imported at
the top; torch and psutil are imported by the functions that need them.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

MB = 2 ** 20


def rss_mb() -> float:
    """Resident memory of this process now, in MiB."""
    import psutil
    return psutil.Process().memory_info().rss / MB


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    try:
        import resource
    except ImportError:  # Windows: psutil reports the peak working set there
        import psutil
        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / MB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (MB if sys.platform == "darwin" else 2**10)


class RssSampler:
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


def _is_cuda(device) -> bool:
    import torch
    return torch.device(device).type == "cuda"


def sync(device) -> None:
    """Wait for the device's queued kernels: CUDA runs them asynchronously, so without this a forward's time
    would land in whatever is timed next. Nothing to do on the CPU."""
    import torch
    if _is_cuda(device):
        torch.cuda.synchronize(device)


def reset_gpu_peak(device) -> None:
    import torch
    if _is_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)


def gpu_peak_mb(device) -> float | None:
    """The CUDA allocator's peak since the last reset_gpu_peak, in MiB; None on the CPU."""
    import torch
    return torch.cuda.max_memory_allocated(device) / MB if _is_cuda(device) else None


def gpu_memory_mb(device) -> dict[str, float] | None:
    """The CUDA allocator's allocated, reserved and peak memory in MiB; None on the CPU."""
    import torch
    if not _is_cuda(device):
        return None
    return {"allocated": torch.cuda.memory_allocated(device) / MB,
            "reserved": torch.cuda.memory_reserved(device) / MB, "peak": gpu_peak_mb(device)}


def peak_allocated_mb(fn) -> float:
    """Peak of the memory torch's allocator hands out while fn() runs, above what was live before: the CPU
    counterpart of CUDA's max_memory_allocated (tensors and ops' own scratch, every c10 allocation the
    profiler sees), without what the C allocator keeps around (fragmentation, freed pages not returned).
    From torch.profiler's allocation events (profile_memory=True) summed in time order."""
    import torch
    from torch._C._profiler import _EventType

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        e = stack.pop()
        stack.extend(e.children)
        if e.tag == _EventType.Allocation:
            events.append((e.start_time_ns, e.extra_fields.alloc_size))
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak / MB
