"""The ``evaluate`` command and stage: a model (trained, from a checkpoint, or as loaded) on the test split.

``python -m harness evaluate with tiny model.name=clip3d-tiny eval.checkpoint=runs/checkpoints/<key>/best.pt``
records image↔text retrieval, photo → shape retrieval, captioning (retrieval + generative captioner),
bootstrap 95 % CIs over test shapes, per-category figures, throughput and provenance as the run's
``result``; per-shape scores for paired comparisons go to ``run.info["per_shape"]``.

This module orchestrates; the parts live in ``harness.evaluation`` (photo queries, captioning,
artifacts), the aggregation in ``harness.metrics.blocks``, the photo records in ``harness.data.photos``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.evaluation import CaptioningJob, EvalContext, attach_artifacts, captioning_decision
from harness.evaluation.context import compute_threads
from harness.evaluation.photos import photo_queries
from harness.evaluation.samples import sample_log
from harness.evaluation.sweeps import by_views, check_view_counts, rotated, rotation_kinds, view_counts
from harness.evaluation.tasks import TASKS, Encoded, described_context, score, text_view
from harness.experiment import ex

if TYPE_CHECKING:
    from harness.config import Config

log = logging.getLogger("harness.evaluate")


def evaluate_stage(cfg: Config | Mapping, prepared, renders, trained=None, run=None,
                   reevaluation: bool = False) -> dict:
    """Evaluate on ``eval.split`` and return the run record's ``result`` (plain Python types).

    ``cfg``: the run's Config (a mapping is checked and converted once, ``harness.config.load_config``).
    ``prepared`` (``harness.data.prepare``) and ``renders`` (the render stage's) are this run's data;
    ``trained`` (the train stage's) is the model to evaluate, else it is created as loaded or from
    ``eval.checkpoint``. With a Sacred ``run``: timings as metrics, per-shape scores in
    ``run.info["per_shape"]``, a retrieval-examples image and a caption table as artifacts.
    ``reevaluation``: a further evaluation of the run's model (another view count, a rotation):
    captioning is skipped unless ``eval.captioning`` is ``"always"``, and
    ``result.provenance.captioning`` says so.
    """
    import torch

    import models
    from harness.commands.render import shape_items
    from harness.config import load_config
    from harness.metrics import java_executable, per_shape_record
    from harness.metrics.provenance import plain

    cfg = load_config(cfg)
    ev = cfg.eval
    do_caption, caption_status = captioning_decision(ev.captioning, reevaluation)
    if do_caption:
        java_executable()  # missing Java fails here, before any encoding or training
    elif reevaluation:
        log.info("evaluate: captioning %s", caption_status)
    start = time.perf_counter()
    bundle, checkpoint = _bundle(cfg, trained)
    if bundle.pooling is None and cfg.model.pooling not in ("mean", None):
        bundle.pooling = models.make_pooling(cfg.model.pooling, _embed_dim(bundle)).to(bundle.device)
    items = shape_items(prepared, renders.render_dir, getattr(prepared.split, ev.split))
    if not items:
        raise models.ConfigError(f"eval.split={ev.split!r} has no rendered shapes with captions under "
                                 f"{renders.render_dir}; render first or check the split")
    ctx = EvalContext(bundle=bundle, prepared=prepared, render_dir=renders.render_dir,
                      render_config_id=renders.config_id, features_dir=Path(cfg.train.features_dir),
                      items=items, category_of={s.key: s.category for s in prepared.dataset.shapes},
                      ks=tuple(int(k) for k in ev.ks), resamples=int(ev.bootstrap), seed=int(cfg.seed),
                      config=ev)
    keys = ctx.keys

    view_sweep, rotations = view_counts(ev.views), rotation_kinds(ev.rotation)
    check_view_counts(view_sweep, items)
    encode_stats: dict = {}
    with torch.no_grad():
        with ctx.timed("encode_images"):
            view_emb = models.encode_views(bundle, [it.views for it in items], cache_dir=ctx.features_dir,
                                           render_config_id=ctx.render_config_id, stats=encode_stats)
            shape_emb = models.pool_views(view_emb, bundle.pooling).numpy()
        texts = [c for it in items for c in it.captions]
        with ctx.timed("encode_texts"):
            text_emb = models.encode_texts(bundle, texts).numpy()
    enc = Encoded(shape_emb, text_emb, texts, [it.key for it in items for _ in it.captions])
    counts = {"shapes": len(keys), "texts": len(texts), "views": sum(len(it.views) for it in items)}
    text = text_view(ctx, enc)  # the shapes whose captions describe them (all, on Pix3D)
    counts["described_shapes"] = len(text[0].items) if text else 0
    if text is None:
        ctx.provenance["text_tasks"] = ("skipped: the evaluated shapes' captions only name their class "
                                        "(class-level captions): no text retrieval or captioning")
        log.info("evaluate: text retrieval and captioning %s", ctx.provenance["text_tasks"])
        if do_caption:
            do_caption, caption_status = False, "skipped: class-level captions only"
    with torch.no_grad(), ctx.timed("encode_train_views"):
        _encode_train_views(ctx, do_caption)
    captioner = None
    if do_caption:  # the captioner's inputs now; it trains in a thread while the tasks run
        captioner = CaptioningJob(text[0], ev.captioner)
        captioner.start()
        # The METEOR and tokenizer JVMs start now (METEOR loads its paraphrase table: ~8 s, ~10 s of
        # CPU) so they are ready when the captioner is; started after the tasks they kept the
        # captions waiting 7-9 s (Pix3D-sized evaluation 32-38 s against 29 s, docs/PERFORMANCE.md).
        # No-op when this process's JVMs already run.
        from harness.metrics.captioning import jvm_pool
        jvm_pool().prestart()
    points: dict = {}  # ("by_views", "4") / ("by_rotation", "so3") -> SweepPoint
    try:
        with compute_threads(1 if captioner is not None and captioner.running and ctx.on_cpu else None):
            block = score(ctx, enc)
            if ev.photo2shape:
                counts["photos"] = len(photo_queries(ctx).shapes)
            if view_sweep:
                with ctx.timed("view_sweep"):
                    swept = by_views(ctx, enc, view_emb, view_sweep)
                points.update({("by_views", n): point for n, point in swept.items()})
            for kind in rotations:
                with ctx.timed("rotation"):
                    point = _rotation(cfg, ctx, enc, kind)
                if point is not None:  # none when no rotated render succeeded (provenance.rotation says so)
                    points[("by_rotation", kind)] = point
    finally:
        if captioner is not None:
            captioner.join()

    samples, captioner_info = {}, {}
    if captioner is not None:
        captions, samples, captioner_info = captioner.finish(text[1].shapes)
        block.merge(captions)
        if not samples:
            caption_status = "skipped: no train shapes with captions for the captioners"
    if points:
        ctx.provenance["sweep_captioning"] = _caption_sweeps(ctx, captioner, points, ev.captioning,
                                                             bool(samples))
    sweeps: dict = {}
    for (field, name), point in points.items():
        sweeps.setdefault(field, {})[name] = point.figures
    if trained is not None:
        block.metrics.update({k: float(v) for k, v in (trained.metrics or {}).items()})

    eval_seconds = time.perf_counter() - start
    throughput = _throughput(ctx, renders, trained, eval_seconds,
                             {"encode": encode_stats,
                              "photos": photo_queries(ctx).stats if ev.photo2shape else {},
                              "photo_count": counts.get("photos"),
                              "captioner_from_cache": captioner_info.get("from_cache")})
    provenance = {**_provenance(cfg, prepared, renders, bundle, checkpoint), "counts": counts,
                  "captioning": caption_status, **ctx.provenance}
    if captioner_info:
        provenance["captioner"] = captioner_info
    result = plain({"metrics": block.metrics, "ci95": block.ci95, "per_category": block.per_category,
                    **sweeps, "throughput": throughput, "provenance": provenance})
    if run is not None:
        from harness.evaluation.report import top_captions

        for name, seconds in ctx.timings.items():
            run.log_scalar(f"eval.{name}_seconds", float(seconds))
        run.info["per_shape"] = plain(per_shape_record(block.per_shape))
        attach_artifacts(run, items, top_captions(shape_emb[:4], text_emb, texts, keys[:4]), samples,
                         sample_log(ctx, enc) if ev.log_samples else None)
    return result


def _caption_sweeps(ctx: EvalContext, captioner, points: dict, setting, captioned: bool) -> str:
    """Score the sweep points with the run's captioners when ``eval.captioning='always'`` (nothing is
    trained again: a beam search and the scoring per point); what was done, for the provenance."""
    if setting != "always":
        return "skipped (eval.captioning='always' scores the view-count and rotation points too)"
    if captioner is None or not captioned:
        return "skipped: no captioners in this evaluation"
    with ctx.timed("captioning_sweeps"):
        for point in points.values():
            described, rows = described_context(point.ctx)  # (the run's evaluation had some)
            point.figures.update(captioner.figures(described, point.shapes[rows]))
    return "done"


def _rotation(cfg, ctx: EvalContext, enc: Encoded, kind: str):
    """The ``SweepPoint`` of ``result.by_rotation[kind]``: the evaluated shapes rendered turned by their
    seeded ``kind`` rotation (cached like any render), scored by the sweep tasks (None when no rotated
    render succeeded); what was done goes to the provenance."""
    from harness.commands.render import rotated_renders, shape_items

    seed = int(cfg.eval.rotation_seed)
    log.info("evaluate: the %d %s shapes turned by their %s rotation (seed %d), rendered once and cached",
             len(ctx.keys), cfg.eval.split, kind, seed)
    renders = rotated_renders(cfg, ctx.prepared, ctx.keys, kind, seed)
    items = shape_items(ctx.prepared, renders.render_dir, ctx.keys)
    ctx.provenance.setdefault("rotation", {})[kind] = {
        "seed": seed, "render_config_id": renders.config_id, "renders_fingerprint": renders.fingerprint,
        "shapes": len(items), "failed": len(ctx.keys) - len(items)}
    if not items:
        log.warning("evaluate: no %s-rotated render succeeded; by_rotation.%s left out", kind, kind)
        return None
    return rotated(ctx, enc, items, renders.config_id)


def _encode_train_views(ctx: EvalContext, do_caption: bool) -> None:
    """Encode the train shapes' views (and the val shapes', for the probe) into the feature cache, with
    every core, before the captioner's thread starts: the probe and the captioner both read them from
    there. Timed as its own step (``eval_encode_train_views_seconds``), being neither task's alone."""
    import models
    from harness.commands.render import shape_items

    probe = TASKS["probe"].wanted(ctx.config)
    splits = (["train"] if probe or do_caption else []) + (["val"] if probe else [])
    items = [it for split in splits
             for it in shape_items(ctx.prepared, ctx.render_dir, getattr(ctx.prepared.split, split))]
    if items:
        models.encode_views(ctx.bundle, [it.views for it in items], cache_dir=ctx.features_dir,
                            render_config_id=ctx.render_config_id, raw=True)


