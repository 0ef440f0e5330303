"""The view-count sweep, rotation robustness and per-query logs of the evaluation (Protocols issue)."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("moderngl")
from eval_fixtures import FakeRun, make_setup  # noqa: E402

import models  # noqa: E402  (torch, open_clip, triton must load before an EGL context exists here)
from models.errors import ConfigError  # noqa: E402

SWEEP_KEYS = ("i2t_R@1", "t2i_R@5", "t2s_RR@1", "t2s_NDCG@5", "photo2shape_R@1", "zs_top1", "zs_photo_top1")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One evaluation with eval.views=[1, 2, 8] (ring8), both rotations and the per-query log."""
    from harness.commands.evaluate import evaluate_stage

    cfg, prepared, renders = make_setup(tmp_path_factory.mktemp("sweepdata"))
    cfg = copy.deepcopy(cfg)
    cfg["eval"].update(captioning=False, views=[8, 1, 2], rotation=["z", "so3"], log_samples=True)
    run = FakeRun()
    return cfg, prepared, renders, evaluate_stage(cfg, prepared, renders, run=run), run


def _items(prepared, render_dir):
    from harness.commands.render import shape_items

    return shape_items(prepared, render_dir, prepared.split.test)


def _figures(cfg, prepared, items, shape_emb):
    """Retrieval figures recomputed from scratch for ``shape_emb`` (rows = ``items``)."""
    from harness.metrics import evaluate_retrieval, text_to_shape

    bundle = models.create_model("clip3d-tiny", None, device="cpu", seed=cfg["seed"])
    texts = [c for it in items for c in it.captions]
    text_shape = [it.key for it in items for _ in it.captions]
    text_emb = models.encode_texts(bundle, texts).numpy()
    keys = [it.key for it in items]
    out = evaluate_retrieval(shape_emb, text_emb, keys, text_shape, ks=(1, 5, 10))
    out.update({f"t2s_{k}": v for k, v in text_to_shape(text_emb, shape_emb, text_shape, keys).items()})
    return out


def test_view_sweep_records_plain_figures_per_count(swept):
    cfg, prepared, renders, result, _ = swept
    by_views = result["by_views"]
    assert list(by_views) == ["1", "2", "8"]  # sorted counts, string keys
    for figures in by_views.values():
        assert set(SWEEP_KEYS) <= set(figures) and all(type(v) is float for v in figures.values())
        assert not any(k.startswith(("probe", "cap_")) for k in figures)
    # every view (the rig has 8): the evaluation's own figures
    for key in SWEEP_KEYS:
        assert by_views["8"][key] == pytest.approx(result["metrics"][key])
    # one view: the front view (view_00) of each shape, scored from scratch
    items = _items(prepared, renders.render_dir)
    bundle = models.create_model("clip3d-tiny", None, device="cpu", seed=cfg["seed"])
    front = models.encode_shapes(bundle, [[it.views[0]] for it in items]).numpy()
    want = _figures(cfg, prepared, items, front)
    for key in ("i2t_R@1", "i2t_mAP", "t2i_R@5", "t2s_RR@1", "t2s_NDCG@5"):
        assert by_views["1"][key] == pytest.approx(want[key]), key
    assert result["throughput"]["eval_view_sweep_seconds"] > 0


def test_sweeps_leave_the_main_figures_alone(swept):
    from harness.commands.evaluate import evaluate_stage

    cfg, prepared, renders, result, _ = swept
    plain_cfg = copy.deepcopy(cfg)
    plain_cfg["eval"].update(views=None, rotation=None, log_samples=False)
    plain = evaluate_stage(plain_cfg, prepared, renders)
    assert plain["metrics"] == result["metrics"] and plain["ci95"] == result["ci95"]
    assert "by_views" not in plain and "by_rotation" not in plain and "rotation" not in plain["provenance"]


def test_rotation_renders_turned_shapes_once_and_scores_them(swept, tmp_path):
    from PIL import Image

    from harness.commands.evaluate import evaluate_stage

    cfg, prepared, renders, result, _ = swept
    assert set(result["by_rotation"]) == {"z", "so3"}
    prov = result["provenance"]["rotation"]
    for kind in ("z", "so3"):
        info = prov[kind]
        assert info["seed"] == 0 and info["shapes"] == 3 and info["failed"] == 0
        assert info["render_config_id"] != renders.config_id  # its own cache folder
        rotated_dir = Path(renders.render_dir).parent / info["render_config_id"]
        items = _items(prepared, str(rotated_dir))
        assert [it.key for it in items] == [it.key for it in _items(prepared, renders.render_dir)]
        plain_view = np.asarray(Image.open(_items(prepared, renders.render_dir)[0].views[1]), float)
        turned_view = np.asarray(Image.open(items[0].views[1]), float)
        assert np.abs(plain_view - turned_view).mean() > 1.0  # the shape was turned
        bundle = models.create_model("clip3d-tiny", None, device="cpu", seed=cfg["seed"])
        shape_emb = models.encode_shapes(bundle, [it.views for it in items]).numpy()
        want = _figures(cfg, prepared, items, shape_emb)
        for key in ("i2t_R@1", "i2t_mAP", "t2i_mAP", "t2s_NDCG@5"):
            assert result["by_rotation"][kind][key] == pytest.approx(want[key]), (kind, key)
        assert set(SWEEP_KEYS) <= set(result["by_rotation"][kind])
    # evaluating again renders nothing: the rotated renders are cached like any others
    manifests = {k: (Path(renders.render_dir).parent / prov[k]["render_config_id"] / "manifest.jsonl")
                 .read_text() for k in prov}
    again = copy.deepcopy(cfg)
    again["eval"].update(views=None, log_samples=False)
    second = evaluate_stage(again, prepared, renders)
    assert second["by_rotation"] == result["by_rotation"]
    assert {k: (Path(renders.render_dir).parent / prov[k]["render_config_id"] / "manifest.jsonl")
            .read_text() for k in prov} == manifests


