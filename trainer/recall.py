"""Validation Recall@K during training: each shape against its captions, in torch on the device."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def recall_at_k(shape_emb: torch.Tensor, text_emb: torch.Tensor, text_owner: Sequence[int],
                ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """i2t and t2i Recall@K with shape identity as ground truth (val monitoring, not the benchmark)."""
    sims = shape_emb @ text_emb.t()
    owner = torch.as_tensor(list(text_owner))
    match = owner[None, :] == torch.arange(len(shape_emb))[:, None]  # (S, T)
    out = {}
    i2t_rank = torch.argsort(sims, dim=1, descending=True)
    t2i_rank = torch.argsort(sims.t(), dim=1, descending=True)
    for k in ks:
        out[f"i2t_R@{k}"] = float(match.gather(1, i2t_rank[:, :k]).any(dim=1).float().mean())
        out[f"t2i_R@{k}"] = float((t2i_rank[:, :k] == owner[:, None]).any(dim=1).float().mean())
    return out
