"""Symmetric InfoNCE where every same-shape view and every identical caption in the batch is a positive."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def positive_mask(shape_keys: Sequence[str], captions: Sequence[str]) -> torch.Tensor:
    """(B, B) bool: (i, j) is positive when image i and caption j share a shape, or caption j == caption i.

    Captions repeat across shapes ("a red chair"); treating a repeated caption as a negative would
    push apart embeddings that should agree.
    """
    def ids(values):  # equal strings → equal integer ids, so the mask is one tensor comparison
        table: dict[str, int] = {}
        return torch.tensor([table.setdefault(v, len(table)) for v in values])

    key_ids, caption_ids = ids(shape_keys), ids(captions)
    return (key_ids[:, None] == key_ids[None, :]) | (caption_ids[:, None] == caption_ids[None, :])


def multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """-log(sum of softmax mass on positives), averaged over rows: positives never act as negatives."""
    log_prob = logits.float().log_softmax(dim=-1)
    pos = log_prob.masked_fill(~positives, float("-inf")).logsumexp(dim=-1)
    return -pos.mean()


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
              shape_keys: Sequence[str], captions: Sequence[str]) -> torch.Tensor:
    """Symmetric InfoNCE with learnable temperature (``logit_scale`` is log(1/T), clamped to log 100)."""
    image_features = F.normalize(image_features.float(), dim=-1)
    text_features = F.normalize(text_features.float(), dim=-1)
    scale = logit_scale.float().clamp(max=4.6052).exp()
    logits = scale * image_features @ text_features.t()
    positives = positive_mask(shape_keys, captions).to(logits.device)
    return 0.5 * (multi_positive_nce(logits, positives) + multi_positive_nce(logits.t(), positives.t()))
