"""Training: every mode trains clip3d-tiny and val loss falls; frozen weights stay bit-identical;
kill + resume reaches the same weights; the loop reports metrics; DDP on 2 gloo processes."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from config_fixtures import train_dict

import models
import trainer
from trainer import StopTraining, trainable_state

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]
CFG = train_dict(epochs=3, batch_size=8, lr=2e-3, warmup_steps=2, weight_decay=0.0, grad_clip=1.0,
                 lora_rank=4, partial_blocks=1)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    from models_fixtures import make_items

    all_items = make_items(tmp_path_factory.mktemp("views"), n_shapes=24, n_views=3)
    return all_items[:16], all_items[16:]


def _snapshot(model):
    return [(n, p, p.detach().clone()) for n, p in model.named_parameters()]


@pytest.mark.parametrize("mode", ["linear", "projection", "lora", "partial", "full"])
def test_mode_trains_val_loss_falls_and_frozen_weights_untouched(mode, items, tmp_path):
    bundle = models.create_model("clip3d-tiny")
    before = _snapshot(bundle.model)
    events = []
    result = trainer.train(bundle, *items, dict(CFG, mode=mode), callback=lambda e, m: events.append((e, m)),
                          out_dir=tmp_path / "ck", features_dir=tmp_path / "feat", progress=False)
    losses = [h["val.loss"] for h in result.history]
    assert len(losses) == 4 and losses[-1] < losses[0], losses  # epoch 0 is the model as loaded
    trainable = {id(p) for p in bundle.model.parameters() if p.requires_grad}
    frozen = [(n, ref) for n, p, ref in before if id(p) not in trainable]
    for name, p, ref in before:
        if id(p) not in trainable:
            assert torch.equal(p.detach(), ref), f"{mode}: frozen {name} changed"
    changed = [n for n, p, ref in before if id(p) in trainable and not torch.equal(p.detach(), ref)]
    if mode == "linear":
        assert len(frozen) == len(before) and not changed  # towers untouched; heads train
    elif mode == "lora":
        assert changed == ["logit_scale"] and len(frozen) == len(before) - 1  # adapters are new params
    else:
        assert changed and (mode == "full") == (not frozen)
    params = result.params
    assert 0 < params["trainable"] <= params["total"]
    assert (params["trainable"] == params["total"]) == (mode == "full")
    steps = [m for e, m in events if e == "step"]
    assert len(steps) == 3 * 2 and {"train.loss", "train.step_samples_per_s", "lr"} <= set(steps[0])
    epochs = [m for e, m in events if e == "epoch"]
    assert [m["epoch"] for m in epochs] == [0, 1, 2, 3] and "val.i2t_R@5" in epochs[-1]
    assert (tmp_path / "ck" / "best.pt").is_file() and (tmp_path / "ck" / "last.pt").is_file()


def test_mode_none_trains_nothing(items):
    bundle = models.create_model("clip3d-tiny")
    sha = models.state_sha256(bundle.model)
    result = trainer.train(bundle, *items, dict(CFG, mode="none"), progress=False)
    assert result.params["trainable"] == 0 and result.steps == 0 and result.history == []
    assert models.state_sha256(bundle.model) == sha


def test_attention_pooling_is_learned(items, tmp_path):
    bundle = models.create_model("clip3d-tiny")
    trainer.train(bundle, *items, dict(CFG, mode="projection", epochs=1), pooling="attention", progress=False,
                 out_dir=tmp_path / "ck")
    losses = bundle.info["pooling_losses"]
    assert losses[-1] < losses[0]
    fresh = models.create_model("clip3d-tiny")
    trainer.load_checkpoint(tmp_path / "ck" / "best.pt", fresh)
    assert torch.equal(fresh.pooling.score.weight, bundle.pooling.score.weight)


def test_resume_after_kill_is_bit_identical(items, tmp_path):
    cfg = dict(CFG, mode="full", epochs=2)
    ref = models.create_model("clip3d-tiny")
    ref_events = []
    trainer.train(ref, *items, cfg, out_dir=tmp_path / "a", progress=False,
                 callback=lambda e, m: ref_events.append((e, m)))

    def kill(event, metrics):
        if event == "step" and metrics["step"] == 3:  # mid-epoch 2
            raise StopTraining
    killed = models.create_model("clip3d-tiny")
    with pytest.raises(StopTraining):
        trainer.train(killed, *items, cfg, callback=kill, out_dir=tmp_path / "b", progress=False)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["loop"]["step"] == 3
    resumed = models.create_model("clip3d-tiny")
    events = []
    result = trainer.train(resumed, *items, cfg, out_dir=tmp_path / "b", progress=False,
                          callback=lambda e, m: events.append((e, m)))
    assert result.steps == 4
    assert result.resumed_from == {"checkpoint": str(tmp_path / "b" / "last.pt"), "epoch": 1, "step": 3,
                                   "finished": False}
    a, b = trainable_state(ref), trainable_state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert models.state_sha256(ref.model) == models.state_sha256(resumed.model)
    # the resumed run reports the whole curve, the killed process's steps and epochs included
    assert _curves(events) == _curves(ref_events)

    reused = models.create_model("clip3d-tiny")  # the finished checkpoint: no step, every curve
    events = []
    result = trainer.train(reused, *items, cfg, out_dir=tmp_path / "b", progress=False,
                          callback=lambda e, m: events.append((e, m)))
    assert result.resumed_from["finished"] and result.steps == 4 and not result.step_seconds
    assert _curves(events) == _curves(ref_events)


def _curves(events):
    """{(event, name): [(step, value)]} of the deterministic curves (timings differ between runs)."""
    out = {}
    for event, m in events:
        step = m["step"] if event == "step" else m["epoch"]
        for name, value in m.items():
            if name.startswith(("val.", "train.loss")):
                out.setdefault((event, name), []).append((step, value))
    return out


def test_early_stopping_and_checkpoint_reload(items, tmp_path):
    bundle = models.create_model("clip3d-tiny")
    result = trainer.train(bundle, *items, dict(CFG, mode="projection", epochs=6, lr=0.5, patience=1),
                          out_dir=tmp_path / "ck", progress=False)
    best = min(h["val.loss"] for h in result.history[1:])
    assert result.best_val_loss == pytest.approx(best)
    fresh = models.create_model("clip3d-tiny")
    blob = trainer.load_checkpoint(result.checkpoint, fresh)
    assert blob["mode"] == "projection" and {"optimizer", "scheduler", "loop", "config"} <= set(blob)
    assert models.state_sha256(fresh.model) == models.state_sha256(bundle.model)
    with pytest.raises(models.ConfigError, match="is of model 'clip3d-tiny', not 'clip3d-small'"):
        trainer.load_checkpoint(result.checkpoint, models.create_model("clip3d-small"))


def test_batch_larger_than_train_split_fails_before_training(items):
    with pytest.raises(models.ConfigError, match=r"train.batch_size=64 is larger than the train split \(16"):
        trainer.train(models.create_model("clip3d-tiny"), *items, dict(CFG, mode="full", batch_size=64),
                     progress=False)


DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
import models
import trainer
from config_fixtures import train_dict
from models_fixtures import make_items
rank, world = trainer.init_distributed("cpu")
items = make_items({views!r} + str(rank), n_shapes=12, n_views=2)  # keys equal, files per rank
bundle = models.create_model("clip3d-tiny")
result = trainer.train(bundle, items[:8], items[8:], train_dict(mode="full", epochs=1, batch_size=2, lr=1e-3,
                      warmup_steps=1, grad_clip=None), out_dir={out!r}, progress=False)
print(f"rank{{rank}}/{{world}} steps={{result.steps}} sha={{models.state_sha256(bundle.model)}}", flush=True)
"""


def test_ddp_two_cpu_processes_on_gloo(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests=str(ROOT / "tests"), views=str(tmp_path / "v"),
                                                        out=str(tmp_path / "ck"))))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--standalone", str(script)], capture_output=True, text=True, env=env,
                          timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank"))
    assert len(lines) == 2
    assert lines[0].startswith("rank0/2 steps=2") and lines[1].startswith("rank1/2 steps=2")
    assert lines[0].split("sha=")[1] == lines[1].split("sha=")[1]  # DDP kept the replicas in sync
    assert (tmp_path / "ck" / "best.pt").is_file()


def test_tensorboard_logging_writes_the_curves(items, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer.train(models.create_model("clip3d-tiny"), *items, dict(CFG, mode="projection", tensorboard=True),
                 out_dir=tmp_path / "ck", progress=False)
    acc = EventAccumulator(str(tmp_path / "ck" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert "train/loss" in tags and "val/loss" in tags, tags
    assert len(acc.Scalars("train/loss")) == 3 * 2
