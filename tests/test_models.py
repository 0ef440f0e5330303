"""Models library: registry, weight loading errors, loss, poolings, sampling plan, feature cache, config."""
import time

import pytest
import torch
from config_fixtures import default_config

import models
from models.loss import clip_loss, positive_mask

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tiny():
    return models.create_model("clip3d-tiny")


def test_list_models_has_ours_and_open_clip():
    names = models.list_models()
    assert {"clip3d-tiny", "clip3d-small", "ViT-B-32", "RN50"} <= set(names)


def test_tiny_is_about_8m_params_and_seeded(tiny):
    params = models.count_params(tiny.model)
    assert 6_000_000 < params["total"] < 10_000_000
    assert params == {"total": params["total"], "trainable": params["total"]}
    again = models.create_model("clip3d-tiny")
    assert again.weights_sha256 == tiny.weights_sha256 and len(tiny.weights_sha256) == 64
    assert models.create_model("clip3d-tiny", seed=1).weights_sha256 != tiny.weights_sha256
    assert tiny.image_size == 64


@pytest.mark.parametrize("name, pretrained, error, text", [
    ("clip3d-huge", None, models.UnknownModelError, "unknown model.name='clip3d-huge'"),
    ("ViT-B-32", "laion_nope", models.UnknownPretrainedError, "open_clip tags: openai"),
    ("clip3d-tiny", "/nonexistent/w.pt", models.WeightsUnavailableError, "no such weights file"),
])
def test_bad_names_fail_clearly(name, pretrained, error, text):
    with pytest.raises(error, match=text.replace("(", r"\(")):
        models.create_model(name, pretrained)


def test_offline_download_fails_fast_with_local_file_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    start = time.perf_counter()
    with pytest.raises(models.WeightsUnavailableError, match="model.pretrained=/path/to/weights.pt"):
        models.create_model("ViT-B-32", "openai")
    assert time.perf_counter() - start < 5  # the spec says < 1 s; margin for a loaded CI box
    with pytest.raises(models.WeightsUnavailableError, match="hub is unreachable"):  # config check, no build
        models.validate_config(*_sections({"name": "ViT-B-32", "pretrained": "openai"}, {"mode": "none"}))


def test_local_weights_file_roundtrip_and_mismatch(tmp_path, tiny):
    good = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), good)
    loaded = models.create_model("clip3d-tiny", str(good), seed=5)
    assert models.state_sha256(loaded.model) == models.state_sha256(tiny.model)
    assert loaded.weights_sha256 == models.registry.file_sha256(good)
    with pytest.raises(models.WeightsMismatchError,
                       match=r"tiny.pt' is not a checkpoint of model 'clip3d-small'"):
        models.create_model("clip3d-small", str(good))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(models.WeightsMismatchError, match="not a readable weights file"):
        models.create_model("clip3d-tiny", str(junk))


def test_positive_mask_counts_repeated_captions_and_same_shape():
    mask = positive_mask(["a", "b", "c", "a"], ["red chair", "red chair", "blue table", "x"])
    assert mask.tolist() == [[True, True, False, True], [True, True, False, False],
                             [False, False, True, False], [True, False, False, True]]


def test_identical_captions_are_not_negatives():
    # shapes 0 and 1 share a caption: their text embeddings are identical
    img = torch.eye(3)[[0, 1, 2]]
    txt = torch.eye(3)[[0, 0, 2]] + torch.eye(3)[[1, 1, 2]] * torch.tensor([[1.0], [1.0], [0.0]])
    scale = torch.tensor(4.6)
    ours = clip_loss(img, txt, scale, ["s0", "s1", "s2"], ["red chair", "red chair", "blue table"])
    naive = clip_loss(img, txt, scale, ["s0", "s1", "s2"], ["p", "q", "r"])  # as if they were negatives
    assert ours < 1e-3 < naive
    assert naive > 0.4  # the duplicate caption costs about log 2 per affected row under plain InfoNCE


def test_perfect_alignment_has_low_loss_and_random_higher():
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    keys = [str(i) for i in range(8)]
    assert clip_loss(x, x, torch.tensor(4.6), keys, keys) < 0.01
    assert clip_loss(x, torch.randn(8, 16), torch.tensor(4.6), keys, keys) > 1.0


