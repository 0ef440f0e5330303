"""The field's headline protocols as pure functions: zero-shot classification and Text2Shape retrieval.

* ``zero_shot_accuracy`` — what OpenShape, ULIP-2, Uni3D, TAMM and Duoduo CLIP lead with (top-1/3/5 on
  ModelNet40, Objaverse-LVIS, ScanObjectNN) plus the mean per-class (balanced) accuracy ModelNet
  papers also report.
* ``text_to_shape`` — Text2Shape / TriCoLo's text → shape retrieval: each text has exactly its one
  shape relevant; RR@k and NDCG@5.

Both rank by cosine similarity and break ties pessimistically like ``harness.metrics.retrieval``: the
rank of the true item is 1 + the number of *other* items scoring at least as high, so a degenerate
model that scores everything the same gets the worst rank, never a figure that depends on storage
order. Queries are scored in blocks, so large galleries stay within a bounded memory.
"""
from __future__ import annotations

import numpy as np

from .retrieval import RetrievalInputError, l2_normalize

BLOCK_ROWS = 4096  # queries scored at once


def true_item_ranks(query_emb, gallery_emb, targets) -> np.ndarray:
    """1-based pessimistic rank of ``gallery[targets[q]]`` for every query ``q`` (cosine similarity):
    1 + the number of other gallery rows scoring >= the target's score."""
    q, g = l2_normalize(query_emb), l2_normalize(gallery_emb)
    targets = np.asarray(targets)
    if len(q) != len(targets):
        raise RetrievalInputError(f"{len(q)} queries but {len(targets)} targets")
    if q.shape[1] != g.shape[1]:
        raise RetrievalInputError(f"query dim {q.shape[1]} != gallery dim {g.shape[1]}")
    if len(targets) and (targets.min() < 0 or targets.max() >= len(g)):
        raise RetrievalInputError(f"targets must index the {len(g)} gallery rows, got "
                                  f"{targets.min()}..{targets.max()}")
    ranks = np.empty(len(q), dtype=np.int64)
    for s in range(0, len(q), BLOCK_ROWS):
        scores = q[s:s + BLOCK_ROWS] @ g.T
        rows = np.arange(len(scores))
        true = scores[rows, targets[s:s + BLOCK_ROWS]]
        # (>= counts the target itself: that is the 1 of 1 + the others)
        block = (scores >= true[:, None]).sum(axis=1)
        block[~np.isfinite(true)] = len(g)  # a NaN score is the worst rank, never rank 0
        ranks[s:s + BLOCK_ROWS] = block
    return ranks


def zero_shot_accuracy(query_emb, class_emb, labels, ks=(1, 3, 5)) -> dict:
    """Zero-shot classification of ``query_emb`` (N, D) against ``class_emb`` (C, D) (e.g. the
    prompt-ensembled text embeddings of the class names); ``labels`` (N,) are row indices into
    ``class_emb``. Returns ``{"top1", "top3", "top5", "mean_per_class"}`` (one ``top<k>`` per k):
    the query is right at k when fewer than k other classes score >= its true class;
    ``mean_per_class`` is the mean over the classes present of their top-1 accuracy."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise RetrievalInputError("zero_shot_accuracy needs at least one query, got none")
    return zero_shot_figures(true_item_ranks(query_emb, class_emb, labels), labels, ks)[0]


def zero_shot_figures(ranks, labels, ks=(1, 3, 5)) -> tuple[dict, dict]:
    """(``zero_shot_accuracy``'s figures, ``{"top<k>": per-query 0/1}``) from the true classes' ranks."""
    hits = {f"top{k}": (np.asarray(ranks) <= k).astype(float) for k in ks}
    out = {name: float(v.mean()) for name, v in hits.items()}
    classes, inverse = np.unique(np.asarray(labels), return_inverse=True)
    per_class = np.bincount(inverse, weights=(np.asarray(ranks) <= 1).astype(float), minlength=len(classes))
    out["mean_per_class"] = float(np.mean(per_class / np.bincount(inverse, minlength=len(classes))))
    return out, hits


def text_to_shape(text_emb, shape_emb, text_shape, shape_keys, ks=(1, 5), ndcg_k: int = 5) -> dict:
    """Text2Shape's protocol: each text (``text_shape[t]`` its shape's key) has exactly its one shape
    relevant among the gallery ``shape_emb`` (rows keyed by ``shape_keys``; pooled view embeddings).
    Returns ``{"RR@<k>": share of texts whose shape ranks <= k, "NDCG@5": mean of 1/log2(rank + 1)
    over texts whose shape ranks <= 5, else 0}``."""
    ranks = text_to_shape_ranks(text_emb, shape_emb, text_shape, shape_keys)
    values = text_to_shape_values(ranks, ks, ndcg_k)
    return {name: float(v.mean()) for name, v in values.items()}


def text_to_shape_ranks(text_emb, shape_emb, text_shape, shape_keys) -> np.ndarray:
    """The rank of each text's shape among ``shape_keys`` (checked: unique keys, every text's shape in)."""
    index = {k: i for i, k in enumerate(shape_keys)}
    if len(index) != len(shape_keys):
        raise RetrievalInputError("shape_keys must be unique: one gallery row per shape")
    missing = sorted({str(k) for k in text_shape if k not in index})
    if missing:
        raise RetrievalInputError(f"texts of shapes missing from the gallery: {missing[:5]}")
    if len(text_shape) == 0:
        raise RetrievalInputError("text_to_shape needs at least one text, got none")
    return true_item_ranks(text_emb, shape_emb, [index[k] for k in text_shape])


def text_to_shape_values(ranks, ks=(1, 5), ndcg_k: int = 5) -> dict:
    """Per-text values whose means are ``text_to_shape``'s figures: ``{"RR@<k>": 0/1, "NDCG@5": gain}``."""
    ranks = np.asarray(ranks)
    out = {f"RR@{k}": (ranks <= k).astype(float) for k in ks}
    out[f"NDCG@{ndcg_k}"] = np.where(ranks <= ndcg_k, 1.0 / np.log2(ranks + 1.0), 0.0)
    return out