def _throughput(ctx: EvalContext, renders, trained, eval_seconds: float, stats: dict) -> dict:
    """The run's speed figures: only for work this run did; work taken from a cache is marked, never 0."""
    timings, encode, photos = ctx.timings, stats["encode"], stats["photos"]
    throughput = dict(getattr(trained, "throughput", None) or {})
    summary = renders.summary or {}
    if summary.get("views_per_s") is not None:
        throughput["render_views_per_s"] = float(summary["views_per_s"])
    elif summary.get("total"):
        throughput["render_from_cache"] = True
    if encode.get("encoded") and timings.get("encode_images"):
        throughput["encode_images_per_s"] = encode["encoded"] / timings["encode_images"]
    elif encode.get("cached"):
        throughput["encode_from_cache"] = True
    if photos.get("encoded") and timings.get("photo2shape"):
        throughput["photo2shape_photos_per_s"] = stats["photo_count"] / timings["photo2shape"]
    elif photos.get("encode_cached"):
        throughput["photo_encode_from_cache"] = True
    if photos and not photos.get("cropped") and photos.get("crops_cached"):
        throughput["photo_crops_from_cache"] = True
    if timings.get("photo2shape"):
        throughput["eval_photo2shape_share"] = timings["photo2shape"] / eval_seconds
    if stats["captioner_from_cache"]:
        throughput["captioner_from_cache"] = True
    throughput.update({"eval_seconds": eval_seconds, "device": _device_name(ctx.bundle),
                       **{f"eval_{k}_seconds": v for k, v in timings.items()}})
    return throughput