@pytest.mark.parametrize("name", sorted(models.POOLINGS))
def test_poolings_shape_and_values(name):
    views = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])
    pool = models.make_pooling(name, 2)
    out = pool(views)
    assert out.shape == (1, 2)
    expected = {"single": [1.0, 0.0], "max": [1.0, 1.0], "mean": [1.6 / 3, 1.8 / 3],
                "attention": [1.6 / 3, 1.8 / 3]}[name]  # attention starts as mean
    assert torch.allclose(out, torch.tensor([expected]), atol=1e-6)
    assert (name in models.LEARNED_POOLINGS) == any(True for _ in pool.parameters())


def test_epoch_plan_is_a_pure_function_of_seed_and_epoch(tmp_path):
    from models_fixtures import make_items

    items = make_items(tmp_path, n_shapes=10, n_views=4)
    a = models.epoch_plan(items, epoch=3, seed=1, batch_size=4)
    assert a == models.epoch_plan(items, epoch=3, seed=1, batch_size=4)
    assert a != models.epoch_plan(items, epoch=4, seed=1, batch_size=4)
    assert [len(b) for b in a] == [4, 4]  # drop_last
    flat = [t for b in a for t in b]
    assert len({i for i, _, _ in flat}) == 8  # one view per shape per epoch
    assert all(0 <= v < 4 and 0 <= c < 2 for _, v, c in flat)


def test_feature_cache_reused_and_keyed_by_weights_and_render_id(tmp_path, tiny):
    from models_fixtures import make_items

    items = make_items(tmp_path / "img", n_shapes=3, n_views=2)
    views = [it.views for it in items]
    cache = tmp_path / "feat"
    first = models.encode_views(tiny, views, cache_dir=cache, render_config_id="r1")
    assert first.shape == (3, 2, 128)
    assert torch.allclose(first.norm(dim=-1), torch.ones(3, 2), atol=1e-5)
    files = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.pt"))
    assert len(files) == 1 and files[0].endswith("/r1/images.pt") and files[0].startswith("clip3d-tiny-")
    direct = models.encode_images(tiny, [p for v in views for p in v]).view(3, 2, -1)
    assert torch.allclose(first, direct, atol=1e-5)
    with pytest.MonkeyPatch.context() as mp:  # a second call reads the cache, encodes nothing
        mp.setattr(models.features, "_raw_images", lambda *a: pytest.fail("re-encoded cached views"))
        assert torch.equal(models.encode_views(tiny, views, cache_dir=cache, render_config_id="r1"), first)
    models.encode_views(tiny, views, cache_dir=cache, render_config_id="r2")
    assert len(list(cache.rglob("images.pt"))) == 2
    texts = models.encode_texts(tiny, ["a red square", "a blue disc"], cache_dir=cache)
    assert texts.shape == (2, 128)
    shapes = models.encode_shapes(tiny, views)
    assert shapes.shape == (3, 128)


