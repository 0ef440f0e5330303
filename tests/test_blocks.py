"""The run record's figures from per-query scores (harness.metrics.blocks): no model needed."""
import numpy as np
import pytest

from harness.metrics import (
    Block,
    bootstrap_ci,
    caption_block,
    per_shape_record,
    photo_ranks,
    retrieval_block,
    retrieval_ranks,
    text_to_shape,
    text_to_shape_block,
)


@pytest.fixture
def ranks():
    rng = np.random.default_rng(0)
    keys = [f"s{i}" for i in range(12)]
    shape_emb = rng.normal(size=(12, 16))
    text_shape = [k for k in keys for _ in range(3)]
    text_emb = shape_emb[[keys.index(k) for k in text_shape]] + rng.normal(size=(36, 16))
    return keys, retrieval_ranks(shape_emb, text_emb, keys, text_shape)


def test_retrieval_block_metrics_cis_per_shape(ranks):
    keys, r = ranks
    category_of = {k: "chair" if i % 2 else "table" for i, k in enumerate(keys)}
    block = retrieval_block(r, (1, 5), 200, 0, category_of)
    t2i = r["t2i"]
    hits = (t2i.first_rank <= 5).astype(float)
    assert block.metrics["t2i_R@5"] == pytest.approx(hits.mean())
    assert block.ci95["t2i_R@5"] == bootstrap_ci(hits, t2i.keys.astype(str), resamples=200, seed=0)
    assert block.ci95["t2i_medR"][0] <= block.metrics["t2i_medR"] <= block.ci95["t2i_medR"][1]
    # every shape has 3 text queries: the mean of per-shape means is the metric
    assert np.mean(list(block.per_shape["t2i_R@5"].values())) == pytest.approx(block.metrics["t2i_R@5"])
    assert block.per_shape["_n"]["t2i"] == {k: 3 for k in keys}
    assert set(block.per_category) == {"chair", "table"} and "i2t_mAP" in block.per_category["chair"]
    assert retrieval_block(r, (1,), 0, 0, category_of).ci95 == {}


def test_blocks_merge_and_per_shape_record(ranks):
    keys, r = ranks
    category_of = dict.fromkeys(keys, "chair")
    block = retrieval_block(r, (1,), 0, 0, category_of)
    rng = np.random.default_rng(1)
    photo = retrieval_block({"photo2shape": photo_ranks(rng.normal(size=(4, 16)), rng.normal(size=(12, 16)),
                                                        keys[:4], keys)}, (1,), 0, 0, category_of)
    cap = caption_block({"CIDEr": 0.5}, {"CIDEr": {"s0": 0.25, "s1": 0.75}}, "gen", 100, 0, category_of)
    merged = block.merge(photo).merge(cap)
    assert merged is block and {"i2t_R@1", "photo2shape_R@1", "cap_gen_CIDEr"} <= set(block.metrics)
    assert set(block.per_category["chair"]) >= {"t2i_R@1", "photo2shape_R@1", "cap_gen_CIDEr"}
    assert block.per_category["chair"]["cap_gen_CIDEr"] == 0.5  # mean of sentence scores
    assert set(block.per_shape["_n"]) == {"i2t", "t2i", "photo2shape"}
    record = per_shape_record(block.per_shape)
    assert record["shapes"] == sorted(keys)
    gen = record["cap_gen_CIDEr"]
    assert gen[:2] == [0.25, 0.75] and gen[2:] == [None] * (len(gen) - 2)  # None: no score
    assert record["n_queries"]["photo2shape_R@1"] == [1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]
    assert "cap_gen_CIDEr" not in record["n_queries"]
    # a query set whose name extends another's is counted by its own queries
    nested = per_shape_record({"zs_top1": {"s0": 1.0}, "zs_photo_top1": {"s0": 0.5},
                               "_n": {"zs": {"s0": 1}, "zs_photo": {"s0": 4}}})
    assert nested["n_queries"] == {"zs_top1": [1], "zs_photo_top1": [4]}
    assert Block().merge(Block()) == Block()


def test_text_to_shape_block_figures_cis_per_shape():
    rng = np.random.default_rng(2)
    keys = [f"s{i}" for i in range(10)]
    shapes = rng.normal(size=(10, 8))
    text_shape = [k for k in keys for _ in range(3)]
    texts = shapes.repeat(3, axis=0) + rng.normal(scale=1.5, size=(30, 8))
    category_of = {k: "chair" if i < 5 else "table" for i, k in enumerate(keys)}
    block = text_to_shape_block(texts, shapes, text_shape, keys, 200, 0, category_of)
    assert block.metrics == {f"t2s_{k}": v for k, v in text_to_shape(texts, shapes, text_shape, keys).items()}
    for name in ("t2s_RR@1", "t2s_RR@5", "t2s_NDCG@5"):
        lo, hi = block.ci95[name]
        assert lo <= block.metrics[name] <= hi
        # three texts a shape: the mean of per-shape means is the metric
        assert np.mean(list(block.per_shape[name].values())) == pytest.approx(block.metrics[name])
    assert block.per_shape["_n"] == {"t2s": dict.fromkeys(keys, 3)}
    assert set(block.per_category) == {"chair", "table"}
    assert per_shape_record(block.per_shape)["n_queries"]["t2s_NDCG@5"] == [3] * 10
