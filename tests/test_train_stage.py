"""The harness ``train`` stage: items from the render manifest, curves via log_scalar, info.params,
and bad input failing before any rendering (the linear probe is an evaluation: test_evaluate)."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from config_fixtures import default_config

import models
from harness.commands import train as train_cmd

torch.set_num_threads(2)


class FakeRun:
    def __init__(self):
        self.scalars, self.info = [], {}

    def log_scalar(self, name, value, step=None):
        self.scalars.append((name, value, step))


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    from models_fixtures import make_items

    root = tmp_path_factory.mktemp("stage")
    render_dir = root / "renders" / "cfg123"
    items = make_items(render_dir, n_shapes=24, n_views=2)
    with open(render_dir / "manifest.jsonl", "w") as fh:
        for it in items:
            views = [str(Path(v).relative_to(render_dir)) for v in it.views]
            fh.write(json.dumps({"key": it.key, "status": "ok", "views": views,
                                 "content_hash": f"mesh-{it.key}"}) + "\n")
        fh.write(json.dumps({"key": "model/x/broken/model.obj", "status": "failed", "views": [],
                             "content_hash": "mesh-broken"}) + "\n")
    keys = [it.key for it in items]
    shapes = [SimpleNamespace(key=it.key, category=it.category, content_hash=f"mesh-{it.key}")
              for it in items]
    shapes.append(SimpleNamespace(key="model/x/broken/model.obj", category="x", content_hash="mesh-broken"))
    prepared = SimpleNamespace(
        root=root, dataset=SimpleNamespace(shapes=shapes),
        split=SimpleNamespace(train=keys[:14] + ["model/x/broken/model.obj"], val=keys[14:19], test=keys[19:],
                              split_id="s1"),
        captions={it.key: list(it.captions) for it in items} | {"model/x/broken/model.obj": ["a thing"]})
    renders = SimpleNamespace(render_dir=str(render_dir), config_id="cfg123", summary=None)
    return prepared, renders, root


def _cfg(root, **train):
    return default_config(
        model={"name": "clip3d-tiny", "pretrained": None, "pooling": "mean", "device": "cpu"},
        train={"mode": "linear", "epochs": 2, "batch_size": 7, "lr": 1e-3, "backbone_lr_scale": 1.0,
               "weight_decay": 0.0, "warmup_steps": 1, "grad_clip": 1.0, "lora_rank": 4, "partial_blocks": 1,
               "patience": None, "out": str(root / "ck"), "resume": True, "tensorboard": False,
               "features_dir": str(root / "feat"), **train})


def test_linear_stage_logs_curves_and_params(staged):
    prepared, renders, root = staged
    run = FakeRun()
    stage = train_cmd.train_stage(_cfg(root), run=run, prepared=prepared, renders=renders)
    names = {n for n, _, _ in run.scalars}
    assert {"train.loss", "train.step_samples_per_s", "train.samples_per_s", "val.loss",
            "val.i2t_R@5"} <= names
    assert "probe_top1" not in names  # the probe is an evaluation (every mode): harness.evaluation.probe
    assert "reused_checkpoint" not in run.info and "train_from_checkpoint" not in stage.throughput
    assert run.info["params"] == stage.params and stage.params["trainable"] == 128 * 128 * 2 + 256 + 1
    assert stage.throughput["train_samples_per_s"] > 0
    assert Path(stage.checkpoint).name == "best.pt" and "clip3d-tiny-linear-" in stage.checkpoint
    assert list((root / "feat").glob("clip3d-tiny-*/cfg123/images.pt"))  # cache keyed by render config id
    # a rerun reuses the finished checkpoint: same weights, no new steps, yet the same curves recorded
    rerun = FakeRun()
    again = train_cmd.train_stage(_cfg(root), run=rerun, prepared=prepared, renders=renders)
    assert torch.equal(again.bundle.heads.image.weight, stage.bundle.heads.image.weight)
    assert rerun.info["reused_checkpoint"].endswith("last.pt") and "resumed_from" not in rerun.info

    def curve(scalars, name):
        return [(step, value) for n, value, step in scalars if n == name]
    for name in ("train.loss", "val.loss", "val.i2t_R@5"):
        assert curve(rerun.scalars, name) == curve(run.scalars, name) != [], name
    steps = [s for s, _ in curve(rerun.scalars, "train.step_samples_per_s")]
    assert steps == sorted(set(steps))  # one value per step: per-epoch speed has its own name
    assert again.throughput == {"train_samples_per_s": stage.throughput["train_samples_per_s"],
                                "train_from_checkpoint": True}


def test_mode_none_returns_the_model_as_loaded(staged):
    prepared, renders, root = staged
    run = FakeRun()
    stage = train_cmd.train_stage(_cfg(root, mode="none"), run=run, prepared=prepared, renders=renders)
    assert run.info["params"]["trainable"] == 0 and stage.history == [] and stage.throughput == {}
    assert stage.bundle.weights_sha256 == models.create_model("clip3d-tiny").weights_sha256


@pytest.mark.parametrize("model, train, text", [
    ({"name": "clip3d-giant"}, {}, "unknown model.name='clip3d-giant'"),
    ({}, {"mode": "frozen"}, "unknown train.mode='frozen'"),
    ({"pooling": "sum"}, {}, "unknown model.pooling='sum'"),
    ({}, {"lr": 0.0}, "train.lr=0.0 must be > 0"),
    ({}, {"batch_size": 40}, r"train.batch_size=40 is larger than the train split \(15 shapes\)"),
])
def test_bad_input_fails_before_rendering(staged, monkeypatch, model, train, text):
    prepared, _, root = staged
    import harness.commands.render as render_cmd

    monkeypatch.setattr(render_cmd, "render_stage", lambda *a, **k: pytest.fail("rendered despite bad input"))
    cfg = _cfg(root, **train)
    cfg["model"].update(model)
    with pytest.raises(models.ModelsError, match=text):
        train_cmd.train_stage(cfg, prepared=prepared, renders=None)


def test_weights_file_of_another_model_fails_before_rendering(staged, monkeypatch, tmp_path):
    prepared, _, root = staged
    import harness.commands.render as render_cmd

    monkeypatch.setattr(render_cmd, "render_stage", lambda *a, **k: pytest.fail("rendered despite bad input"))
    small = tmp_path / "small.pt"
    torch.save(models.create_model("clip3d-small").model.state_dict(), small)
    cfg = _cfg(root)
    cfg["model"]["pretrained"] = str(small)
    with pytest.raises(models.WeightsMismatchError, match="is not a checkpoint of model 'clip3d-tiny'"):
        train_cmd.train_stage(cfg, prepared=prepared, renders=None)
