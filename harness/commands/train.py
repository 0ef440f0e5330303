"""The ``train`` command and stage: the command prepares data and renders (through the render cache),
the stage trains a ClipBundle on them.

``python -m harness train with model.name=clip3d-tiny train.mode=full train.epochs=3 render.size=64``
Works under ``torchrun --nproc_per_node N -m harness train ...`` (gloo on CPU, nccl on CUDA): rank 0
renders, writes checkpoints and logs; every rank trains its share of each batch.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands.render import shape_items
from harness.experiment import ex

if TYPE_CHECKING:
    from harness.config import Config
    from models import ModelConfig

# Train-config keys that do not change the trained weights: they stay out of the run key.
_NOT_IN_RUN_KEY = ("out", "resume", "tensorboard", "features_dir")


@dataclass
class TrainStage:
    """What the evaluate stage needs: the bundle (trained, or as loaded for mode none) and figures."""

    bundle: Any
    checkpoint: str | None
    history: list[dict]
    throughput: dict
    metrics: dict = field(default_factory=dict)  # figures training measured: merged into result.metrics
    params: dict = field(default_factory=dict)
    run_dir: str | None = None


def run_key(cfg: Config, weights_sha256: str, renders_id: str | None, split_id: str | None,
            world: int = 1) -> str:
    """Checkpoint folder name: model, mode and a hash of everything that changes the trained weights.

    ``renders_id``: the renders fingerprint (pixel config and every shape's mesh content), so a
    checkpoint trained on other images is never reused. The hash is over the plain config values
    (``as_dict``), as it was when the config travelled as a dict: existing checkpoints stay reused.
    """
    from registries import as_dict

    train_cfg = {k: v for k, v in sorted(as_dict(cfg.train).items()) if k not in _NOT_IN_RUN_KEY}
    ident = {"model": cfg.model.name, "pretrained": cfg.model.pretrained,
             "weights": weights_sha256, "pooling": cfg.model.pooling, "train": train_cfg,
             "render": renders_id, "split": split_id, "seed": cfg.seed, "world": world}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
    safe = str(cfg.model.name).replace("/", "_").replace(":", "_")
    return f"{safe}-{cfg.train.mode}-{digest}"


def _log_callback(run):
    def callback(event: str, metrics: dict) -> None:
        if run is None:
            return
        step = metrics.get("step", 0) if event == "step" else metrics.get("epoch", 0)
        for name, value in metrics.items():
            if name in ("step", "epoch", "lr") and event == "step":
                continue
            if name in ("step", "epoch"):
                continue
            run.log_scalar(name, float(value), step)
    return callback


def process_device(model: ModelConfig) -> tuple[str, int, int]:
    """This process's device and ``(rank, world)``: joins torchrun's process group when there is one
    (gloo on CPU, nccl on CUDA: one GPU per local rank)."""
    import torch

    import models
    import trainer

    device = models.resolve_device(model.device)
    rank, world = trainer.init_distributed(device)
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    return device, rank, world


def ranked_inputs(cfg: Config, run, rank: int, world: int):
    """``(prepared, renders)`` for the ``train`` command: under torchrun rank 0 generates a missing
    synthetic dataset and renders what is missing first; the other ranks then read what it made."""
    import torch.distributed as dist

    from harness.commands.render import render_stage
    from harness.data import prepare

    prepared = renders = None
    if rank == 0:
        prepared = prepare(cfg.data, cfg.seed)
        renders = render_stage(cfg, run=run, prepared=prepared)
    if world > 1:
        dist.barrier()
    if rank != 0:
        prepared = prepare(cfg.data, cfg.seed, progress=False)
        renders = render_stage(cfg, run=None, prepared=prepared)
    return prepared, renders


def train_stage(cfg: Config | Mapping, run=None, *, prepared, renders) -> TrainStage:
    """Build the model and train it per ``cfg.train`` on the given data and renders.

    cfg: the Config (a mapping is validated and converted once). Bad input (model, tag, weights
    file, mode, pooling, lr, batch size) fails before anything else.
    """
    import models
    import trainer
    from harness.config import load_config

    cfg = load_config(cfg)
    model_cfg, train_cfg = cfg.model, cfg.train
    device, rank, world = process_device(model_cfg)
    models.validate_config(model_cfg, train_cfg, n_train_shapes=len(prepared.split.train) // world)
    bundle = models.create_model(model_cfg.name, model_cfg.pretrained, device=device, seed=cfg.seed)
    render_dir, config_id = renders.render_dir, renders.config_id
    train_items = shape_items(prepared, render_dir, prepared.split.train)
    val_items = shape_items(prepared, render_dir, prepared.split.val)
    split_id = getattr(prepared.split, "split_id", None)
    renders_id = getattr(renders, "fingerprint", None) or config_id
    run_dir = Path(train_cfg.out) / run_key(cfg, bundle.weights_sha256, renders_id, split_id, world)
    features_dir = train_cfg.features_dir
    result = trainer.train(bundle, train_items, val_items, train_cfg, callback=_log_callback(run),
                          seed=cfg.seed, out_dir=run_dir, pooling=model_cfg.pooling,
                          features_dir=features_dir, render_config_id=config_id, progress=rank == 0)
    resumed = result.resumed_from
    if run is not None:
        run.info["params"] = dict(result.params)
        if resumed and resumed["finished"]:
            run.info["reused_checkpoint"] = resumed["checkpoint"]  # no step trained in this run
        elif resumed:
            run.info["resumed_from"] = resumed
    # The speed of the steps that made the weights; marked when they were made by an earlier run.
    throughput = {"train_samples_per_s": float(result.samples_per_s)} if result.steps else {}
    if result.steps and resumed and resumed["finished"]:
        throughput["train_from_checkpoint"] = True
    return TrainStage(bundle=bundle, checkpoint=result.checkpoint, history=result.history,
                      throughput=throughput, params=result.params, run_dir=str(run_dir))


@ex.command
def train(_config, _run):
    """Render what is missing and train ``model.name`` in ``train.mode``; checkpoints under train.out."""
    from harness.config import load_config

    cfg = load_config(dict(_config))
    _, rank, world = process_device(cfg.model)
    prepared, renders = ranked_inputs(cfg, _run, rank, world)
    stage = train_stage(cfg, run=_run, prepared=prepared, renders=renders)
    last = stage.history[-1] if stage.history else {}
    return {"checkpoint": stage.checkpoint, "params": stage.params, "metrics": stage.metrics,
            "throughput": stage.throughput,
            "val": {k.replace("val.", "val_"): float(v) for k, v in last.items() if k.startswith("val.")}}
