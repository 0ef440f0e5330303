"""Zero-shot classification in the evaluation: template sets, the prompt ensemble, the record's block."""
from types import SimpleNamespace

import numpy as np
import pytest

from harness.evaluation import EvalContext
from harness.evaluation import zero_shot as zs
from harness.metrics import zero_shot_accuracy
from models.errors import ConfigError


def test_template_sets_and_custom_lists():
    name, templates = zs.templates_of("render")
    assert name == "render" and "a 3D render of a {}." in templates and len(templates) > 1
    assert zs.templates_of("photo") == ("photo", ("a photo of a {}.",))
    assert zs.templates_of(["a sketch of a {}.", "{}"]) == ("custom", ("a sketch of a {}.", "{}"))
    with pytest.raises(ConfigError, match=r"unknown eval.zs_templates='bogus'; choose one of render"):
        zs.templates_of("bogus")
    for bad in ([], ["no placeholder"], ["{} and {}"], [3]):
        with pytest.raises(ConfigError, match="eval.zs_templates"):
            zs.templates_of(bad)


def test_class_embeddings_are_the_normalised_mean_over_templates(monkeypatch):
    import torch

    import models

    rng = np.random.default_rng(0)
    table = {}

    def fake_encode_texts(bundle, prompts):
        rows = []
        for p in prompts:
            v = table.setdefault(p, rng.normal(size=8))
            rows.append(v / np.linalg.norm(v))
        return torch.tensor(np.array(rows), dtype=torch.float32)

    monkeypatch.setattr(models, "encode_texts", fake_encode_texts)
    templates = ("a {}.", "a render of a {}.")
    got = zs.class_embeddings(None, ["chair", "coffee_table"], templates)
    for i, cls in enumerate(["chair", "coffee table"]):  # underscores read as spaces
        mean = np.mean([table[t.format(cls)] / np.linalg.norm(table[t.format(cls)]) for t in templates], 0)
        np.testing.assert_allclose(got[i], mean / np.linalg.norm(mean), rtol=1e-5)


def test_zero_shot_block_figures_cis_per_category_per_shape():
    rng = np.random.default_rng(1)
    classes = ["bed", "chair", "table"]
    class_emb = np.eye(3, 6)
    keys = [f"s{i}" for i in range(12)]
    category_of = {k: classes[i % 3] for i, k in enumerate(keys)}
    query_shapes = keys + keys[:6]  # some shapes have two queries (e.g. photos)
    query = np.array([class_emb[classes.index(category_of[k])] for k in query_shapes])
    query = query + rng.normal(scale=0.8, size=query.shape)
    ctx = EvalContext(bundle=None, prepared=None, render_dir="", render_config_id=None, features_dir=None,
                      items=[SimpleNamespace(key=k) for k in keys], category_of=category_of, ks=(1, 5),
                      resamples=200, seed=0)
    block = zs.zero_shot_block(ctx, class_emb, classes, query, query_shapes, "zs_photo")
    labels = [classes.index(category_of[k]) for k in query_shapes]
    want = zero_shot_accuracy(query, class_emb, labels, ks=(1, 3, 5))
    assert block.metrics == {f"zs_photo_{k}": v for k, v in want.items()}
    lo, hi = block.ci95["zs_photo_top1"]
    assert lo <= block.metrics["zs_photo_top1"] <= hi and block.ci95["zs_photo_top3"] == [1.0, 1.0]
    assert set(block.per_category) == set(classes)
    assert block.per_shape["_n"]["zs_photo"]["s0"] == 2 and block.per_shape["_n"]["zs_photo"]["s11"] == 1
    assert set(block.per_shape["zs_photo_top1"]) == set(keys)


def test_a_bad_template_setting_fails_in_the_config_check():
    from config_fixtures import default_config

    from harness.config import resolve

    cfg = default_config(model={"name": "clip3d-tiny"}, eval={"zs_templates": "bogus"})
    with pytest.raises(ConfigError, match="eval.zs_templates"):
        resolve(cfg)