def test_per_query_log_rescores_the_metrics(swept, tmp_path):
    from harness.evaluation.samples import read_samples

    _, _, _, result, run = swept
    path = tmp_path / "samples.jsonl.gz"
    path.write_bytes(run.artifacts["samples.jsonl.gz"])
    lines = read_samples(path)
    m = result["metrics"]
    by_task = {t: [ln for ln in lines if ln["task"] == t] for t in ("i2t", "t2i", "photo2shape")}
    assert len(by_task["i2t"]) == result["provenance"]["counts"]["shapes"]
    assert len(by_task["t2i"]) == result["provenance"]["counts"]["texts"]
    assert len(by_task["photo2shape"]) == result["provenance"]["counts"]["photos"]
    for task, ks in (("i2t", (1, 5)), ("t2i", (1, 5)), ("photo2shape", (1, 5))):
        for k in ks:
            assert np.mean([ln["rank"] <= k for ln in by_task[task]]) == pytest.approx(m[f"{task}_R@{k}"])
    # the zero-shot prediction of each shape and photo query re-scores top-1 (no exact ties here)
    assert np.mean([ln["zs_pred"] == ln["category"] for ln in by_task["i2t"]]) == pytest.approx(m["zs_top1"])
    assert (np.mean([ln["zs_pred"] == ln["category"] for ln in by_task["photo2shape"]])
            == pytest.approx(m["zs_photo_top1"]))
    line = by_task["t2i"][0]
    assert line["query"].endswith("#0") and line["text"] and len(line["top"]) == 3  # 3 test shapes
    scores = [s for _, s in by_task["i2t"][0]["top"]]
    assert len(scores) == 6 and scores == sorted(scores, reverse=True)  # top-10 of 6 captions
    first_positive = next(i for i, (tid, _) in enumerate(by_task["i2t"][0]["top"])
                          if tid.split("#")[0] == by_task["i2t"][0]["query"])
    assert by_task["i2t"][0]["rank"] <= first_positive + 1
    json.dumps(lines)


def test_bad_sweep_settings_fail_before_any_work(swept):
    from harness.commands.evaluate import evaluate_stage
    from harness.config import load_config

    cfg, prepared, renders, _, _ = swept
    for key, value, match in (("views", [0, 2], "eval.views"), ("views", ["4"], "eval.views"),
                              ("rotation", "x", "eval.rotation"), ("rotation", ["z", "yaw"], "eval.rotation"),
                              ("rotation_seed", -1, "eval.rotation_seed")):
        bad = copy.deepcopy(cfg)
        bad["eval"][key] = value
        with pytest.raises(ConfigError, match=match):
            load_config(bad)
    bad = copy.deepcopy(cfg)
    bad["eval"].update(views=[1, 12], rotation=None, log_samples=False)
    with pytest.raises(ConfigError, match=r"eval.views=\[1, 12\]: the renders have 8 views per shape"):
        evaluate_stage(bad, prepared, renders)


def test_spread_views_are_even_and_deterministic():
    from renderers import spread_views

    assert spread_views(12, 4) == [0, 3, 6, 9] and spread_views(12, 1) == [0]
    assert spread_views(12, 2) == [0, 6] and spread_views(8, 3) == [0, 3, 5]
    assert spread_views(12, 12) == list(range(12)) == spread_views(12, 20)
    assert spread_views(0, 4) == []


def test_a_rotation_whose_renders_all_failed_is_left_out_and_counted(swept, monkeypatch, tmp_path):
    from harness.commands import render as render_module
    from harness.commands.evaluate import evaluate_stage

    cfg, prepared, renders, _, _ = swept
    empty = tmp_path / "rotated-none"
    empty.mkdir()
    monkeypatch.setattr(render_module, "rotated_renders", lambda *a: render_module.RenderStage(
        str(empty), "ring8-64x64-broken", {"total": 3, "failed": 3}, None))
    bad = copy.deepcopy(cfg)
    bad["eval"].update(views=None, rotation="z", log_samples=False)
    result = evaluate_stage(bad, prepared, renders)
    assert "by_rotation" not in result
    assert result["provenance"]["rotation"]["z"]["shapes"] == 0
    assert result["provenance"]["rotation"]["z"]["failed"] == 3


def test_sweep_points_are_captioned_only_when_asked(swept):
    """eval.captioning='always': each view count and rotation is captioned by the run's captioners (no
    retraining); the full view count reproduces the evaluation's caption figures. Otherwise the
    provenance says the points were not captioned."""
    from harness.commands.evaluate import evaluate_stage

    cfg, prepared, renders, result, _ = swept
    assert result["provenance"]["sweep_captioning"].startswith("skipped (eval.captioning='always'")
    assert not any(k.startswith("cap_") for k in result["by_views"]["8"])
    always = copy.deepcopy(cfg)
    always["eval"].update(captioning="always", views=[1, 8], rotation="z", log_samples=False)
    captioned = evaluate_stage(always, prepared, renders)
    assert captioned["provenance"]["sweep_captioning"] == "done"
    for name in ("cap_gen_CIDEr", "cap_ret_CIDEr", "cap_gen_METEOR"):
        assert captioned["by_views"]["8"][name] == pytest.approx(captioned["metrics"][name])
        assert name in captioned["by_views"]["1"] and name in captioned["by_rotation"]["z"]
    assert captioned["throughput"]["eval_captioning_sweeps_seconds"] > 0
