"""Checkpoints: trainable weights, optimizer, scheduler and loop state, written atomically; loading
applies the checkpoint's training mode (and learned pooling) to a freshly created model first."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from models import ClipBundle, ConfigError, TrainConfig, get_mode, make_pooling, train_config

CHECKPOINT_FORMAT = "clip3d-checkpoint"


def trainable_modules(bundle: ClipBundle) -> nn.ModuleDict:
    mods = {"model": bundle.model}
    if bundle.heads is not None:
        mods["heads"] = bundle.heads
    if bundle.pooling is not None and any(True for _ in bundle.pooling.parameters()):
        mods["pooling"] = bundle.pooling
    return nn.ModuleDict(mods)


def trainable_state(bundle: ClipBundle) -> dict[str, torch.Tensor]:
    """The parameters that training changes (all of them in full mode), by name."""
    return {n: p.detach().cpu().clone() for n, p in trainable_modules(bundle).named_parameters()
            if p.requires_grad}


def save_checkpoint(path: str | os.PathLike, bundle: ClipBundle, optimizer=None, scheduler=None,
                    **state) -> str:
    """Write a checkpoint atomically: trainable weights, optimizer, scheduler, loop state, config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": CHECKPOINT_FORMAT, "model_name": bundle.name, "pretrained": bundle.pretrained,
            "weights_sha256": bundle.weights_sha256, "mode": bundle.mode,
            "pooling_name": bundle.info.get("pooling"), "state": trainable_state(bundle),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "torch_rng": torch.get_rng_state(), **state}
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return str(path)


def load_checkpoint(path: str | os.PathLike, bundle: ClipBundle,
                    train_cfg: TrainConfig | None = None) -> dict:
    """Load a checkpoint into ``bundle`` (applying its mode first when needed); returns the raw blob.

    train_cfg: the train config the mode is applied with (None: the one recorded in the checkpoint).
    """
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ConfigError(f"checkpoint {str(path)!r} is unreadable ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{str(path)!r} is not a clip3d checkpoint (expected last.pt/best.pt from train)")
    if blob["model_name"] != bundle.name:
        raise ConfigError(f"checkpoint {str(path)!r} is of model {blob['model_name']!r}, not {bundle.name!r}")
    if bundle.mode != blob["mode"]:
        bundle.mode = blob["mode"]
        recorded = blob.get("config", {}).get("train", {})
        get_mode(blob["mode"]).apply(bundle, train_config(train_cfg if train_cfg is not None else recorded))
    if blob.get("pooling_name") and bundle.pooling is None:
        bundle.pooling = make_pooling(blob["pooling_name"], embed_dim(bundle)).to(bundle.device)
        bundle.info["pooling"] = blob["pooling_name"]
    params = dict(trainable_modules(bundle).named_parameters())
    missing = sorted(set(blob["state"]) - set(params))
    if missing:
        raise ConfigError(f"checkpoint {str(path)!r} has weights the model lacks: {missing[:5]}")
    with torch.no_grad():
        for name, tensor in blob["state"].items():
            params[name].copy_(tensor)
    return blob


def embed_dim(bundle: ClipBundle) -> int:
    with torch.no_grad():
        return int(bundle.model.encode_text(bundle.tokenizer(["a"]).to(bundle.device)).shape[-1])
