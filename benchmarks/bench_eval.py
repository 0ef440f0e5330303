"""Evaluation hot paths against references measured in the same process.

* Blockwise multi-positive recall (``harness.metrics``) on 50k queries x 50k gallery, time and
  peak memory (tracemalloc sees numpy's buffers), against a dense reference (full score matrix +
  argsort per row). The dense reference does not fit at 50k (10 GB of scores + 20 GB of argsort
  indices), so it runs at the largest size that fits comfortably (10k) and the comparison is the
  per-pair throughput ratio there; the blockwise code also runs at 10k for a same-size ratio.
* METEOR 1.5 on 5k captions: our single-JVM pipelined driver against pycocoevalcap's ``Meteor``.

Under ``--benchmark-disable`` every size shrinks so the file passes as a quick test.
"""
import random
import time
import tracemalloc

import numpy as np
import pytest

from harness.metrics.retrieval import l2_normalize, photo_ranks, summarize

DIM = 256


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    gallery = rng.normal(size=(n, DIM)).astype(np.float32)
    queries = gallery + 4.0 * rng.normal(size=(n, DIM)).astype(np.float32)  # noisy copies: R@1 < 1
    keys = np.arange(n).astype(str)
    return queries, gallery, keys


def dense_recall(queries, gallery, ks=(1, 5, 10)):
    """Reference: the whole (Q, G) score matrix and a full argsort of every row (diagonal positives)."""
    scores = l2_normalize(queries) @ l2_normalize(gallery).T
    order = np.argsort(-scores, axis=1, kind="stable")
    first = np.argmax(order == np.arange(len(queries))[:, None], axis=1) + 1
    return {f"R@{k}": float(np.mean(first <= k)) for k in ks}, first


def _measure(fn):
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, seconds, peak


def test_blockwise_recall_50k(benchmark):
    n_big, n_ref = (2_000, 1_000) if benchmark.disabled else (50_000, 10_000)
    q, g, keys = _data(n_big)

    def blockwise():
        return summarize(photo_ranks(q, g, keys, keys), prefix="")

    res, seconds, peak = _measure(blockwise) if benchmark.disabled else (None, None, None)
    if not benchmark.disabled:
        tracemalloc.start()
        t = time.perf_counter()
        res = benchmark.pedantic(blockwise, rounds=1, iterations=1)
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert 0 < res["R@1"] < 1
    # Same-size comparison with the dense reference.
    qs, gs, ks = _data(n_ref, seed=1)
    (ref, _), ref_s, ref_peak = _measure(lambda: dense_recall(qs, gs))
    small, small_s, small_peak = _measure(lambda: summarize(photo_ranks(qs, gs, ks, ks), prefix=""))
    for k in (1, 5, 10):
        assert small[f"R@{k}"] == pytest.approx(ref[f"R@{k}"])
    benchmark.extra_info.update({
        "n_queries": n_big, "n_gallery": n_big, "dim": DIM,
        "blockwise_seconds": seconds, "blockwise_peak_MB": peak / 2**20,
        "blockwise_pairs_per_s": n_big * n_big / seconds,
        "ref_size": n_ref, "dense_seconds": ref_s, "dense_peak_MB": ref_peak / 2**20,
        "blockwise_same_size_seconds": small_s, "blockwise_same_size_peak_MB": small_peak / 2**20,
        "speedup_vs_dense_same_size": ref_s / small_s,
        "throughput_ratio_50k_vs_dense": (n_big * n_big / seconds) / (n_ref * n_ref / ref_s),
    })
    assert peak < 2**30, f"blockwise peak {peak / 2**20:.0f} MB is over 1 GB"


def _captions(n, seed=0):
    rnd = random.Random(seed)
    words = ("a the chair table sofa bed desk lamp wooden black white red metal with four legs "
             "armrest modern round square tall low soft cushion back seat").split()

    def sentence():
        return " ".join(rnd.choice(words) for _ in range(rnd.randint(5, 12)))
    return {i: [sentence()] for i in range(n)}, {i: [sentence() for _ in range(5)] for i in range(n)}


def test_meteor_5k(benchmark):
    from pycocoevalcap.meteor.meteor import Meteor

    from harness.metrics.captioning import BatchMeteor, tokenize

    n = 50 if benchmark.disabled else 5_000
    res, gts = _captions(n)
    res_tok, gts_tok = tokenize({i: v[0] for i, v in res.items()}, gts)

    def ours():
        with BatchMeteor() as meteor:
            return meteor.compute_score(gts_tok, res_tok)

    t = time.perf_counter()
    score, _ = benchmark.pedantic(ours, rounds=1, iterations=1)
    seconds = time.perf_counter() - t
    if benchmark.disabled:  # equality with pycocoevalcap is a unit test; skip the second JVM here
        return
    t = time.perf_counter()
    ref = Meteor()
    ref_score, _ = ref.compute_score(gts_tok, res_tok)
    ref_seconds = time.perf_counter() - t
    del ref
    assert score == pytest.approx(ref_score, abs=1e-12)
    benchmark.extra_info.update({"captions": n, "meteor_seconds": seconds,
                                 "meteor_captions_per_s": n / seconds,
                                 "pycocoevalcap_meteor_seconds": ref_seconds,
                                 "speedup_vs_pycocoevalcap": ref_seconds / seconds})
