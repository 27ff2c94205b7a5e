"""One process, or N under `torchrun --nproc-per-node N` (DistributedDataParallel; gloo on CPU, nccl on GPU),
with the same code: the device follows every command's rule (swinfuse.devices), torchrun's ranks take one
GPU each, and the few collective steps (RNG states for the trainer state, a shared stop) live here."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def setup_distributed(device_arg: str) -> tuple[int, int, torch.device, bool]:
    """-> (rank, world size, device, whether this call made the process group)."""
    from swinfuse.devices import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_arg)  # every command's rule and DeviceError
    use_cuda = device.type == "cuda"
    if use_cuda and world > 1:
        device = torch.device(f"cuda:{local_rank}")  # torchrun: one GPU per process
    if use_cuda and device.index is not None:
        torch.cuda.set_device(device)
    initialised = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        initialised = True
    return rank, world, device, initialised


def teardown(initialised: bool) -> None:
    if initialised and dist.is_initialized():
        dist.destroy_process_group()


class PromptedFusion(nn.Module):
    """Text encoding inside forward, so DDP sees (and synchronises) the text encoder's gradients too."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ir: torch.Tensor, vis: torch.Tensor, prompts: list[str], **kwargs) -> torch.Tensor:
        text = self.model.encode_prompts(prompts, cache=False)  # (B, D)
        return self.model(ir, vis, text, **kwargs)  # (B, 1, H*up, W*up); kwargs: SwinFuse.forward's (frame=)


def wrap(model: nn.Module, world: int, device: torch.device) -> nn.Module:
    """The module the loop calls: prompts in, fused image out; under DDP when there are several processes."""
    net = PromptedFusion(model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                                  broadcast_buffers=False)  # buffers are constant masks
    return net


def gather(obj, world: int) -> list:
    """Every rank's `obj`, in rank order (a one-item list in one process)."""
    if world == 1:
        return [obj]
    objs = [None] * world
    dist.all_gather_object(objs, obj)
    return objs


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank when it is true on one: every rank must stop at the same step."""
    if world == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
