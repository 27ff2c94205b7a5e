"""Device, precision and thread choices shared by every command."""

from __future__ import annotations

from swinfuse.errors import DeviceError

PRECISIONS = ("fp32", "bf16", "fp16")

_FREEZE_TORCH = False  # set by tune_process: this process is the `swinfuse` command's


def import_torch():
    """torch, imported (the first torch a command touches comes through here: resolve_device, set_threads).

    In the `swinfuse` command's process (tune_process was called), the first import runs with the garbage
    collector paused and the objects alive after it are then frozen (gc.freeze): importing torch creates
    about 190,000 long-lived objects, and the full collections it triggers, later ones and the interpreter's
    at exit traverse them all, 0.3-0.5 s of a cold `swinfuse fuse` (benchmarks/RESULTS.md, issue 21). They
    live as long as the process anyway; objects made later are collected as usual. A library caller's
    process is left as it is."""
    import sys

    if _FREEZE_TORCH and "torch" not in sys.modules:
        import gc

        enabled = gc.isenabled()
        gc.disable()
        try:
            import torch
        finally:
            gc.freeze()
            if enabled:
                gc.enable()
    import torch

    return torch


def resolve_device(name: str = "auto"):
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> torch.device, with a one-line error when CUDA is absent."""
    torch = import_torch()

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


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles); elsewhere torch emulates it."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def resolve_dtype(precision: str, device):
    import torch

    if precision not in PRECISIONS:
        raise DeviceError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise DeviceError("--precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        import warnings

        warnings.warn("--precision bf16 on a CPU without bf16 instructions (AVX512-BF16 or AMX) is emulated and "
                      "runs many times slower than fp32 (16.2 s against 1.3 s for one 320x506 pair measured); "
                      "use fp32", stacklevel=2)
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


PROBE_SECONDS = 0.2  # how long default_threads watches the CPUs: 20 clock ticks per core at 100 Hz


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (a container given
    `--cpus 2` on a 64-core host may use 2, whatever the affinity says)."""
    import math
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time the cgroup grants per period (cgroup v2 cpu.max, else v1), None when unlimited."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


_PROBE_START: tuple | None = None  # busy_cores' first sample, taken early (start_probe), used once
PROBE_START_MAX_AGE = 5.0  # seconds; an older first sample is not used


def _probe_sample() -> tuple:
    """(CPUs, their busy seconds, this process's CPU seconds, time) for busy_cores."""
    import os
    import time

    cpus = frozenset(f"cpu{i}" for i in os.sched_getaffinity(0))
    return cpus, _cpu_busy_seconds(cpus), _own_cpu_seconds(), time.perf_counter()


def start_probe() -> None:
    """Take busy_cores' first sample now (tune_process: the command's start), so the command's default thread
    count, asked for once its options are parsed, waits only for the rest of the window: parsing the options
    (0.1-0.2 s: typer, pydantic) counts as window instead of being followed by a 0.2 s sleep."""
    global _PROBE_START
    try:
        _PROBE_START = _probe_sample()
    except (AttributeError, ImportError, OSError, ValueError):
        _PROBE_START = None


def busy_cores(window: float = PROBE_SECONDS) -> float:
    """How many of this process's usable CPUs other processes keep busy: their busy time in /proc/stat over
    `window` seconds (this process sleeps for what start_probe's sample, if recent, leaves of it; its own time
    is taken out), in cores. 0.0 where /proc/stat cannot be read (not Linux)."""
    import time

    global _PROBE_START
    start, _PROBE_START = _PROBE_START, None
    try:
        now = _probe_sample()
        if start is None or start[0] != now[0] or not 0 <= now[3] - start[3] <= PROBE_START_MAX_AGE:
            start = now
        if now[3] - start[3] < window:
            time.sleep(window - (now[3] - start[3]))
        cpus, busy1, own1, t1 = _probe_sample()
        _, busy0, own0, t0 = start
    except (AttributeError, ImportError, OSError, ValueError):  # no affinity, /proc/stat or resource
        return 0.0
    others = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(t1 - t0, 1e-3)
    return min(others, float(len(cpus)))


def _cpu_busy_seconds(cpus: set[str]) -> float:
    """Busy time (all but idle and iowait) of the named CPUs ('cpu0', ...) since boot, from /proc/stat."""
    import os

    busy = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name in cpus:
                user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
                busy += user + nice + system + irq + softirq + steal
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """CPU time of this process, all its threads."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def default_threads() -> int:
    """The commands' thread count when --threads is not given (or 0): OMP_NUM_THREADS when set, else the
    usable cores (usable_cores) less those another process keeps busy (busy_cores, rounded: a core more than
    half busy counts), at least one.

    Why: with as many threads as cores and one core held by another process, torch's OpenMP threads wait
    for the one that shares the busy core at every parallel region, and a forward collapses; one thread on
    the free core is many times faster (benchmarks/RESULTS.md, "Threads on a shared machine"). OpenMP's wait
    policy is left as it is: spinning is fastest with one thread per free core, and OMP_WAIT_POLICY=PASSIVE
    (8-14 % slower there) is the user's choice against load that starts after this probe."""
    import os

    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    usable = usable_cores()
    if usable == 1:
        return 1
    return max(1, usable - int(busy_cores() + 0.5))


def set_threads(threads: int | None) -> int:
    """Use `threads` CPU threads for torch; None or 0 leaves torch's setting as it is (a library call does not
    change a process's threads unasked; the commands pass default_threads() instead). Returns the count in use."""
    torch = import_torch()

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
    - torch's import, when a command first needs it, runs with the garbage collector paused and what it
      loaded is frozen (import_torch).
    - The probe of busy cores behind the default thread count starts (start_probe).

    Returns whether the allocator tuning applied."""
    import os

    global _FREEZE_TORCH
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    _FREEZE_TORCH = True
    if not os.environ.get("OMP_NUM_THREADS"):
        start_probe()
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
