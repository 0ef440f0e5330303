"""Aggregation of per-query scores into a run record's figures: metrics, 95 % CIs, per category, per shape.

Pure numpy. A ``Block`` is one evaluation's share of the record (retrieval of one direction, photo →
shape, one captioner); the evaluate stage merges the blocks it computed. CIs are bootstraps over shapes
(a drawn shape brings all its queries), per-shape scores feed the leaderboard's paired bootstrap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bootstrap import bootstrap_ci
from .protocols import text_to_shape_ranks, text_to_shape_values
from .retrieval import per_category, summarize


@dataclass
class Block:
    """``metrics``/``ci95``: ``{name: value}`` / ``{name: [lo, hi]}``; ``per_category``: ``{category:
    {name: value}}``; ``per_shape``: ``{name: {shape: score}}`` plus ``"_n"``: ``{direction: {shape:
    number of queries}}``."""

    metrics: dict = field(default_factory=dict)
    ci95: dict = field(default_factory=dict)
    per_category: dict = field(default_factory=dict)
    per_shape: dict = field(default_factory=dict)

    def merge(self, other: Block) -> Block:
        """Add ``other``'s figures to this block (in place; returns it)."""
        self.metrics.update(other.metrics)
        self.ci95.update(other.ci95)
        for cat, vals in other.per_category.items():
            self.per_category.setdefault(cat, {}).update(vals)
        for name, vals in other.per_shape.items():
            if name == "_n":
                self.per_shape.setdefault("_n", {}).update(vals)
            else:
                self.per_shape[name] = vals
        return self


def query_values(ranks, metric: str) -> tuple[np.ndarray, str]:
    """Per-query values of ``metric`` (R@k, mAP or medR) and the statistic that aggregates them."""
    if metric.startswith("R@"):
        return (ranks.first_rank <= int(metric[2:])).astype(float), "mean"
    if metric == "mAP":
        return ranks.ap, "mean"
    return ranks.first_rank, "median"


def retrieval_block(ranks: dict, ks, resamples: int, seed: int, category_of: dict) -> Block:
    """The figures of retrieval ranks ``{direction: QueryRanks}`` (``resamples`` 0: no CIs)."""
    out = Block()
    names = [f"R@{k}" for k in ks] + ["mAP", "medR"]
    for direction, r in ranks.items():
        out.metrics.update(summarize(r, ks, prefix=f"{direction}_"))
        keys = r.keys.astype(str)
        uniq, inv = np.unique(keys, return_inverse=True)
        counts = np.bincount(inv, minlength=len(uniq))
        out.per_shape.setdefault("_n", {})[direction] = dict(zip(uniq.tolist(), counts.tolist(), strict=True))
        for name in names:
            values, stat = query_values(r, name)
            full = f"{direction}_{name}"
            if resamples > 0 and len(values):
                out.ci95[full] = bootstrap_ci(values, keys, stat=stat, resamples=resamples, seed=seed)
            # Per-shape mean of the query values (medR: mean first rank) for the paired bootstrap.
            sums = np.bincount(inv, weights=values, minlength=len(uniq))
            means = sums / np.maximum(counts, 1)
            out.per_shape[full] = dict(zip(uniq.tolist(), means.tolist(), strict=True))
    out.per_category = per_category(ranks, category_of, ks)
    return out


def per_query_block(metrics: dict, values: dict, keys, query_set: str, resamples: int, seed: int,
                    category_of: dict) -> Block:
    """A block of ``metrics`` whose per-query ``values`` (``{metric: array}``, each query of the shape
    ``keys[i]``, of the query set ``query_set``) average to them: CIs over shapes (a drawn shape brings
    all its queries; none for a non-finite metric), per-category means, per-shape means and counts."""
    keys = np.asarray(keys, dtype=str)
    uniq, inv = np.unique(keys, return_inverse=True)
    counts = np.bincount(inv, minlength=len(uniq))
    out = Block(metrics=dict(metrics))
    out.per_shape["_n"] = {query_set: dict(zip(uniq.tolist(), counts.tolist(), strict=True))}
    cats = np.array([category_of.get(k, "unknown") for k in keys])
    for name, vals in values.items():
        vals = np.asarray(vals, dtype=float)
        if resamples > 0 and len(vals) and np.isfinite(metrics.get(name, 0.0)):
            out.ci95[name] = bootstrap_ci(vals, keys, resamples=resamples, seed=seed)
        means = np.bincount(inv, weights=vals, minlength=len(uniq)) / np.maximum(counts, 1)
        out.per_shape[name] = dict(zip(uniq.tolist(), means.tolist(), strict=True))
        for cat in sorted(set(cats)):
            out.per_category.setdefault(str(cat), {})[name] = float(vals[cats == cat].mean())
    return out


def text_to_shape_block(text_emb, shape_emb, text_shape, shape_keys, resamples: int, seed: int,
                        category_of: dict, ndcg_k: int = 5) -> Block:
    """``t2s_RR@1``, ``t2s_RR@5``, ``t2s_NDCG@5`` (Text2Shape's protocol, ``text_to_shape``) with CIs
    over shapes (a drawn shape brings all its texts), per category and per shape."""
    ranks = text_to_shape_ranks(text_emb, shape_emb, text_shape, shape_keys)
    values = {f"t2s_{k}": v for k, v in text_to_shape_values(ranks, ndcg_k=ndcg_k).items()}
    metrics = {name: float(v.mean()) for name, v in values.items()}
    return per_query_block(metrics, values, text_shape, "t2s", resamples, seed, category_of)


def caption_block(scores: dict, items: dict, prefix: str, resamples: int, seed: int,
                  category_of: dict) -> Block:
    """``cap_<prefix>_*`` figures of one captioner: corpus ``scores`` as metrics; CIs, per-category and
    per-shape figures from the sentence-level scores ``items`` (``{metric: {shape: score}}``)."""
    out = Block(metrics={f"cap_{prefix}_{k}": v for k, v in scores.items()})
    ids = list(next(iter(items.values())))
    cats = np.array([category_of.get(i, "unknown") for i in ids])
    for name, per_id in items.items():
        vals = np.array([per_id[i] for i in ids])
        key = f"cap_{prefix}_{name}"
        if resamples > 0:
            out.ci95[key] = bootstrap_ci(vals, ids, resamples=resamples, seed=seed)
        out.per_shape[key] = dict(zip(ids, vals.tolist(), strict=True))
        for cat in sorted(set(cats)):
            # Per category: mean of sentence-level scores (corpus BLEU/METEOR need the whole corpus).
            out.per_category.setdefault(str(cat), {})[key] = float(vals[cats == cat].mean())
    return out


def per_shape_record(per_shape: dict) -> dict:
    """``{"shapes": [...], metric: [score per shape], "n_queries": {metric: [...]}}`` aligned lists; a
    shape without queries of a metric (no photos, no describing captions) has None there, not NaN."""
    shapes = sorted({k for name, v in per_shape.items() if name != "_n" for k in v})
    out = {"shapes": shapes, "n_queries": {}}
    for name, vals in per_shape.items():
        if name == "_n":
            continue
        out[name] = [vals.get(s) for s in shapes]
        # the query set a metric belongs to: the longest "_n" name it starts with (zs_photo_top1: zs_photo)
        owners = [d for d in per_shape.get("_n", {}) if name.startswith(f"{d}_")]
        if owners:
            n = per_shape["_n"][max(owners, key=len)]
            out["n_queries"][name] = [n.get(s, 0) for s in shapes]
    return out
