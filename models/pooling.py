"""View poolings: (shapes, views, dim) view embeddings → (shapes, dim) shape embeddings.

``POOLINGS`` maps a name to a module class; ``single``, ``mean`` and ``max`` have no parameters,
``attention`` is a small learned module (only for trainable modes, see :data:`LEARNED_POOLINGS`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from registries import Registry

from .errors import ConfigError


class SinglePooling(nn.Module):
    """The first view only (the canonical front view): the single-image baseline."""

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return views[:, 0]


class MeanPooling(nn.Module):
    """Mean of L2-normalised view embeddings."""

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return F.normalize(views, dim=-1).mean(dim=1)


class MaxPooling(nn.Module):
    """Element-wise max over views (view-pooling as in MVCNN)."""

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        return views.max(dim=1).values


class AttentionPooling(nn.Module):
    """A learned query scores each view; the output is the softmax-weighted sum of views.

    Initialised to zero scores so that, untrained, it equals mean pooling.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        views = F.normalize(views, dim=-1)
        weights = self.score(views).softmax(dim=1)
        return (weights * views).sum(dim=1)


POOLINGS: Registry = Registry("model.pooling", {
    "single": SinglePooling,
    "mean": MeanPooling,
    "max": MaxPooling,
    "attention": AttentionPooling,
}, error=ConfigError)
#: Poolings with parameters: they must be trained, so modes that train nothing cannot use them.
LEARNED_POOLINGS = frozenset({"attention"})


def make_pooling(name: str, dim: int) -> nn.Module:
    """Instantiate pooling ``name`` for embeddings of size ``dim``."""
    cls = POOLINGS.lookup(name)
    return cls(dim) if name in LEARNED_POOLINGS else cls()


def pool_views(views: torch.Tensor, pooling: nn.Module | None = None) -> torch.Tensor:
    """Pool (S, V, D) view embeddings with ``pooling`` (mean when None); returns L2-normalised (S, D)."""
    pooling = pooling if pooling is not None else MeanPooling()
    with torch.no_grad():
        return F.normalize(pooling(views.float()), dim=-1)
