"""evaluate_stage end to end on a tiny hand-built dataset: rendered meshes, photos, clip3d-tiny untrained."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("moderngl")
from eval_fixtures import CATS, FakeRun, make_setup  # noqa: E402

import models  # noqa: E402,F401  (torch, open_clip, triton must load before an EGL context exists here)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("evaldata"))


def test_evaluate_stage_records_everything(setup):
    from harness.commands.evaluate import evaluate_stage
    from harness.metrics import METRIC_DIRECTIONS

    cfg, prepared, renders = setup
    run = FakeRun()
    result = evaluate_stage(cfg, prepared, renders, run=run)
    assert set(result) == {"metrics", "ci95", "per_category", "throughput", "provenance"}
    m = result["metrics"]
    for name in ["i2t_R@1", "i2t_R@5", "i2t_R@10", "i2t_mAP", "i2t_medR", "t2i_R@1", "t2i_medR",
                 "photo2shape_R@1", "photo2shape_medR", "cap_ret_BLEU-4", "cap_ret_METEOR", "cap_ret_CIDEr",
                 "cap_gen_BLEU-1", "cap_gen_ROUGE_L", "zs_top1", "zs_top3", "zs_top5", "zs_mean_per_class",
                 "zs_photo_top1", "zs_photo_mean_per_class", "t2s_RR@1", "t2s_RR@5", "t2s_NDCG@5",
                 "probe_top1"]:
        assert name in m and isinstance(m[name], float), name
        assert name in METRIC_DIRECTIONS
    assert m["i2t_R@10"] == 1.0  # 3 test shapes x 2 captions: everything is in the top 10
    assert 1.0 <= m["i2t_medR"] <= 6
    lo, hi = result["ci95"]["i2t_mAP"]
    assert lo <= m["i2t_mAP"] <= hi
    assert set(result["per_category"]) == set(CATS)
    assert "i2t_R@1" in result["per_category"]["chair"]
    assert "photo2shape_R@1" in result["per_category"]["lamp"]
    prov = result["provenance"]
    assert prov["dataset_fingerprint"] == "fp-test" and prov["split"] == "split-test"
    assert prov["render_config_id"] == renders.config_id and prov["model"] == "clip3d-tiny"
    assert len(prov["weights_sha256"]) == 64 and prov["seed"] == 0
    assert prov["metric_impl"]["meteor"].startswith("METEOR 1.5") and prov["packages"]["numpy"]
    assert prov["counts"] == {"shapes": 3, "texts": 6, "views": 24, "photos": 3, "described_shapes": 3}
    assert prov["renders_fingerprint"] == renders.fingerprint and len(renders.fingerprint) == 16
    assert prov["render_size"] == 64 and prov["model_input_size"] == 64
    # zero-shot over the 3 categories: top-3 holds every query; the prompt ensemble is recorded
    assert m["zs_top3"] == 1.0 and m["zs_photo_top3"] == 1.0 and 0 <= m["zs_top1"] <= 1
    assert prov["zs_templates"]["name"] == "render" and prov["zs_templates"]["classes"] == sorted(CATS)
    assert "a 3D render of a {}." in prov["zs_templates"]["templates"]
    assert "zs_top1" in result["ci95"] and "zs_photo_top1" in result["per_category"]["chair"]
    # the linear probe for every mode (here: none), C chosen on val, CI over the test shapes
    assert 0 <= m["probe_top1"] <= 1 and "probe_top1" in result["ci95"] and prov["probe"]["C"] > 0
    assert "probe_top1" in result["per_category"]["lamp"] and result["throughput"]["eval_probe_seconds"] > 0
    # Text2Shape: 3 test shapes, so every text's shape is in the top 5
    assert m["t2s_RR@5"] == 1.0 and m["t2s_RR@1"] <= m["t2s_NDCG@5"] <= 1 and "t2s_RR@1" in result["ci95"]
    assert result["throughput"]["device"] == "cpu" and result["throughput"]["eval_seconds"] > 0
    # Plain types only, Mongo-safe keys.
    json.dumps(result, allow_nan=True)
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@-")
    assert all(set(k) <= allowed for k in [*result["metrics"], *result["ci95"], *result["throughput"]])
    # Per-shape scores for the leaderboard's paired bootstrap.
    ps = run.info["per_shape"]
    assert ps["shapes"] == sorted(prepared.split.test)
    assert len(ps["i2t_R@1"]) == 3 and ps["n_queries"]["t2i_R@1"] == [2, 2, 2]
    assert ps["n_queries"]["zs_top1"] == [1, 1, 1] and ps["n_queries"]["zs_photo_top1"] == [1, 1, 1]
    assert np.mean(ps["i2t_R@1"]) == pytest.approx(m["i2t_R@1"])
    assert {"retrieval_examples.png", "caption_samples.csv", "caption_samples.md"} <= set(run.artifacts)
    assert any(name == "eval.retrieval_seconds" for name, _, _ in run.scalars)


def test_throughput_of_cached_work_is_marked_never_zero(setup):
    """Renders and image features all from the caches: no speed figure is made up for them."""
    from harness.commands.evaluate import evaluate_stage
    from harness.commands.render import render_stage

    cfg, prepared, renders = setup
    cfg = copy.deepcopy(cfg)
    cfg["eval"].update(photo2shape=False, captioning=False, bootstrap=0)
    assert renders.summary["views"] > 0 and renders.summary["views_per_s"] > 0  # the first render
    evaluate_stage(cfg, prepared, renders)  # fills the feature cache (if not yet)
    cached = render_stage(cfg, prepared=prepared)
    assert cached.summary["skipped"] == cached.summary["total"] and "views_per_s" not in cached.summary
    assert cached.fingerprint == renders.fingerprint
    tp = evaluate_stage(cfg, prepared, cached)["throughput"]
    assert tp["render_from_cache"] is True and "render_views_per_s" not in tp
    assert tp["encode_from_cache"] is True and "encode_images_per_s" not in tp
    assert all(v != 0 for v in tp.values() if isinstance(v, float))


def test_retrieval_captioner_bank_excludes_test_captions(setup, monkeypatch):
    """Test captions are unique strings here; a leak would let the retrieval captioner copy them."""
    from harness.commands import evaluate as ev

    cfg, prepared, renders = setup
    cfg = copy.deepcopy(cfg)
    cfg["eval"].update(photo2shape=False, bootstrap=0)
    import harness.metrics.captioning as cap

    seen = {}
    real = cap.caption_scores_many

    def spy(prediction_sets, references):
        seen.update({k: dict(v) for k, v in prediction_sets.items()})
        return real(prediction_sets, references)

    monkeypatch.setattr(cap, "caption_scores_many", spy)
    result = ev.evaluate_stage(cfg, prepared, renders)
    test_caps = {c for k in prepared.split.test for c in prepared.captions[k] if "number 3" in c}
    assert not set(seen["ret"].values()) & test_caps
    assert result["ci95"] == {} and "photo2shape_R@1" not in result["metrics"]


def test_missing_java_fails_before_work(setup, monkeypatch, tmp_path):
    from harness.commands.evaluate import evaluate_stage
    from harness.metrics import JavaNotFoundError

    cfg, prepared, renders = setup
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaNotFoundError, match="default-jre-headless"):
        evaluate_stage(cfg, prepared, renders)


def test_evaluate_is_a_sacred_command():
    from harness.commands import evaluate as ev  # noqa: F401
    from harness.experiment import ex

    assert "evaluate" in ex.commands


def test_cli_evaluate_on_tiny_preset(tmp_path):
    """``python -m harness evaluate with tiny`` through Sacred, recorded in the test store."""
    import harness.commands  # noqa: F401
    from harness.experiment import ex

    run = ex.run("evaluate", named_configs=["tiny"], config_updates={
        "store": {"spool": str(tmp_path / "spool")},
        "data": {"root": str(tmp_path / "data")}, "model": {"name": "clip3d-tiny", "device": "cpu"},
        "render": {"out": str(tmp_path / "renders"), "workers": 1},
        "train": {"mode": "none", "features_dir": str(tmp_path / "features")},
        "eval": {"bootstrap": 20, "captioning": False}},  # captioning: covered by the stage test above
        options={"--loglevel": "ERROR"})
    result = run.result
    assert {"metrics", "ci95", "per_category", "throughput", "provenance"} == set(result)
    assert result["provenance"]["dataset_fingerprint"] and result["provenance"]["split"]
    assert "i2t_R@1" in result["metrics"] and "photo2shape_R@1" in result["metrics"]
    assert run.info["per_shape"]["shapes"]
    assert isinstance(run._id, int)  # pushed to the store, not only spooled


def test_reevaluation_skips_captioning_and_says_so(setup, monkeypatch):
    """A re-evaluation inside a run (a later view-count or rotation sweep) captions only when asked."""
    from harness.commands import evaluate as ev
    from harness.metrics import captioning

    cfg, prepared, renders = setup
    cfg = copy.deepcopy(cfg)
    cfg["eval"].update(photo2shape=False, bootstrap=0)
    calls = []
    real = captioning.caption_scores_many
    monkeypatch.setattr(captioning, "caption_scores_many", lambda *a: calls.append(1) or real(*a))

    result = ev.evaluate_stage(cfg, prepared, renders, reevaluation=True)
    assert not calls and not any(k.startswith("cap_") for k in result["metrics"])
    assert result["provenance"]["captioning"].startswith("skipped: a re-evaluation")
    assert "eval.captioning='always'" in result["provenance"]["captioning"]
    assert "i2t_R@1" in result["metrics"]

    cfg["eval"]["captioning"] = "always"
    result = ev.evaluate_stage(cfg, prepared, renders, reevaluation=True)
    assert calls and "cap_gen_CIDEr" in result["metrics"] and result["provenance"]["captioning"] == "done"

    cfg["eval"]["captioning"] = False
    result = ev.evaluate_stage(cfg, prepared, renders)
    assert result["provenance"]["captioning"] == "off (eval.captioning=false)"
    cfg["eval"]["captioning"] = "sometimes"
    with pytest.raises(models.ConfigError, match="eval.captioning"):
        ev.evaluate_stage(cfg, prepared, renders)


def test_same_model_evaluated_again_never_retrains_its_captioner(setup, monkeypatch, tmp_path):
    """The captioner cache under the features dir: a hit on the same model, a miss on other weights."""
    import torch

    import models.captioner_training as cap
    from harness.commands import evaluate as ev
    from harness.commands.train import TrainStage

    cfg, prepared, renders = setup
    cfg = copy.deepcopy(cfg)
    cfg["eval"].update(photo2shape=False, bootstrap=0)
    cfg["train"]["features_dir"] = str(tmp_path / "features")
    trained = []
    real = cap.train_captioner
    monkeypatch.setattr(cap, "train_captioner", lambda *a, **k: trained.append(1) or real(*a, **k))

    first = ev.evaluate_stage(cfg, prepared, renders)
    assert len(trained) == 1 and "captioner_from_cache" not in first["throughput"]
    assert first["throughput"]["eval_captioning_train_seconds"] > 0
    assert first["provenance"]["captioner"]["from_cache"] is False
    assert len(list((tmp_path / "features" / "captioners").glob("*.pt"))) == 1

    again = ev.evaluate_stage(cfg, prepared, renders)
    assert len(trained) == 1, "the same model's captioner was trained again"
    assert again["throughput"]["captioner_from_cache"] is True
    assert "eval_captioning_train_seconds" not in again["throughput"]
    gen = {k: v for k, v in first["metrics"].items() if k.startswith("cap_")}
    assert gen == {k: v for k, v in again["metrics"].items() if k.startswith("cap_")}
    assert first["provenance"]["captioner"]["length_penalty"] == 1.0

    # another length penalty decodes the same captioner differently: no retraining, recorded
    from models.captioner import PrefixCaptioner

    decoded = []
    real_generate = PrefixCaptioner.generate
    monkeypatch.setattr(PrefixCaptioner, "generate",
                        lambda self, emb, **k: decoded.append(k) or real_generate(self, emb, **k))
    summed = ev.evaluate_stage({**cfg, "eval": {**cfg["eval"], "captioner": {
        **cfg["eval"]["captioner"], "length_penalty": 0.0}}}, prepared, renders)
    assert len(trained) == 1 and summed["throughput"]["captioner_from_cache"] is True
    assert summed["provenance"]["captioner"]["length_penalty"] == 0.0
    assert decoded == [{"beam_size": cfg["eval"]["captioner"]["beam_size"], "length_penalty": 0.0}]
    monkeypatch.setattr(PrefixCaptioner, "generate", real_generate)

    # other weights: other train embeddings, another key — trained again (not keyed by the path)
    bundle = models.create_model("clip3d-tiny", None, device="cpu", seed=1)
    with torch.no_grad():
        bundle.model.visual.proj.mul_(1.5)
    other = ev.evaluate_stage(cfg, prepared, renders,
                              trained=TrainStage(bundle=bundle, checkpoint=None, history=[], throughput={}))
    assert len(trained) == 2 and "captioner_from_cache" not in other["throughput"]
    assert len(list((tmp_path / "features" / "captioners").glob("*.pt"))) == 2


def test_photo_queries_batched_equal_the_per_photo_path_and_their_throughput(setup, tmp_path):
    """Crops made in batches (threads, no re-decode) give the crops and embeddings of the per-photo
    path (crop, save, encode the files); the run says how fast photo→shape went and its share."""
    import torch
    from PIL import Image

    from harness.commands import evaluate as ev
    from harness.data.photos import crop_photo, photo_jobs
    from harness.evaluation import encode_photos

    cfg, prepared, renders = setup
    bundle = models.create_model("clip3d-tiny", None, device="cpu", seed=0)
    keys = set(prepared.split.test)
    # the per-photo path: every crop made, saved and encoded from its file, one photo at a time
    (tmp_path / "ref").mkdir()
    paths, shapes = [], []
    for job in photo_jobs(prepared, keys, tmp_path / "ref", 64, True):
        crop_photo(job.img, job.bbox, job.mask, 64, True).save(job.crop)
        paths.append(str(job.crop))
        shapes.append(job.shape)
    with torch.no_grad():
        want = models.encode_images(bundle, paths).numpy()
    jobs = photo_jobs(prepared, keys, tmp_path / "crops", 64, True)
    stats = {}
    got = encode_photos(bundle, jobs, tmp_path / "features", True, stats)
    assert [j.shape for j in jobs] == shapes and [j.crop.name for j in jobs] == [Path(p).name for p in paths]
    assert np.array_equal(got, want)
    for job, path in zip(jobs, paths, strict=True):  # the same pixels in the kept crop files
        assert np.array_equal(np.asarray(Image.open(job.crop)), np.asarray(Image.open(path)))
    assert stats == {"cropped": 3, "crops_cached": 0, "encoded": 3, "encode_cached": 0}
    stats = {}
    assert np.array_equal(encode_photos(bundle, jobs, tmp_path / "features", True, stats), want)
    assert stats == {"cropped": 0, "crops_cached": 0, "encoded": 0, "encode_cached": 3}

    cfg = copy.deepcopy(cfg)
    cfg["eval"].update(captioning=False, bootstrap=0)
    cfg["train"]["features_dir"] = str(tmp_path / "features2")
    tp = ev.evaluate_stage(cfg, prepared, renders)["throughput"]
    assert tp["photo2shape_photos_per_s"] > 0 and 0 < tp["eval_photo2shape_share"] < 1
    tp = ev.evaluate_stage(cfg, prepared, renders)["throughput"]
    assert tp["photo_encode_from_cache"] is True and "photo_crops_from_cache" not in tp  # not needed
    assert "photo2shape_photos_per_s" not in tp


def test_train_and_val_views_encoded_once_before_the_tasks(setup, tmp_path, monkeypatch):
    """With a fresh feature cache every render an evaluation needs is encoded exactly once: the test
    views, then the train and val views in their own step (for the probe and the captioner, which
    read them from the cache), the caption bank's texts aside."""
    from harness.commands import evaluate as ev
    from harness.commands.render import shape_items
    from models import features

    cfg, prepared, renders = setup
    cfg = copy.deepcopy(cfg)
    cfg["eval"].update(photo2shape=False, bootstrap=0)
    cfg["train"]["features_dir"] = str(tmp_path / "features")
    calls = []
    real = features._raw_images
    monkeypatch.setattr(features, "_raw_images",
                        lambda b, paths, *a: calls.append(list(paths)) or real(b, paths, *a))
    result = ev.evaluate_stage(cfg, prepared, renders)

    def views(split):
        return [str(Path(p).resolve()) for it in shape_items(prepared, renders.render_dir,
                                                                getattr(prepared.split, split))
                for p in it.views]

    assert len(calls) == 2, "views encoded in more than the two encoding steps"
    assert sorted(calls[0]) == sorted(views("test"))
    assert sorted(calls[1]) == sorted(views("train") + views("val"))
    tp = result["throughput"]
    assert tp["eval_encode_train_views_seconds"] > 0 and tp["eval_captioning_encode_seconds"] > 0
    assert result["metrics"]["probe_top1"] >= 0 and "cap_gen_CIDEr" in result["metrics"]
