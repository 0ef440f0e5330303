"""Distributed training helpers: the process group torchrun describes, and cross-rank gathers."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str) -> tuple[int, int]:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
    return dist_info()


def gather(features: torch.Tensor, keys: list, captions: list):
    rank, world = dist_info()
    if world == 1:
        return features, keys, captions
    from torch.distributed.nn.functional import all_gather

    feats = torch.cat(all_gather(features))  # keeps the gradient path to every rank's features
    objs: list = [None] * world
    dist.all_gather_object(objs, (keys, captions))
    return feats, [k for o in objs for k in o[0]], [c for o in objs for c in o[1]]


def allreduce_grads(module: nn.Module) -> None:
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world
