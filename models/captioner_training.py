"""Training the generative captioner (``PrefixCaptioner``) and caching trained captioners.

* ``train_captioner``: seeded, deterministic; a fixed number of epochs or early stopping on the
  validation loss of held-out train shapes.
* ``cached_captioner``: ``train_captioner`` through an on-disk cache keyed by the content of
  everything training depends on, so evaluating the same model again never retrains its captioner.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .captioner import PrefixCaptioner, Vocab
from .errors import ConfigError


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One epoch of sample indices in batches of a seeded shuffle."""
    order = torch.randperm(n, generator=gen)
    return [order[s:s + batch_size] for s in range(0, n, batch_size)]


def _length_groups(idx: torch.Tensor, lengths: torch.Tensor, groups: int) -> list[torch.Tensor]:
    """``idx`` split into ``groups`` parts of similar caption length (one batch, padded per part)."""
    if groups <= 1 or len(idx) <= 1:
        return [idx]
    idx = idx[torch.sort(lengths[idx], stable=True).indices]
    size = math.ceil(len(idx) / groups)
    return [idx[s:s + size] for s in range(0, len(idx), size)]


def _adamw(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or torch without the fused kernel
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)


def _holdout(n_shapes: int, fraction: float, seed: int) -> set[int]:
    """Seeded set of train-shape indices held out for the captioner's validation loss."""
    if fraction <= 0 or n_shapes < 2:
        return set()
    n_val = min(max(1, round(n_shapes * fraction)), n_shapes - 1)
    perm = torch.randperm(n_shapes, generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    return set(perm[:n_val])


def _loss(model: PrefixCaptioner, emb: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    length = int((tok != 0).sum(1).max())
    tok = tok[:, :length]
    logits = model(emb, tok[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1), ignore_index=0,
                           reduction="sum") / (tok[:, 1:] != 0).sum()


def train_captioner(image_emb, captions: Sequence[Sequence[str]], epochs: int = 30, batch_size: int = 64,
                    lr: float = 2e-3, seed: int = 0, device: str = "cpu", progress: bool = False,
                    patience: int | None = None, val_fraction: float = 0.1, decay_fraction: float = 0.5,
                    length_groups: int = 1, threads: int | None = None, **model_kwargs) -> PrefixCaptioner:
    """Train a ``PrefixCaptioner`` on (train shape embeddings, their captions); seeded and deterministic.

    ``image_emb`` (N, D); ``captions[i]`` are the captions of shape ``i`` (every caption is a sample).

    ``patience`` (early stopping): the captions of ``val_fraction`` of the shapes (at least one; they
    are train shapes — the caller never passes test shapes) are held out and never trained on; after
    every epoch their validation loss is computed. The learning rate warms up over the first epoch and
    then stays at ``lr`` until the validation loss has not improved for ``patience`` epochs; then it
    decays linearly to 0 over ``decay_fraction`` times the epochs run so far (at least 2) and training
    ends; those annealed final weights are kept (they caption better than the epoch of the lowest
    validation loss, which comes before the decay). ``epochs`` is the most it may run; when it runs
    out first, the weights of the best validation loss are kept.
    ``patience=None``: a fixed ``epochs`` on every caption with a one-cycle schedule (as before).

    ``length_groups`` > 1: each batch (the same random batch) is run as that many parts of similar
    caption length whose gradients add up to the batch's, so far fewer padding positions are
    computed; the optimizer steps on the same batches. ``threads``: torch intra-op threads while
    training (restored after); one thread suits this small decoder, especially on a busy CPU.

    The model gets ``train_loss``, ``val_loss`` (of the kept weights; None without early stopping),
    ``val_history`` (per epoch), ``val_shapes`` (held-out shape indices), ``epochs_run`` and
    ``stopped_early``.
    """
    emb = torch.as_tensor(np.asarray(image_emb), dtype=torch.float32)
    if emb.ndim != 2 or len(emb) != len(captions):
        raise ConfigError(f"captioner training needs one embedding row per shape's caption list, got "
                          f"{tuple(emb.shape)} embeddings and {len(captions)} caption lists")
    pairs = [(i, c) for i, caps in enumerate(captions) for c in caps]
    if not pairs:
        raise ConfigError("captioner training got no captions; the train split has none")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        plan = _Plan(epochs, batch_size, lr, seed, device, progress, patience, val_fraction, decay_fraction,
                     length_groups, model_kwargs)
        return _train(emb, captions, pairs, plan)
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class _Plan:
    """How one captioner trains (train_captioner's knobs, checked)."""

    epochs: int
    batch_size: int
    lr: float
    seed: int
    device: str
    progress: bool
    patience: int | None
    val_fraction: float
    decay_fraction: float
    length_groups: int
    model_kwargs: dict


def _train(emb, captions, pairs, plan: _Plan) -> PrefixCaptioner:
    epochs, batch_size, lr, seed, device = plan.epochs, plan.batch_size, plan.lr, plan.seed, plan.device
    progress, patience, val_fraction = plan.progress, plan.patience, plan.val_fraction
    decay_fraction, length_groups, model_kwargs = plan.decay_fraction, plan.length_groups, plan.model_kwargs
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vocab = Vocab.build([c for _, c in pairs])
    model = PrefixCaptioner(vocab, emb.shape[1], **model_kwargs)
    model.fit_input(emb)  # every train shape's embedding (held-out ones too: no caption is seen)
    model = model.to(device)
    max_len = model.max_len
    held = _holdout(len(captions), val_fraction, seed) if patience is not None else set()
    val_pairs = [p for p in pairs if p[0] in held]
    pairs = [p for p in pairs if p[0] not in held] or pairs

    def encode(ps):
        seqs = [vocab.encode(c, max_len) for _, c in ps]
        tokens = torch.zeros(len(seqs), max(map(len, seqs), default=2), dtype=torch.long)
        for r, s in enumerate(seqs):
            tokens[r, : len(s)] = torch.tensor(s)
        return tokens, torch.tensor([i for i, _ in ps], dtype=torch.long)

    tokens, shape_idx = encode(pairs)
    lengths = (tokens != 0).sum(1)
    if patience is None:  # as before
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    else:  # one fused kernel per step instead of a Python loop over the parameters
        opt = _adamw(model, lr)
    per_epoch = math.ceil(len(pairs) / batch_size)
    if patience is None:
        total = epochs * per_epoch
        # (under 20 steps one-cycle's 10 % warm-up is under 2 steps, which it cannot schedule)
        sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total,
                                                     pct_start=max(0.1, 2 / total))
                 if total >= 4 else torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0))
    else:  # warm-up-stable-decay: linear warm-up over the first epoch, constant until the validation
        # loss stops improving, then a linear decay to 0 over `decay_fraction` as many epochs again
        phase = {"decay_from": None, "decay_steps": 1}

        def factor(step: int) -> float:
            if phase["decay_from"] is None:
                return min(1.0, (step + 1) / per_epoch)
            return max(0.0, 1.0 - (step - phase["decay_from"] + 1) / phase["decay_steps"])

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    if val_pairs:
        val_tokens, val_idx = encode(val_pairs)
        val_emb = emb[val_idx].to(device)
        val_tokens = val_tokens.to(device)
    best, best_state, bad, epochs_run, val_loss, decay_end = math.inf, None, 0, 0, None, None
    history: list[float] = []
    model.train()
    from tqdm.auto import tqdm
    for _ in tqdm(range(epochs), desc="captioner", disable=not progress, leave=False):
        for idx in _batches(len(pairs), batch_size, gen):
            opt.zero_grad(set_to_none=True)
            if length_groups <= 1:
                tok = tokens[idx].to(device)
                length = int((tok != 0).sum(1).max())
                tok = tok[:, :length]
                logits = model(emb[shape_idx[idx]].to(device), tok[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1),
                                       ignore_index=0)
                loss.backward()
            else:  # the batch's mean token loss, as a sum over parts of similar length
                n_targets = int((lengths[idx] - 1).sum())
                loss = 0.0
                for part in _length_groups(idx, lengths, length_groups):
                    tok = tokens[part, : int(lengths[part].max())].to(device)
                    logits = model(emb[shape_idx[part]].to(device), tok[:, :-1])
                    part_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1),
                                                ignore_index=0, reduction="sum") / n_targets
                    part_loss.backward()
                    loss = loss + part_loss.detach()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        epochs_run += 1
        if not val_pairs:
            continue
        model.eval()
        with torch.no_grad():
            val_loss = float(_loss(model, val_emb, val_tokens))
        history.append(val_loss)
        model.train()
        if val_loss < best - 1e-4:
            best, bad = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        if decay_end is not None and epochs_run >= decay_end:
            break
        if decay_end is None and bad >= patience:
            n_decay = max(2, math.ceil(epochs_run * decay_fraction))
            n_decay = min(n_decay, epochs - epochs_run)
            if n_decay <= 0:
                break
            phase["decay_from"], phase["decay_steps"] = sched.last_epoch, n_decay * per_epoch
            decay_end = epochs_run + n_decay
    if decay_end is None and best_state is not None:  # ran out of epochs before the decay: the best
        model.load_state_dict(best_state)
        val_loss = best
    # after a decay the annealed final weights are kept: they caption better than the epoch with the
    # lowest validation loss (which comes before the decay and is less sharp)
    model.train_loss = float(loss.detach())
    model.val_loss = val_loss
    model.val_history = history
    model.val_shapes = sorted(held)
    model.epochs_run = epochs_run
    model.stopped_early = epochs_run < epochs
    return model.eval()


