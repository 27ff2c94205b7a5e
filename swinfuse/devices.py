"""Device, precision and thread choices shared by every command."""

from __future__ import annotations

from swinfuse.errors import DeviceError

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(name: str = "auto"):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device, with a one-line error when CUDA is absent."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name} was asked for but CUDA is not available "
                              "(torch.cuda.is_available() is False); use --device cpu")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    raise DeviceError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")


def resolve_dtype(precision: str, device):
    import torch

    if precision not in PRECISIONS:
        raise DeviceError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError("--precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def set_threads(threads: int | None) -> int:
    """Use `threads` CPU threads for torch; None or 0 keeps torch's default (as `train --threads 0` does).
    Returns the count in use."""
    import torch

    if threads is not None and threads < 0:
        raise DeviceError(f"--threads must be a positive count, or 0 for torch's default; got {threads}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def tune_process() -> bool:
    """Process-wide CPU tuning, as the `swinfuse` command applies it before any command runs. The library
    never calls this (a notebook importing swinfuse keeps its allocator as it was); call it yourself for
    the command's speed.

    - Transparent huge pages for torch's CPU tensors of 2 MB and more (madvise), so a large frame's maps
      page-fault 512x less often (1024x1024 forward: 11 M -> 0.4 M faults, 30 % faster on CPU). torch reads
      THP_MEM_ALLOC_ENABLE when it loads: this only takes effect before the first `import torch`.
    - The glibc allocator keeps freed memory for reuse (tune_cpu_allocator).

    Returns whether the allocator tuning applied."""
    import os

    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    return tune_cpu_allocator()


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed CPU memory for reuse instead of handing it back to the OS at every free (glibc only).

    A forward allocates and frees tensors of tens of MB each; by default glibc returns them to the OS, so
    the next allocation page-faults every 4 KiB page again: about 20 % of a 480x640 forward on CPU. Serving
    blocks up to 32 MiB (glibc's ceiling) from the heap and not trimming the heap's free top removes most
    of those faults (1.9 M -> 0.4 M minor faults there) for a few percent more peak RSS. Returns whether
    it applied; elsewhere (macOS, Windows, musl) it is a no-op."""
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    _ALLOCATOR_TUNED = bool(mallopt(M_MMAP_THRESHOLD, 32 << 20) and mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)
                            and mallopt(M_TOP_PAD, 64 << 20))
    return _ALLOCATOR_TUNED
