"""train's device choice is every command's (devices.resolve_device): the same rule, the same typed error."""

from __future__ import annotations

import pytest
import torch

from swinfuse.errors import DeviceError
from swinfuse.training import distributed


@pytest.fixture
def single(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def two_gpus(monkeypatch):
    """torch.cuda as with two GPUs, and the process group, recorded instead of made."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", torch.device(device))))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    return calls


def test_cpu_single_process(single):
    assert distributed.setup_distributed("cpu") == (0, 1, torch.device("cpu"), False)


@pytest.mark.parametrize("name, message", [
    ("tpu", "--device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("cuda", "--device cuda was asked for but CUDA is not available"),
    ("cuda:1", "--device cuda:1 was asked for but CUDA is not available"),
])
def test_device_errors_are_typed_as_every_commands(name, message, single, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError) as err:
        distributed.setup_distributed(name)
    assert str(err.value).startswith(message)


def test_cuda_index_is_kept_in_one_process(single, two_gpus):
    assert distributed.setup_distributed("cuda:1") == (0, 1, torch.device("cuda:1"), False)
    assert two_gpus == [("set_device", torch.device("cuda:1"))]
    with pytest.raises(DeviceError, match="only 2 CUDA device"):
        distributed.setup_distributed("cuda:2")


def test_torchrun_takes_the_local_rank_gpu(two_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.setup_distributed("auto") == (1, 2, torch.device("cuda:1"), True)
    assert two_gpus == [("set_device", torch.device("cuda:1")), ("init", "nccl")]


def test_torchrun_on_cpu_uses_gloo(two_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.setup_distributed("cpu") == (0, 2, torch.device("cpu"), True)
    assert two_gpus == [("init", "gloo")]