def _provenance(cfg, prepared, renders, bundle, checkpoint) -> dict:
    from harness.metrics.provenance import file_sha256, git_commit, metric_impl, package_versions

    return {
        "dataset_fingerprint": prepared.dataset.fingerprint,
        "dataset_format": getattr(prepared.dataset, "format", "pix3d"),
        "split": prepared.split.split_id,
        "eval_split": cfg.eval.split,
        "render_config_id": renders.config_id,
        "renders_fingerprint": renders.fingerprint,
        "render_size": cfg.render.size, "model_input_size": bundle.image_size,
        "model": bundle.name, "pretrained": bundle.pretrained, "weights_sha256": bundle.weights_sha256,
        "train_mode": bundle.mode or cfg.train.mode,
        "pooling": cfg.model.pooling,
        "checkpoint": checkpoint, "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None,
        "metric_impl": metric_impl(), "packages": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent), "seed": cfg.seed,
    }


def _bundle(cfg, trained):
    """The model to evaluate: the trained bundle, else the model as loaded (+ ``eval.checkpoint``)."""
    import models

    checkpoint = cfg.eval.checkpoint
    if trained is not None and not checkpoint:
        return trained.bundle, trained.checkpoint
    device = models.resolve_device(cfg.model.device)
    bundle = models.create_model(cfg.model.name, cfg.model.pretrained, device=device, seed=cfg.seed)
    if checkpoint:
        from trainer import load_checkpoint

        load_checkpoint(checkpoint, bundle)
    return bundle, checkpoint


def _device_name(bundle) -> str:
    dev = bundle.device
    if dev.type == "cuda":
        import torch
        return torch.cuda.get_device_name(dev)
    return str(dev.type)


def _embed_dim(bundle) -> int:
    return int(getattr(bundle.model, "embed_dim", None) or bundle.model.text_projection.shape[-1])


@ex.command
def evaluate(_config, _run):
    """Evaluate ``model.name`` (``eval.checkpoint``, or as loaded: untrained / zero-shot) on eval.split."""
    from harness.commands.render import render_stage
    from harness.config import load_config
    from harness.data import prepare

    cfg = load_config(dict(_config))
    prepared = prepare(cfg.data, cfg.seed)
    return evaluate_stage(cfg, prepared, render_stage(cfg, run=_run, prepared=prepared), run=_run)