# Bump when training or the model changes in a way that changes a trained captioner: cached captioners
# of other versions are then never reused.
CAPTIONER_VERSION = 4
# Knobs that change how fast a captioner trains, not what it learns: not part of the cache key.
_EXECUTION_ONLY = ("threads", "progress", "device")


def captioner_key(image_emb, captions: Sequence[Sequence[str]], config: dict, seed: int) -> str:
    """Content key of a trained captioner: sha256 of the training code version, the train embeddings
    (float32 bytes and shape), the captions of every shape (in order), every training knob of
    ``config`` (``threads``, ``progress``, ``device`` excepted) and the seed. Never a path."""
    emb = np.ascontiguousarray(np.asarray(image_emb, dtype=np.float32))
    h = hashlib.sha256()
    h.update(f"prefix-captioner-v{CAPTIONER_VERSION}\0{emb.shape}\0".encode())
    h.update(emb.tobytes())
    h.update(json.dumps([list(c) for c in captions], ensure_ascii=False).encode())
    knobs = {k: v for k, v in config.items() if k not in _EXECUTION_ONLY}
    h.update(json.dumps(knobs, sort_keys=True, default=repr).encode())
    h.update(f"\0seed={int(seed)}".encode())
    return h.hexdigest()


_INFO = ("train_loss", "val_loss", "val_history", "val_shapes", "epochs_run", "stopped_early")


