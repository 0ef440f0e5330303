"""Zero-shot classification and Text2Shape retrieval against naive loops, exact ties included."""
import math

import numpy as np
import pytest

from harness.metrics import RetrievalInputError, protocols, text_to_shape, zero_shot_accuracy


def _cos(a, b):
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def naive_rank(scores_row, target):
    """1 + the number of other items scoring >= the target (pessimistic ties)."""
    return 1 + sum(1 for j, s in enumerate(scores_row) if j != target and s >= scores_row[target])


def naive_zero_shot(query, classes, labels, ks):
    scores = _cos(query, classes)
    ranks = [naive_rank(scores[i], labels[i]) for i in range(len(labels))]
    out = {f"top{k}": sum(r <= k for r in ranks) / len(ranks) for k in ks}
    per_class = {}
    for r, lab in zip(ranks, labels, strict=True):
        per_class.setdefault(lab, []).append(r <= 1)
    out["mean_per_class"] = sum(sum(v) / len(v) for v in per_class.values()) / len(per_class)
    return out


def naive_text_to_shape(texts, shapes, text_shape, keys, ks):
    scores = _cos(texts, shapes)
    ranks = [naive_rank(scores[i], keys.index(k)) for i, k in enumerate(text_shape)]
    out = {f"RR@{k}": sum(r <= k for r in ranks) / len(ranks) for k in ks}
    out["NDCG@5"] = sum(1 / math.log2(r + 1) if r <= 5 else 0.0 for r in ranks) / len(ranks)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_shot_matches_the_naive_loop(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    classes = rng.normal(size=(12, 8))
    labels = rng.integers(0, 12, size=70)
    query = classes[labels] + rng.normal(scale=1.5, size=(70, 8))
    monkeypatch.setattr(protocols, "BLOCK_ROWS", 16)  # several blocks
    got = zero_shot_accuracy(query, classes, labels)
    want = naive_zero_shot(query, classes, labels, (1, 3, 5))
    assert set(got) == {"top1", "top3", "top5", "mean_per_class"}
    assert got == pytest.approx(want)
    assert 0 < got["top1"] <= got["top3"] <= got["top5"] <= 1


def test_zero_shot_ties_are_pessimistic_and_classes_weigh_equally():
    classes = np.eye(3)
    # query 0 ties classes 0 and 1 exactly: its true class 0 is not top-1 (another class scores >=)
    query = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    got = zero_shot_accuracy(query, classes, [0, 2, 2, 2], ks=(1, 2))
    assert got["top1"] == 0.75 and got["top2"] == 1.0
    assert got["mean_per_class"] == 0.5  # class 0: 0/1, class 2: 3/3 — not the 0.75 of all queries
    # a model that scores every class the same gets the worst rank, whatever the storage order
    flat = zero_shot_accuracy(np.ones((4, 3)), np.ones((5, 3)), [0, 1, 2, 4], ks=(1, 5))
    assert flat["top1"] == 0.0 and flat["top5"] == 1.0
    assert zero_shot_accuracy(query, classes, [0, 2, 2, 2], ks=(1,)) == pytest.approx(
        naive_zero_shot(query, classes, [0, 2, 2, 2], (1,)))


@pytest.mark.parametrize("seed", [0, 1])
def test_text_to_shape_matches_the_naive_loop(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    keys = [f"shape{i}" for i in range(30)]
    shapes = rng.normal(size=(30, 16))
    text_shape = [keys[i] for i in rng.integers(0, 30, size=90)]
    texts = shapes[[keys.index(k) for k in text_shape]] + rng.normal(scale=1.2, size=(90, 16))
    # exact ties: two gallery rows equal to a third
    shapes[3] = shapes[7] = shapes[11]
    monkeypatch.setattr(protocols, "BLOCK_ROWS", 32)
    got = text_to_shape(texts, shapes, text_shape, keys)
    want = naive_text_to_shape(texts, shapes, text_shape, keys, (1, 5))
    assert set(got) == {"RR@1", "RR@5", "NDCG@5"} and got == pytest.approx(want)
    assert got["RR@1"] <= got["NDCG@5"] <= got["RR@5"]


def test_text_to_shape_degenerate_and_bad_input():
    keys = ["a", "b", "c"]
    got = text_to_shape(np.ones((3, 4)), np.ones((3, 4)), ["a", "b", "c"], keys)
    assert got == {"RR@1": 0.0, "RR@5": 1.0, "NDCG@5": pytest.approx(0.5)}  # every text at rank 3
    nan = np.full((1, 4), np.nan)
    assert text_to_shape(nan, np.eye(4)[:3], ["a"], keys)["RR@5"] == 1.0  # worst rank (3), not 0
    assert text_to_shape(nan, np.eye(4)[:3], ["a"], keys)["RR@1"] == 0.0
    with pytest.raises(RetrievalInputError, match="missing from the gallery"):
        text_to_shape(np.ones((1, 4)), np.ones((3, 4)), ["z"], keys)
    with pytest.raises(RetrievalInputError, match="unique"):
        text_to_shape(np.ones((1, 4)), np.ones((3, 4)), ["a"], ["a", "a", "b"])
    with pytest.raises(RetrievalInputError, match="index the 3 gallery rows"):
        zero_shot_accuracy(np.ones((1, 4)), np.ones((3, 4)), [3])
