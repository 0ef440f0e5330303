"""Bootstrap confidence intervals over test shapes and paired bootstrap between two runs.

Resampling unit is the *shape* (not the query): a shape's captions are correlated, so resampling
texts would understate the uncertainty. A statistic over queries is recomputed from per-query
values of the resampled shapes without re-ranking anything.
"""
from __future__ import annotations

import numpy as np


class BootstrapInputError(ValueError):
    """Scores handed to a bootstrap function are inconsistent."""


def _groups(keys) -> tuple[np.ndarray, int]:
    _, inv = np.unique(np.asarray(keys).astype(str), return_inverse=True)
    return inv, int(inv.max()) + 1 if len(inv) else 0


def resample_counts(n_groups: int, resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, n_groups) multiplicities of each group in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=resamples)


def bootstrap_distribution(values, keys, stat: str = "mean", resamples: int = 1000,
                           seed: int = 0) -> np.ndarray:
    """Bootstrap replicates of ``stat`` ("mean" or "median") over per-query ``values`` grouped by ``keys``.

    Shapes are drawn with replacement; a drawn shape brings all of its queries.
    """
    values = np.asarray(values, dtype=float)
    inv, n = _groups(keys)
    if len(values) != len(inv):
        raise BootstrapInputError(f"{len(values)} values but {len(inv)} keys; give one shape key per value")
    if n == 0 or resamples <= 0:
        return np.zeros(0)
    counts = resample_counts(n, resamples, seed)
    if stat == "mean":
        sums = np.bincount(inv, weights=values, minlength=n)
        sizes = np.bincount(inv, minlength=n).astype(float)
        return (counts @ sums) / np.maximum(counts @ sizes, 1e-12)
    if stat == "median":
        order = np.argsort(inv, kind="stable")
        starts = np.searchsorted(inv[order], np.arange(n))
        sizes = np.bincount(inv, minlength=n)
        out = np.empty(resamples)
        for r in range(resamples):
            reps = np.repeat(np.arange(n), counts[r])
            idx = np.concatenate([order[starts[g]:starts[g] + sizes[g]] for g in reps])
            out[r] = np.median(values[idx])
        return out
    raise BootstrapInputError(f"unknown stat {stat!r}; allowed: mean, median")


def bootstrap_ci(values, keys, stat: str = "mean", resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> list[float]:
    """Percentile bootstrap CI ``[lo, hi]`` (plain floats) of ``stat`` over shapes."""
    dist = bootstrap_distribution(values, keys, stat, resamples, seed)
    if len(dist) == 0:
        return [float("nan"), float("nan")]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(dist, [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]


def paired_bootstrap(a_scores, b_scores, resamples: int = 1000, seed: int = 0, weights=None,
                     higher_is_better: bool = True) -> float:
    """Probability that run A beats run B, from per-shape scores on the same test shapes.

    ``a_scores[i]`` and ``b_scores[i]`` belong to the same shape (e.g. ``run.info["per_shape"]``
    lists aligned by ``"shapes"``); ``weights`` are the per-shape query counts (``"n_queries"``) so
    that the statistic equals the query-weighted mean. Each resample draws the same shapes for both
    runs; ties count one half. With ``higher_is_better=False`` (medR) lower means better.
    """
    a = np.asarray(a_scores, dtype=float)
    b = np.asarray(b_scores, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise BootstrapInputError(
            "paired bootstrap needs two equally long 1-D score lists on the same shapes, "
            f"got {a.shape} and {b.shape}")
    if len(a) == 0:
        raise BootstrapInputError("paired bootstrap needs at least one shared shape, got none")
    w = np.ones_like(a) if weights is None else np.asarray(weights, dtype=float)
    counts = resample_counts(len(a), resamples, seed) * w[None, :]
    denom = np.maximum(counts.sum(axis=1), 1e-12)
    ma, mb = counts @ a / denom, counts @ b / denom
    diff = ma - mb if higher_is_better else mb - ma
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


def align_per_shape(a: dict, b: dict, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of ``metric`` from two ``run.info["per_shape"]`` records on their shared shapes.

    Returns ``(a_scores, b_scores, weights)`` ordered by shape key.
    """
    for name, rec in (("A", a), ("B", b)):
        if metric not in rec:
            raise BootstrapInputError(f"run {name} has no per-shape scores for {metric!r}; has {sorted(rec)}")
    ia = {k: i for i, k in enumerate(a["shapes"])}
    ib = {k: i for i, k in enumerate(b["shapes"])}
    shared = sorted(set(ia) & set(ib))
    wa = a.get("n_queries", {}).get(metric) if isinstance(a.get("n_queries"), dict) else None
    sa = np.array([a[metric][ia[k]] for k in shared], dtype=float)
    sb = np.array([b[metric][ib[k]] for k in shared], dtype=float)
    w = np.array([wa[ia[k]] for k in shared], dtype=float) if wa is not None else np.ones(len(shared))
    keep = np.isfinite(sa) & np.isfinite(sb)
    return sa[keep], sb[keep], w[keep]