def cached_captioner(image_emb, captions: Sequence[Sequence[str]], cache_dir: str | os.PathLike | None,
                     seed: int = 0, **config) -> tuple[PrefixCaptioner, bool]:
    """``train_captioner(image_emb, captions, seed=seed, **config)`` through the cache in ``cache_dir``:
    ``(model, from_cache)``. The file is ``<cache_dir>/<key>.pt`` (:func:`captioner_key`), written
    atomically (a temporary file renamed into place) and checked against the full key when read; a
    damaged or foreign file is trained again and replaced. ``cache_dir`` None: no cache."""
    if cache_dir is None:
        return train_captioner(image_emb, captions, seed=seed, **config), False
    key = captioner_key(image_emb, captions, config, seed)
    path = Path(cache_dir) / f"{key[:40]}.pt"
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("key") == key:
                model = PrefixCaptioner(Vocab(list(blob["vocab"])), **blob["config"])
                model.load_state_dict(blob["state"])
                for name in _INFO:
                    setattr(model, name, blob["info"].get(name))
                return model.to(config.get("device", "cpu")).eval(), True
        except Exception:  # noqa: BLE001 - unreadable cache file: train again and replace it
            pass
    model = train_captioner(image_emb, captions, seed=seed, **config)
    blob = {"key": key, "version": CAPTIONER_VERSION, "vocab": list(model.vocab.itos),
            "config": dict(model.config),
            "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "info": {name: getattr(model, name, None) for name in _INFO}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the new one
    finally:
        tmp.unlink(missing_ok=True)
    return model, False
