"""Retrieval metrics against hand-computed fixtures and a dense sort-based reference."""
import numpy as np
import pytest

from harness.metrics import (
    RetrievalInputError,
    evaluate_retrieval,
    l2_normalize,
    per_category,
    photo_to_shape,
    retrieval_ranks,
)

E = np.eye(4)


def hand_fixture():
    """Two shapes with two captions each; worked out on paper in the comments below."""
    images = np.stack([E[0], E[1]])  # shape A, shape B
    texts = np.stack([E[2], 0.6 * E[0] + 0.8 * E[2], 0.8 * E[0] + 0.6 * E[1], E[1]])
    return images, texts, ["A", "B"], ["A", "A", "B", "B"]


def test_hand_computed_multi_positive_and_ties():
    # I_A scores: t0=0 (pos), t1=.6 (pos), t2=.8, t3=0 -> order t2, t1, t3, t0 (tie: negative first)
    #   positive ranks 2 and 4 -> first 2, AP (1/2 + 2/4)/2 = .5
    # I_B scores: t3=1 (pos), t2=.6 (pos) -> ranks 1, 2 -> AP 1. Its best text is its *second* caption:
    #   diagonal-only recall (image i <-> text i) would call this a miss.
    # t2i: t0 ties A/B at 0 -> negative first -> rank 2; t1 rank 1; t2 (B) .6 < A .8 -> rank 2; t3 rank 1
    m = evaluate_retrieval(*hand_fixture(), ks=(1, 2, 5))
    assert m == pytest.approx({
        "i2t_R@1": 0.5, "i2t_R@2": 1.0, "i2t_R@5": 1.0, "i2t_mAP": 0.75, "i2t_medR": 1.5,
        "t2i_R@1": 0.5, "t2i_R@2": 1.0, "t2i_R@5": 1.0, "t2i_mAP": 0.75, "t2i_medR": 1.5})
    assert all(type(v) is float for v in m.values())


def test_input_order_does_not_matter():
    images, texts, ishape, tshape = hand_fixture()
    perm = [3, 1, 0, 2]
    a = evaluate_retrieval(images, texts, ishape, tshape)
    b = evaluate_retrieval(images[::-1], texts[perm], ishape[::-1], [tshape[i] for i in perm])
    assert a == pytest.approx(b)


def test_all_tied_scores_rank_positives_last():
    # A constant model must not get a recall that depends on storage order.
    n = 6
    m = evaluate_retrieval(np.ones((n, 3)), np.ones((n, 3)), list("abcdef"), list("abcdef"), ks=(1, 5))
    assert m["i2t_R@1"] == 0.0 and m["i2t_R@5"] == 0.0 and m["i2t_medR"] == n
    assert m["t2i_mAP"] == pytest.approx(1 / n)


def test_tied_positives_keep_gallery_order():
    # Image scores 1 for both its texts and 0 for the other shape's: ranks 1 and 2, AP 1.
    images = np.stack([E[0], E[1]])
    texts = np.stack([E[0], E[0], E[1]])
    m = evaluate_retrieval(images, texts, ["a", "b"], ["a", "a", "b"], ks=(1,))
    assert m["i2t_mAP"] == 1.0 and m["i2t_R@1"] == 1.0


def test_same_caption_match_counts_identical_strings():
    # Shapes A and B both carry "a chair"; image A is closest to B's copy of that string.
    images = np.stack([E[0], E[1]])
    texts = np.stack([E[0] * 0.9 + E[2] * 0.1, E[0], E[1]])
    tshape, strings = ["A", "B", "B"], ["a chair", "a chair", "a stool"]
    plain = evaluate_retrieval(images, texts, ["A", "B"], tshape, ks=(1,))
    assert plain["i2t_R@1"] == 0.5  # A's top text belongs to B
    same = evaluate_retrieval(images, texts, ["A", "B"], tshape, ks=(1,), text_strings=strings,
                              same_caption_match=True)
    assert same["i2t_R@1"] == 1.0
    # text "a chair" of shape B now also matches image A, which is its top image
    assert same["t2i_R@1"] == 1.0 and plain["t2i_R@1"] == pytest.approx(2 / 3)
    with pytest.raises(RetrievalInputError, match="text_strings"):
        evaluate_retrieval(images, texts, ["A", "B"], tshape, same_caption_match=True)


