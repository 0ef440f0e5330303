"""Model registry: open_clip architectures plus our JSON configs, with offline-safe weight loading.

Our tiny CPU models are data (``models/model_configs/*.json``) registered with open_clip the same way
its own configs are, so every open_clip code path (towers, tokenizer, transforms) serves them too.
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip import pretrained as oc_pretrained

from .errors import UnknownModelError, UnknownPretrainedError, WeightsMismatchError, WeightsUnavailableError
from .preprocess import FastPreprocess

CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
open_clip.add_model_config(CONFIG_DIR)

#: Names of our own configs (models/model_configs/*.json).
OWN_MODELS = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
HF_PREFIX = "hf-hub:"
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
PROBE_TIMEOUT_S = 1.0


@dataclass
class ClipBundle:
    """A CLIP model with what is needed to use it.

    ``heads`` holds linear maps on top of the frozen towers (mode ``linear``), ``pooling`` the
    view-pooling module used to turn view embeddings into a shape embedding.
    """

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    name: str
    pretrained: str | None
    weights_sha256: str
    heads: torch.nn.Module | None = None
    pooling: torch.nn.Module | None = None
    mode: str | None = None  # the training mode applied to the model (None: untouched)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        size = getattr(self.model.visual, "image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)


def list_models() -> list[str]:
    """Every model name accepted by :func:`create_model` (open_clip's and ours; hf-hub:... also works)."""
    return sorted(set(open_clip.list_models()) | set(OWN_MODELS))


def list_pretrained(name: str) -> list[str]:
    """Pretrained tags open_clip knows for ``name``."""
    return list(oc_pretrained.list_pretrained_tags_by_model(name))


def is_weights_file(pretrained: str | None) -> bool:
    """True when ``pretrained`` names a local file rather than an open_clip tag."""
    if not pretrained:
        return False
    return os.path.sep in pretrained or pretrained.endswith(WEIGHT_SUFFIXES) or os.path.isfile(pretrained)


def check_model_name(name: str, pretrained: str | None = None) -> None:
    """Raise a clear error for an unknown model name or pretrained tag, without loading anything."""
    if not isinstance(name, str) or not name:
        raise UnknownModelError(f"model.name={name!r} is not a model name; choose one of list_models()")
    if name.startswith(HF_PREFIX):
        return
    known = list_models()
    if name not in known:
        close = [m for m in known if name.lower().split("-")[0] in m.lower()][:8]
        raise UnknownModelError(
            f"unknown model.name={name!r}. Ours: {', '.join(OWN_MODELS)}; open_clip has {len(known)} "
            f"more (python -c 'import models; print(models.list_models())')"
            + (f"; similar: {', '.join(close)}" if close else ""))
    if pretrained is None or is_weights_file(pretrained):
        if pretrained and not os.path.isfile(pretrained):
            raise WeightsUnavailableError(
                f"model.pretrained={pretrained!r}: no such weights file; pass an existing .pt/.safetensors "
                f"file of model {name!r} or an open_clip tag")
        return
    tags = list_pretrained(name)
    if not oc_pretrained.is_pretrained_cfg(name, pretrained):
        raise UnknownPretrainedError(
            f"unknown model.pretrained={pretrained!r} for model {name!r}; open_clip tags: "
            f"{', '.join(tags) if tags else '(none: train from scratch with pretrained=None)'}; "
            f"or pass a local weights file (model.pretrained=/path/to/weights.pt or .safetensors)")


def _hub_reachable(host: str = "huggingface.co", port: int = 443) -> bool:
    """A 1 s probe (DNS included, in a thread) instead of huggingface_hub's minutes of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    ok = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    return bool(ok)


def _cached_pretrained_file(name: str, tag: str) -> str | None:
    """The local path of open_clip weights (name, tag) when they are already downloaded."""
    cfg = oc_pretrained.get_pretrained_cfg(name, tag)
    if "file" in cfg:
        return cfg["file"]
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - open_clip depends on huggingface_hub
            return None
        repo, filename = os.path.split(hub)
        for fname in ([filename] if filename else []) + ["open_clip_model.safetensors",
                                                         "open_clip_pytorch_model.bin"]:
            hit = try_to_load_from_cache(repo_id=repo, filename=fname)
            if isinstance(hit, str):
                return hit
    url = cfg.get("url", "")
    if url:
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if path.is_file():
            return str(path)
    return None


def _offline_message(what: str, name: str) -> str:
    return (f"cannot download {what}: not in the local cache and the hub is unreachable (offline?). "
            f"Download the weights elsewhere and pass the file: model.name={name} "
            f"model.pretrained=/path/to/weights.pt (or .safetensors)")


def _load_weights_file(model: torch.nn.Module, path: str, name: str) -> None:
    """Load a local weights file, naming missing/unexpected keys when it is not a checkpoint of ``name``."""
    try:
        state = open_clip.factory.load_state_dict(path)
        if isinstance(state, dict) and state.get("format") == "clip3d-checkpoint":
            state = state["model"]
    except Exception as exc:  # unpicklable, truncated, not a tensor file at all
        raise WeightsMismatchError(
            f"model.pretrained={path!r} is not a readable weights file ({exc})") from exc
    if not isinstance(state, dict) or not state:
        raise WeightsMismatchError(f"model.pretrained={path!r} holds no state dict")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [k for k in set(expected) & set(state)
              if hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        raise WeightsMismatchError(
            f"model.pretrained={path!r} is not a checkpoint of model {name!r}: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, "
            f"{len(shapes)} shape mismatches {sorted(shapes)[:5]}; pass weights saved from {name!r}")
    model.load_state_dict(state)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_sha256(module: torch.nn.Module) -> str:
    """sha256 over parameter names and bytes: identifies the weights a module holds right now."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b"")
    return digest.hexdigest()


def check_weights_available(name: str, pretrained: str | None) -> None:
    """Fail in about a second when a tag's weights are neither cached locally nor downloadable."""
    if name.startswith(HF_PREFIX):
        from huggingface_hub import try_to_load_from_cache
        config = try_to_load_from_cache(repo_id=name[len(HF_PREFIX):], filename="open_clip_config.json")
        if not isinstance(config, str) and not _hub_reachable():
            raise WeightsUnavailableError(_offline_message(f"{name!r}", "<arch>"))
    elif pretrained and not is_weights_file(pretrained):
        if _cached_pretrained_file(name, pretrained) is None and not _hub_reachable():
            raise WeightsUnavailableError(_offline_message(f"{name!r} pretrained={pretrained!r}", name))


def create_model(name: str, pretrained: str | None = None, device: str = "cpu", seed: int = 0) -> ClipBundle:
    """Build a CLIP model by name with weights from an open_clip tag, a local file, or a seeded init.

    pretrained: None (random init from ``seed``), an open_clip tag (``openai``), or a local
    ``.pt``/``.safetensors`` file. Offline, a missing download fails in about a second.
    """
    check_model_name(name, pretrained)
    device = resolve_device(device)
    check_weights_available(name, pretrained)
    weights_file = None
    if pretrained and not is_weights_file(pretrained) and not name.startswith(HF_PREFIX):
        weights_file = _cached_pretrained_file(name, pretrained)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name.startswith(HF_PREFIX):
            model, _, preprocess = open_clip.create_model_and_transforms(name)
        elif weights_file is not None:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights_file)
        elif pretrained and not is_weights_file(pretrained):
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
            weights_file = _cached_pretrained_file(name, pretrained)
        else:
            model, _, preprocess = open_clip.create_model_and_transforms(name)
            if pretrained:
                _load_weights_file(model, pretrained, name)
                weights_file = pretrained
    model = model.to(device).eval()
    sha = file_sha256(weights_file) if weights_file and os.path.isfile(weights_file) else state_sha256(model)
    return ClipBundle(model=model, preprocess=FastPreprocess(preprocess),
                      tokenizer=open_clip.get_tokenizer(name), name=name, pretrained=pretrained,
                      weights_sha256=sha)


