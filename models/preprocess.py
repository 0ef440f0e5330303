"""Image preprocessing without per-image transform overhead for images already at the model's size.

open_clip's transform (Resize → CenterCrop → RGB → ToTensor → Normalize) spends ~0.3 ms of Python and
small-tensor work per image; renders and photo crops are made at the model's input size, so Resize and
CenterCrop leave them untouched and the rest is one uint8 → float conversion. ``FastPreprocess`` does
exactly that conversion for such images — the same float32 operations in the same order, so the
tensor is bit-for-bit the transform's (tested) — and hands every other image to the transform itself.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def _square_side(size) -> int | None:
    if isinstance(size, int):
        return size
    if isinstance(size, (list, tuple)) and len(size) == 1:
        return int(size[0])
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        return int(size[0])
    return None


def _plan(preprocess) -> tuple[int, torch.Tensor, torch.Tensor] | None:
    """(side, mean, std) when ``preprocess`` is the standard resize/crop/RGB/to-tensor/normalize chain."""
    from torchvision import transforms as T

    steps = list(getattr(preprocess, "transforms", None) or [])
    names = [type(s).__name__ for s in steps]
    if len(steps) < 3 or not isinstance(steps[-1], T.Normalize) or not isinstance(steps[-2], T.ToTensor):
        return None
    side = None
    for step, name in zip(steps[:-2], names[:-2], strict=True):
        if isinstance(step, T.Resize):
            if step.max_size is not None:
                return None
            side = _square_side(step.size) if side is None else side
            if side is None or _square_side(step.size) != side:
                return None
        elif isinstance(step, T.CenterCrop):
            if side is None or _square_side(step.size) != side:
                return None
        elif name == "MaybeConvertMode" and getattr(step, "mode", None) == "RGB":
            pass
        else:  # anything else (a random crop, a colour jitter, ...) keeps the full transform
            return None
    if side is None or steps[-1].inplace:
        return None
    mean = torch.as_tensor(steps[-1].mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(steps[-1].std, dtype=torch.float32).view(-1, 1, 1)
    if len(mean) != 3 or len(std) != 3 or bool((std == 0).any()):
        return None
    return side, mean, std


class FastPreprocess:
    """``preprocess`` with a direct path for RGB images of the side it resizes and crops to."""

    def __init__(self, preprocess: Callable):
        self.inner = preprocess
        self.plan = _plan(preprocess)

    def __call__(self, img):
        plan = self.plan
        if (plan is None or getattr(img, "mode", None) != "RGB" or img.size != (plan[0], plan[0])
                or torch.get_default_dtype() != torch.float32):
            return self.inner(img)
        # what ToTensor and Normalize compute: HWC uint8 -> CHW float32 / 255, then (x - mean) / std
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        return x.to(dtype=torch.float32).div(255).sub_(plan[1]).div_(plan[2])

    def __getattr__(self, name):  # ``.transforms`` and the like: the wrapped transform's
        if name == "inner":  # (not set yet, e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"FastPreprocess({self.inner!r})"