def dense_reference(q, g, positive):
    """Full sort per query with the documented tie order: -score, negatives first, gallery index."""
    s = l2_normalize(q) @ l2_normalize(g).T
    first, ap = [], []
    for i in range(len(q)):
        order = np.lexsort((np.arange(len(g)), positive[i], -s[i]))
        hits = positive[i][order]
        ranks = np.nonzero(hits)[0] + 1
        first.append(ranks[0] if len(ranks) else np.inf)
        ap.append(np.mean(np.arange(1, len(ranks) + 1) / ranks) if len(ranks) else 0.0)
    return np.array(first), np.array(ap)


@pytest.mark.parametrize("block_bytes", [64, 1 << 30])
def test_blockwise_equals_dense_reference_with_ties(block_bytes):
    rng = np.random.default_rng(0)
    n_shapes = 40
    ishape = np.array([f"s{i}" for i in range(n_shapes)])
    tshape = np.repeat(ishape, 3)
    # (Scaled) one-hot vectors: scores are exactly 0 or 1 whatever the BLAS kernel, so many exact ties.
    palette = np.stack([E[0], E[1], E[2], E[3], 3 * E[1]])
    images = palette[rng.integers(0, len(palette), n_shapes)]
    texts = palette[rng.integers(0, len(palette), len(tshape))]
    ranks = retrieval_ranks(images, texts, ishape, tshape, block_bytes=block_bytes)
    first, ap = dense_reference(images, texts, ishape[:, None] == tshape[None, :])
    np.testing.assert_array_equal(ranks["i2t"].first_rank, first)
    np.testing.assert_allclose(ranks["i2t"].ap, ap)
    first, ap = dense_reference(texts, images, tshape[:, None] == ishape[None, :])
    np.testing.assert_array_equal(ranks["t2i"].first_rank, first)
    np.testing.assert_allclose(ranks["t2i"].ap, ap)


def test_blockwise_equals_dense_reference_continuous():
    rng = np.random.default_rng(1)
    ishape = np.array([f"s{i}" for i in range(30)])
    tshape = rng.choice(ishape, 100)
    images, texts = rng.normal(size=(30, 8)), rng.normal(size=(100, 8))
    ranks = retrieval_ranks(images, texts, ishape, tshape, block_bytes=100)
    pos = ishape[:, None] == tshape[None, :]
    first, ap = dense_reference(images, texts, pos)
    has = pos.any(axis=1)
    np.testing.assert_array_equal(ranks["i2t"].first_rank[has], first[has])
    np.testing.assert_allclose(ranks["i2t"].ap[has], ap[has])
    assert np.isinf(ranks["i2t"].first_rank[~has]).all()


def test_photo_to_shape_and_per_category():
    shapes = np.stack([E[0], E[1], E[2]])
    photos = np.stack([E[0], 0.6 * E[0] + 0.8 * E[1], 0.8 * E[0] + 0.6 * E[2]])
    m = photo_to_shape(photos, shapes, ["a", "b", "c"], ["a", "b", "c"], ks=(1, 2))
    # photo a -> rank 1; photo b -> b (.8) first; photo c -> a (.8) before c (.6): rank 2
    assert m == pytest.approx({"photo2shape_R@1": 2 / 3, "photo2shape_R@2": 1.0,
                               "photo2shape_mAP": (1 + 1 + .5) / 3, "photo2shape_medR": 1.0})
    ranks = retrieval_ranks(*hand_fixture())
    cats = per_category(ranks, {"A": "chair", "B": "table"}, ks=(1,))
    assert cats["chair"]["i2t_R@1"] == 0.0 and cats["table"]["i2t_R@1"] == 1.0
    assert cats["chair"]["t2i_R@1"] == 0.5


def test_bad_inputs_name_the_problem():
    with pytest.raises(RetrievalInputError, match="2 embeddings but"):
        evaluate_retrieval(np.ones((2, 3)), np.ones((2, 3)), ["a"], ["a", "b"])
    with pytest.raises(RetrievalInputError, match="image dim 3 != text dim 4"):
        evaluate_retrieval(np.ones((2, 3)), np.ones((2, 4)), ["a", "b"], ["a", "b"])
    with pytest.raises(RetrievalInputError, match="2-D"):
        evaluate_retrieval(np.ones(3), np.ones((2, 3)), ["a"], ["a", "b"])
