"""The training loop: seeded, resumable (last + best checkpoints), multi-view, DDP-aware.

``train(bundle, train_items, val_items, cfg)`` trains in place per ``cfg.mode`` (``cfg``: the
``train`` section, a :class:`~models.TrainConfig`) and returns a :class:`TrainResult`. A
``callback(event, metrics)`` receives per-step (``"step"``) and per-epoch (``"epoch"``) metrics; the
Sacred layer turns them into ``log_scalar`` curves.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from models import (
    ClipBundle,
    ConfigError,
    ShapeItem,
    TrainConfig,
    clip_loss,
    count_params,
    encode_texts,
    encode_views,
    get_mode,
    make_pooling,
    train_config,
)
from models.data import MultiViewDataset, TokenCache, collate, epoch_plan
from models.features import apply_heads
from models.modes import param_groups
from models.pooling import LEARNED_POOLINGS
from models.validate import validate_train
from registries import as_dict

from .checkpoints import embed_dim, load_checkpoint, save_checkpoint, trainable_modules
from .distributed import allreduce_grads, dist_info, gather
from .recall import recall_at_k
from .schedule import warmup_cosine

# Per-step curves (the per-epoch ones are in the history): train.step_samples_per_s is one step's
# speed; train.samples_per_s (per epoch) the running average the run's throughput reports.
STEP_CURVES = ("train.loss", "lr", "train.step_samples_per_s")
Callback = Callable[[str, dict], Any]


@dataclass
class TrainResult:
    """What training leaves: the trained bundle, checkpoint paths, per-epoch history, figures."""

    bundle: ClipBundle
    checkpoint: str | None = None  # best.pt (by val loss)
    last: str | None = None
    history: list[dict] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    samples_per_s: float = 0.0
    steps: int = 0
    stopped_early: bool = False
    best_val_loss: float | None = None
    # where training picked up from an earlier process: {"checkpoint", "epoch", "step", "finished"}
    # ("finished": the checkpoint was complete and reused without a step); None for a fresh start
    resumed_from: dict | None = None
    step_seconds: list[float] = field(default_factory=list)  # this process's steps (benchmarks)


class StopTraining(Exception):
    """Raise from a callback to stop after the current step (checkpoint ``last`` is written first)."""


# -- the loop ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Options:
    """How ``train`` was asked to run the loop, beside the train config (see ``train``)."""

    callback: Callback | None
    seed: int
    out_dir: str | os.PathLike | None
    features_dir: str | os.PathLike | None
    render_config_id: str | None
    progress: bool


class _Trainer:
    def __init__(self, bundle, train_items, val_items, cfg, opts: _Options):
        self.bundle, self.cfg, self.callback, self.seed = bundle, cfg, opts.callback, int(opts.seed)
        self.train_items, self.val_items = list(train_items), list(val_items)
        self.out_dir = Path(opts.out_dir) if opts.out_dir else None
        self.features_dir, self.render_config_id = opts.features_dir, opts.render_config_id
        self.progress = opts.progress
        self.mode = get_mode(cfg.mode)
        self.rank, self.world = dist_info()
        self.batch_size = int(cfg.batch_size)
        if self.mode.trains and self.batch_size * self.world > len(self.train_items):
            raise ConfigError(f"train.batch_size={self.batch_size} (x{self.world} processes) is larger than "
                              f"the train split ({len(self.train_items)} shapes); lower it")
        self.device = bundle.device
        self.tokens = TokenCache(bundle.tokenizer)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                         else nullcontext())

    # features for linear mode: computed once per (model, weights, render config), then cached
    def _cached(self, items):
        views = encode_views(self.bundle, [it.views for it in items], cache_dir=self.features_dir,
                             render_config_id=self.render_config_id, raw=True, progress=self.progress)
        texts = sorted({c for it in items for c in it.captions})
        tfeat = encode_texts(self.bundle, texts, raw=True, cache_dir=self.features_dir)
        return views, dict(zip(texts, tfeat, strict=True))

    def _forward(self, batch_idx, items, cached=None, dataset=None):
        keys = [items[i].key for i, _, _ in batch_idx]
        if self.mode.cached_features:
            views, texts = cached
            captions = [items[i].captions[c] for i, _, c in batch_idx]
            img = torch.stack([views[i, v] for i, v, _ in batch_idx]).to(self.device)
            txt = torch.stack([texts[c] for c in captions]).to(self.device)
            img, txt = self.bundle.heads(img, txt)
            scale = self.bundle.heads.logit_scale
        else:
            images, tokens, captions, _ = collate([dataset[t] for t in batch_idx], self.tokens)
            with self.autocast:
                img, txt, scale_exp = self.ddp_model(images.to(self.device), tokens.to(self.device))
            scale = torch.log(scale_exp)
        img, keys_all, caps_all = gather(img, keys, captions)
        txt, _, _ = gather(txt, keys, captions)
        return clip_loss(img, txt, scale, keys_all, caps_all)

    @torch.no_grad()
    def validate(self, cached_val) -> dict[str, float]:
        if not self.val_items:
            return {}
        self.bundle.model.eval()
        plan = epoch_plan(self.val_items, epoch=0, seed=self.seed + 7919, batch_size=self.batch_size,
                          drop_last=False)
        ds = None if self.mode.cached_features else MultiViewDataset(self.val_items, self.bundle.preprocess)
        losses = [(float(self._forward(b, self.val_items, cached_val, ds)), len(b))
                  for b in plan if len(b) > 1]
        out = {"val.loss": sum(v * n for v, n in losses) / max(1, sum(n for _, n in losses))}
        if self.mode.cached_features:
            raw = cached_val[0]
            views = apply_heads(self.bundle, raw.flatten(0, 1), "image").view(*raw.shape[:2], -1)
        else:
            views = encode_views(self.bundle, [it.views for it in self.val_items])
        shapes = F.normalize(views.mean(dim=1), dim=-1)
        texts = [c for it in self.val_items for c in it.captions]
        owner = [i for i, it in enumerate(self.val_items) for _ in it.captions]
        temb = encode_texts(self.bundle, texts)
        out.update({f"val.{k}": v for k, v in recall_at_k(shapes, temb, owner).items()})
        return out

    def _replay(self, state: dict) -> None:
        """Send the curves restored from a checkpoint to the callback again, at their own steps, so
        a resumed or reused run records the whole history, not only what this process trained."""
        if self.callback is None or self.rank != 0:
            return
        log = state.get("step_log") or {}
        for i in range(int(state["step"])):
            values = {name: log[name][i] for name in STEP_CURVES
                      if i < len(log.get(name, ())) and log[name][i] is not None}
            if values:
                self.callback("step", {"step": i + 1, **values})
        for entry in state["history"]:
            self.callback("epoch", entry)

    def run(self) -> TrainResult:
        bundle, cfg = self.bundle, self.cfg
        trainable = [(n, p) for n, p in trainable_modules(bundle).named_parameters() if p.requires_grad]
        result = TrainResult(bundle=bundle, params=count_params(*trainable_modules(bundle).values()))
        if not self.mode.trains or not trainable:
            return result
        lr = float(cfg.lr)
        optimizer = torch.optim.AdamW(
            param_groups(trainable, lr, float(cfg.weight_decay),
                         float(cfg.backbone_lr_scale) if self.mode.name == "full" else 1.0),
            betas=(0.9, 0.98), eps=1e-6)
        epochs = int(cfg.epochs)
        steps_per_epoch = len(epoch_plan(self.train_items, 0, self.seed, self.batch_size * self.world))
        total = epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(int(cfg.warmup_steps), total))
        # step_log: the per-step curves, kept in the checkpoint so a resumed run re-logs them
        state = {"epoch": 0, "step_in_epoch": 0, "step": 0, "best_val": None, "bad_epochs": 0,
                 "history": [], "finished": False, "samples": 0, "seconds": 0.0,
                 "step_log": {name: [] for name in STEP_CURVES}}
        last_path = self.out_dir / "last.pt" if self.out_dir else None
        best_path = self.out_dir / "best.pt" if self.out_dir else None
        if last_path is not None and cfg.resume and last_path.is_file():
            blob = load_checkpoint(last_path, bundle)
            optimizer.load_state_dict(blob["optimizer"])
            scheduler.load_state_dict(blob["scheduler"])
            state.update(blob["loop"])
            for name in STEP_CURVES:  # checkpoints from before step logs: unknown steps stay None
                curve = state["step_log"].setdefault(name, [])
                curve[:0] = [None] * (int(state["step"]) - len(curve))
            result.resumed_from = {"checkpoint": str(last_path), "epoch": int(state["epoch"]),
                                   "step": int(state["step"]), "finished": bool(state["finished"])}
            self._replay(state)
        self.ddp_model = bundle.model
        if self.world > 1 and not self.mode.cached_features:
            self.ddp_model = nn.parallel.DistributedDataParallel(bundle.model)
        cached_train = self._cached(self.train_items) if self.mode.cached_features else None
        cached_val = self._cached(self.val_items) if self.mode.cached_features and self.val_items else None
        dataset = None if self.mode.cached_features else MultiViewDataset(self.train_items, bundle.preprocess)
        if dataset is not None:
            views = [v for it in self.train_items for v in it.views]
            dataset.load.warm(views, self.progress and self.rank == 0)
        patience = cfg.patience
        grad_clip = cfg.grad_clip
        writer = _tensorboard(cfg, self.out_dir) if self.rank == 0 else None

        def save(path, loop):
            if path is not None and self.rank == 0:
                return save_checkpoint(path, bundle, optimizer, scheduler, loop=loop,
                                       config={"train": as_dict(cfg)})

        if not state["history"] and self.val_items:  # epoch 0: the model as loaded, for comparison
            state["history"].append({"epoch": 0, "step": 0, **self.validate(cached_val)})
            if self.callback is not None and self.rank == 0:
                self.callback("epoch", state["history"][0])
        threads = torch.get_num_threads()
        if self.mode.cached_features:
            # (batch, 128) matmuls gain nothing from threads and lose much to thread sync on a busy box
            torch.set_num_threads(1)
        try:
            while state["epoch"] < epochs and not state["finished"]:
                epoch = state["epoch"]
                plan = epoch_plan(self.train_items, epoch, self.seed, self.batch_size * self.world)
                bar = tqdm(plan, desc=f"train {self.mode.name} epoch {epoch + 1}/{epochs}",
                           disable=not self.progress or self.rank != 0, leave=False,
                           initial=state["step_in_epoch"], total=len(plan))
                for batch in plan[state["step_in_epoch"]:]:
                    local = batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
                    bundle.model.train()
                    t0 = time.perf_counter()
                    loss = self._forward(local, self.train_items, cached_train, dataset)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.mode.cached_features and self.world > 1:
                        allreduce_grads(bundle.heads)
                    if grad_clip:
                        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], float(grad_clip))
                    optimizer.step()
                    scheduler.step()
                    with torch.no_grad():  # open_clip clamps the temperature at 100
                        for holder in (bundle.model, bundle.heads):
                            scale = getattr(holder, "logit_scale", None)
                            if isinstance(scale, nn.Parameter):
                                scale.clamp_(0, math.log(100))
                    dt = time.perf_counter() - t0
                    result.step_seconds.append(dt)
                    state["step"] += 1
                    state["step_in_epoch"] += 1
                    state["samples"] += len(batch)
                    state["seconds"] += dt
                    bar.update(1)
                    metrics = {"step": state["step"], "epoch": epoch, "train.loss": float(loss.detach()),
                               "lr": scheduler.get_last_lr()[0], "train.step_samples_per_s": len(batch) / dt}
                    for name in STEP_CURVES:
                        state["step_log"].setdefault(name, []).append(metrics[name])
                    bar.set_postfix(loss=f"{metrics['train.loss']:.3f}")
                    if writer is not None:
                        writer.add_scalar("train/loss", float(loss.detach()), state["step"])
                    if self.callback is not None and self.rank == 0:
                        self.callback("step", metrics)
                bar.close()
                val = self.validate(cached_val)
                epoch_metrics = {"epoch": epoch + 1, "step": state["step"],
                                 "train.samples_per_s": state["samples"] / max(state["seconds"], 1e-9), **val}
                state["history"].append(epoch_metrics)
                state["epoch"] += 1
                state["step_in_epoch"] = 0
                improved = "val.loss" in val and (state["best_val"] is None
                                                  or val["val.loss"] < state["best_val"])
                if improved or not self.val_items:
                    state["best_val"] = val.get("val.loss")
                    state["bad_epochs"] = 0
                    save(best_path, dict(state))
                else:
                    state["bad_epochs"] += 1
                    if patience is not None and state["bad_epochs"] >= int(patience):
                        state["finished"] = True
                        result.stopped_early = True
                save(last_path, dict(state))
                if writer is not None:
                    for k, v in val.items():
                        writer.add_scalar(k.replace(".", "/"), v, state["step"])
                if self.callback is not None and self.rank == 0:
                    self.callback("epoch", epoch_metrics)
            state["finished"] = True
            save(last_path, dict(state))
        except BaseException:
            save(last_path, dict(state))  # a kill mid-epoch resumes at this step
            raise
        finally:
            torch.set_num_threads(threads)
            if writer is not None:
                writer.close()
        if self.world > 1:
            dist.barrier()
        if best_path is not None and best_path.is_file():
            load_checkpoint(best_path, bundle)  # best by val loss is what evaluation sees
        result.checkpoint = str(best_path) if best_path else None
        result.last = str(last_path) if last_path else None
        result.history = state["history"]
        result.steps = state["step"]
        result.best_val_loss = state["best_val"]
        result.samples_per_s = state["samples"] / max(state["seconds"], 1e-9)
        return result


def _tensorboard(cfg: TrainConfig, out_dir: Path | None):
    if not cfg.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError("train.tensorboard=True needs the tensorboard package: "
                          "pip install tensorboard") from exc
    return SummaryWriter(str((out_dir or Path("runs")) / "tensorboard"))


def fit_attention_pooling(bundle: ClipBundle, items: Sequence[ShapeItem], steps: int = 200, lr: float = 1e-2,
                          seed: int = 0, features_dir=None, render_config_id=None) -> list[float]:
    """Train the attention pooling on frozen (trained) view embeddings against caption embeddings."""
    views = encode_views(bundle, [it.views for it in items], cache_dir=features_dir,
                         render_config_id=render_config_id)
    texts = encode_texts(bundle, [it.captions[0] for it in items])
    pool = bundle.pooling
    opt = torch.optim.Adam(pool.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    scale = torch.tensor(math.log(50.0))
    for _ in range(steps):
        idx = torch.randperm(len(items), generator=gen)[:256]
        emb = pool(views[idx].to(bundle.device))
        loss = clip_loss(emb, texts[idx].to(bundle.device), scale,
                         [items[i].key for i in idx], [items[i].captions[0] for i in idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def train(bundle: ClipBundle, train_items: Sequence[ShapeItem], val_items: Sequence[ShapeItem],
          cfg: TrainConfig | Mapping,
          callback: Callback | None = None, *, seed: int = 0, out_dir: str | os.PathLike | None = None,
          pooling: str = "mean", features_dir: str | os.PathLike | None = None,
          render_config_id: str | None = None, progress: bool = True) -> TrainResult:
    """Train ``bundle`` in place in mode ``cfg.mode`` and return a :class:`TrainResult`.

    cfg: the ``train`` section (a mapping is converted once and must hold every key of
    :class:`~models.TrainConfig`; its out and features_dir are the harness's, not read here).
    out_dir: where last.pt / best.pt go (None: no checkpoints). features_dir: the feature cache root
    (mode linear and learned pooling reuse tower outputs from it).
    """
    cfg = train_config(cfg)
    validate_train(cfg, pooling, n_train_shapes=len(train_items))
    mode = get_mode(cfg.mode)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if bundle.mode != mode.name:
            mode.apply(bundle, cfg)
            bundle.mode = mode.name
        bundle.info["pooling"] = pooling
        bundle.pooling = make_pooling(pooling, embed_dim(bundle)).to(bundle.device)
        opts = _Options(callback, seed, out_dir, features_dir, render_config_id, progress)
        result = _Trainer(bundle, train_items, val_items, cfg, opts).run()
        if pooling in LEARNED_POOLINGS and mode.trains:
            bundle.model.eval()
            bundle.info["pooling_losses"] = fit_attention_pooling(bundle, train_items, seed=seed,
                                                                  features_dir=features_dir,
                                                                  render_config_id=render_config_id)
            if out_dir is not None and dist_info()[0] == 0:
                save_checkpoint(Path(out_dir) / "best.pt", bundle, loop={"finished": True},
                                config={"train": as_dict(cfg)})
    result.params = count_params(*trainable_modules(bundle).values())
    bundle.model.eval()
    return result
