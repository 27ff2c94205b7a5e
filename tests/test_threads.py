"""The commands' default thread count: the usable cores less those other processes keep busy, so a fuse on a
shared machine does not collapse (benchmarks/RESULTS.md, "Threads on a shared machine")."""

import json
import threading
import time

import pytest

from conftest import run_main
from swinfuse import devices


@pytest.fixture
def machine(monkeypatch):
    """default_threads on a made-up machine: `usable` cores, `busy` of them held by other processes."""
    state = {"usable": 2, "busy": 0.0, "probed": 0}

    def busy_cores(window=devices.PROBE_SECONDS):
        state["probed"] += 1
        return state["busy"]

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(devices, "usable_cores", lambda: state["usable"])
    monkeypatch.setattr(devices, "busy_cores", busy_cores)
    return state


@pytest.mark.parametrize("usable, busy, expected", [
    (2, 0.0, 2), (2, 0.3, 2),  # an idle machine, or light background: every core
    (2, 0.9, 1), (2, 1.0, 1),  # one core held by a training job: the other one
    (2, 2.0, 1), (1, 0.0, 1),  # never fewer than one
    (16, 3.6, 12),
])
def test_default_is_usable_cores_less_busy_ones(machine, usable, busy, expected):
    machine.update(usable=usable, busy=busy)
    assert devices.default_threads() == expected


def test_omp_num_threads_wins_without_probing(machine, monkeypatch):
    machine.update(busy=1.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert devices.default_threads() == 3
    assert machine["probed"] == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert devices.default_threads() == 1


def test_one_usable_core_needs_no_probe(machine):
    machine.update(usable=1)
    assert devices.default_threads() == 1 and machine["probed"] == 0


@pytest.mark.parametrize("quota, expected", [(None, 2), (0.5, 1), (1.0, 1), (1.5, 2), (8.0, 2)])
def test_usable_cores_honour_a_cgroup_quota(monkeypatch, quota, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(devices, "_cgroup_cpu_quota", lambda: quota)
    assert devices.usable_cores() == expected


def test_busy_cores_counts_others_not_this_process(monkeypatch):
    # Other processes' busy time comes from /proc/stat; this process's own time is taken out.
    clock = {"t": 0.0, "busy": 100.0, "own": 5.0}

    def sleep(seconds):
        clock["t"] += seconds
        clock["busy"] += 0.9 * seconds + 0.5 * seconds  # another process 0.9 core, this one 0.5
        clock["own"] += 0.5 * seconds

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(devices, "_cpu_busy_seconds", lambda cpus: clock["busy"])
    monkeypatch.setattr(devices, "_own_cpu_seconds", lambda: clock["own"])
    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "perf_counter", lambda: clock["t"])
    assert devices.busy_cores(0.2) == pytest.approx(0.9)


@pytest.fixture
def clock(monkeypatch):
    """A made-up machine of two CPUs and a clock: advance(seconds, others, own) moves time on with other
    processes keeping `others` cores busy and this one `own`; sleeping is advancing with this one idle."""
    state = {"t": 100.0, "busy": 1000.0, "own": 5.0, "slept": []}

    def advance(seconds, others=0.9, own=0.0):
        state["t"] += seconds
        state["busy"] += (others + own) * seconds
        state["own"] += own * seconds

    def sleep(seconds):
        state["slept"].append(round(seconds, 6))
        advance(seconds)

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(devices, "_cpu_busy_seconds", lambda cpus: state["busy"])
    monkeypatch.setattr(devices, "_own_cpu_seconds", lambda: state["own"])
    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "perf_counter", lambda: state["t"])
    monkeypatch.setattr(devices, "_PROBE_START", None)
    state["advance"] = advance
    return state


def test_the_probe_started_at_the_commands_start_waits_only_for_the_rest_of_its_window(clock):
    # A first image in two seconds (issue 21): the time spent parsing the options counts as window; this
    # process's own work meanwhile is not another process's.
    devices.start_probe()
    clock["advance"](0.15, others=0.9, own=1.0)  # parsing the options, one core busy with it
    assert devices.busy_cores(0.2) == pytest.approx(0.9)
    assert clock["slept"] == [0.05]
    assert devices.busy_cores(0.2) == pytest.approx(0.9)  # the first sample is used once
    assert clock["slept"] == [0.05, 0.2]


def test_a_probe_start_long_past_is_not_used(clock):
    devices.start_probe()
    clock["advance"](devices.PROBE_START_MAX_AGE + 1, others=0.0)
    assert devices.busy_cores(0.2) == pytest.approx(0.9)  # the window now, not the idle minutes before
    assert clock["slept"] == [0.2]


def test_busy_cores_without_proc_stat_is_zero(monkeypatch):
    def unreadable(cpus):
        raise OSError("no /proc/stat")

    monkeypatch.setattr(devices, "_cpu_busy_seconds", unreadable)
    assert devices.busy_cores(0.01) == 0.0


def test_busy_cores_leaves_out_this_process_on_the_real_machine():
    # A thread of ours spinning through the window is our time, not another process's.
    import os

    if not hasattr(os, "sched_getaffinity") or not os.path.exists("/proc/stat"):
        pytest.skip("Linux only")
    before = devices.busy_cores(0.1)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        during = devices.busy_cores(0.3)
    finally:
        stop.set()
        spinner.join()
    cores = len(os.sched_getaffinity(0))
    assert 0.0 <= before <= cores and 0.0 <= during <= cores
    assert during < before + 0.6  # our spinning thread (about one core) is not counted




@pytest.mark.parametrize("given, expected", [([], 1), (["--threads", "0"], 1), (["--threads", "2"], 2)])
def test_cli_unset_and_zero_threads_take_the_default_rule(machine, monkeypatch, capsys, given, expected):
    machine.update(usable=2, busy=1.0)
    code, out = run_main(monkeypatch, capsys, ["profile", "--preset", "smoke", "--size", "16", "--repetitions", "1", "--warmup", "0",
                                                "--device", "cpu", "--json", *given])
    assert code in (0, None), out.err
    assert json.loads(out.out)["threads"] == expected


@pytest.mark.parametrize("given, expected", [([], 1), (["--threads", "0"], 1), (["--threads", "2"], 2)])
def test_train_threads_take_the_same_rule(machine, monkeypatch, capsys, given, expected):
    from swinfuse import api

    seen = []

    def record(args, progress=None):
        seen.append(args.threads)
        raise api.ConfigError("stop here")

    machine.update(usable=2, busy=1.0)
    monkeypatch.setattr(api, "train", record)
    code, _ = run_main(monkeypatch, capsys, ["train", "--data", "pairs", *given])
    assert code == 1 and seen == [expected]


def test_threads_zero_is_torch_default_and_negative_is_refused():
    import torch

    from swinfuse import devices
    from swinfuse.errors import DeviceError

    assert devices.set_threads(0) == devices.set_threads(None) == torch.get_num_threads()
    with pytest.raises(DeviceError, match=r"^--threads must be a positive count, or 0 for torch's default; got -3$"):
        devices.set_threads(-3)