def test_feature_cache_file_read_once_per_process_and_former_format_read(tmp_path, tiny, monkeypatch):
    """One cache file is loaded once while this process's view of it is current; a write by someone
    else (a new stamp) is read again; a file in the former {key: tensor} format still serves."""
    import os

    from models_fixtures import make_items

    from models import features as feat

    views = [it.views for it in make_items(tmp_path / "img", n_shapes=3, n_views=2)]
    cache = tmp_path / "feat"
    first = models.encode_views(tiny, views, cache_dir=cache, render_config_id="r", raw=True)
    path = next(cache.rglob("images.pt"))
    blob = torch.load(path, weights_only=True)
    assert blob["format"] == 2 and len(blob["keys"]) == 6 and blob["features"].shape == (6, first.shape[-1])
    loads = []
    real_load = torch.load
    monkeypatch.setattr(feat.torch, "load", lambda *a, **k: loads.append(a[0]) or real_load(*a, **k))
    for _ in range(3):  # the same file, unchanged: read from memory
        assert torch.equal(models.encode_views(tiny, views, cache_dir=cache, render_config_id="r", raw=True),
                           first)
    assert loads == []
    # another process rewrites it in the former format, one entry changed: read again, and it serves
    keys = blob["keys"]
    old = {k: blob["features"][i].clone() for i, k in enumerate(keys)}
    old[keys[0]] = old[keys[0]] + 1.0
    torch.save(old, path)
    os.utime(path, ns=(1, 1))  # (a stamp this process never saw)
    again = models.encode_views(tiny, views, cache_dir=cache, render_config_id="r", raw=True)
    assert loads == [path]
    assert torch.equal(again.flatten(0, 1)[0], first.flatten(0, 1)[0] + 1.0)
    assert torch.equal(again.flatten(0, 1)[1:], first.flatten(0, 1)[1:])
    # an addition rewrites the file in the current format, keeping what was there
    more = [it.views for it in make_items(tmp_path / "img2", n_shapes=1, n_views=2)]
    models.encode_views(tiny, more, cache_dir=cache, render_config_id="r", raw=True)
    blob = real_load(path, weights_only=True)
    assert blob["format"] == 2 and len(blob["keys"]) == 8 and blob["keys"][:6] == keys
    assert torch.equal(blob["features"][0], old[keys[0]])


@pytest.mark.parametrize("model_cfg, train_cfg, n, text", [
    ({"pooling": "mean"}, {"mode": "fancy"}, None, "unknown train.mode='fancy'; choose one of none, linear"),
    ({"pooling": "median"}, {"mode": "full"}, None, "unknown model.pooling='median'; choose one of single"),
    ({"pooling": "attention"}, {"mode": "none"}, None, "needs a trainable train.mode"),
    ({}, {"mode": "full", "lr": 0}, None, r"train.lr=0 must be > 0"),
    ({}, {"mode": "full", "lr": -1e-3}, None, r"train.lr=-0.001 must be > 0"),
    ({}, {"mode": "full", "batch_size": 64}, 50, "larger than the train split \\(50 shapes\\)"),
    ({"name": "nope-net"}, {"mode": "full"}, None, "unknown model.name='nope-net'"),
    ({"name": "ViT-B-32", "pretrained": "bogus"}, {"mode": "full"}, None, "unknown model.pretrained='bogus'"),
])
def test_validate_config_errors(model_cfg, train_cfg, n, text):
    model, train = _sections(model_cfg, train_cfg)
    with pytest.raises(models.ConfigError if "model.name" not in text and "pretrained" not in text
                       else models.ModelsError, match=text):
        models.validate_config(model, train, n_train_shapes=n)


def _sections(model_cfg: dict, train_cfg: dict):
    """ModelConfig and TrainConfig: harness.experiment's defaults with these values."""
    cfg = default_config(model=model_cfg, train=train_cfg)
    return models.model_config(cfg["model"]), models.train_config(cfg["train"])


def test_validate_config_accepts_defaults():
    models.validate_config(*_sections({"name": "clip3d-tiny", "pooling": "attention", "device": "auto"},
                                      {"mode": "lora", "lr": 5e-4, "batch_size": 32}), n_train_shapes=70)


def test_sections_need_every_key_and_no_other():
    """A partial section names the missing key and where configs come from; a typo names the keys."""
    with pytest.raises(models.ConfigError, match=r"missing config key train\.lr; configs come from "
                                                 r"harness\.experiment's defaults"):
        models.train_config({k: v for k, v in default_config()["train"].items() if k != "lr"})
    with pytest.raises(models.ConfigError, match=r"^unknown config key train\.epohcs; train has: mode, "
                                                 r"epochs, batch_size, .*, features_dir$"):
        models.train_config({**default_config()["train"], "epohcs": 3})


def test_linear_probe_picks_c_on_val():
    torch.manual_seed(0)
    centers = torch.randn(3, 8) * 3
    def sample(n):
        y = [i % 3 for i in range(n)]
        return (centers[y] + torch.randn(n, 8)).numpy(), [f"c{i}" for i in y]
    out = models.linear_probe(*sample(60), *sample(30), *sample(30))
    assert out["probe_top1"] > 0.9 and out["probe_C"] in models.probe.DEFAULT_CS