def input_size(name: str) -> int:
    """The image size (pixels, square) the model's preprocessing resizes to, read from its config
    without building it: what renders should be made at."""
    check_model_name(name, None)
    if name.startswith(HF_PREFIX):
        import json

        from huggingface_hub import hf_hub_download, try_to_load_from_cache
        repo = name[len(HF_PREFIX):]
        path = try_to_load_from_cache(repo_id=repo, filename="open_clip_config.json")
        if not isinstance(path, str):
            try:
                path = hf_hub_download(repo, "open_clip_config.json")
            except Exception as exc:  # offline or no such repo: the user can still say it
                raise WeightsUnavailableError(
                    f"cannot read the input size of model.name={name!r} ({type(exc).__name__}); "
                    "set render.size explicitly") from exc
        with open(path, encoding="utf-8") as fh:
            size = json.load(fh)["model_cfg"]["vision_cfg"].get("image_size", 224)
    else:
        size = (open_clip.get_model_config(name) or {}).get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def resolve_device(device: str | None) -> str:
    """``auto`` → cuda when available, else cpu."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def count_params(*modules: torch.nn.Module | None) -> dict[str, int]:
    """{"total": N, "trainable": M} over the given modules (shared parameters counted once)."""
    seen: dict[int, torch.nn.Parameter] = {}
    for module in modules:
        if module is not None:
            for p in module.parameters():
                seen[id(p)] = p
    return {"total": int(sum(p.numel() for p in seen.values())),
            "trainable": int(sum(p.numel() for p in seen.values() if p.requires_grad))}
