"""The ``evaluate`` command and stage: a model (trained, from a checkpoint, or as loaded) on the test split.

``python -m harness evaluate with tiny model.name=clip3d-tiny eval.checkpoint=runs/checkpoints/<key>/best.pt``
records image↔text retrieval, photo → shape retrieval, captioning (retrieval + generative captioner),
bootstrap 95 % CIs over test shapes, per-category figures, throughput and provenance as the run's
``result``; per-shape scores for paired comparisons go to ``run.info["per_shape"]``.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import os
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.experiment import ex

log = logging.getLogger("harness.evaluate")

# Which per-query values a metric is computed from, and how they are aggregated (for the CIs).
HEADLINE = ("R@1", "R@5", "R@10", "mAP", "medR")
# The generative captioner (docs/evaluation.md): a 1-layer, 96-wide prefix decoder trained with batches of
# 32 captions until the validation loss of held-out train shapes has not improved for ``patience``
# epochs, then a learning-rate decay over ``decay_fraction`` as many epochs again (``epochs``: the most
# it may run; ``patience`` None: a fixed ``epochs``); ``threads``: torch threads while it trains (None:
# torch's setting); ``cache``: reuse a captioner trained on the same embeddings, captions, config and
# seed (under ``<train.features_dir>/captioners``).
CAPTIONER_DEFAULTS = dict(epochs=40, beam_size=3, d_model=96, layers=1, prefix_len=4, lr=2e-3, batch_size=32,
                          dropout=0.0, patience=3, val_fraction=0.1, decay_fraction=0.5, length_groups=1,
                          threads=1, cache=True)
# eval.captioning: True — caption the run's evaluation, not its re-evaluations; "always" — caption
# re-evaluations too; False — never.
CAPTIONING_CHOICES = (True, False, "always")


def captioning_decision(setting, reevaluation: bool) -> tuple[bool, str]:
    """(caption?, what the run record says) for ``eval.captioning`` and the kind of evaluation."""
    if setting not in CAPTIONING_CHOICES:
        import models
        raise models.ConfigError(f"eval.captioning={setting!r} must be true, false or 'always'")
    if setting is False or setting == 0:
        return False, "off (eval.captioning=false)"
    if reevaluation and setting != "always":
        return False, ("skipped: a re-evaluation within the run (eval.captioning='always' captions "
                       "re-evaluations too)")
    return True, "done"


def _timer(timings: dict, name: str):
    class _T:
        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - self.t
    return _T()


def _query_values(ranks, metric: str) -> tuple[np.ndarray, str]:
    """Per-query values of ``metric`` (R@k, mAP or medR) and the statistic that aggregates them."""
    if metric.startswith("R@"):
        return (ranks.first_rank <= int(metric[2:])).astype(float), "mean"
    if metric == "mAP":
        return ranks.ap, "mean"
    return ranks.first_rank, "median"


def retrieval_block(ranks: dict, ks, resamples: int, seed: int, category_of: dict) -> dict:
    """metrics, ci95, per_category and per-shape scores of retrieval ranks ``{direction: QueryRanks}``."""
    from harness.metrics import bootstrap_ci, per_category, summarize

    metrics, ci95, per_shape = {}, {}, {}
    names = [f"R@{k}" for k in ks] + ["mAP", "medR"]
    for direction, r in ranks.items():
        metrics.update(summarize(r, ks, prefix=f"{direction}_"))
        keys = r.keys.astype(str)
        uniq, inv = np.unique(keys, return_inverse=True)
        for name in names:
            values, stat = _query_values(r, name)
            full = f"{direction}_{name}"
            if resamples > 0 and len(values):
                ci95[full] = bootstrap_ci(values, keys, stat=stat, resamples=resamples, seed=seed)
            # Per-shape mean of the query values (medR: mean first rank) for the paired bootstrap.
            sums = np.bincount(inv, weights=values, minlength=len(uniq))
            counts = np.bincount(inv, minlength=len(uniq))
            per_shape[full] = dict(zip(uniq.tolist(), (sums / np.maximum(counts, 1)).tolist(), strict=True))
            per_shape.setdefault("_n", {})[direction] = dict(zip(uniq.tolist(), counts.tolist(), strict=True))
    return {"metrics": metrics, "ci95": ci95, "per_category": per_category(ranks, category_of, ks),
            "per_shape": per_shape}


def caption_block(scores: dict, items: dict, prefix: str, resamples: int, seed: int,
                  category_of: dict) -> tuple[dict, dict, dict, dict]:
    """``cap_<prefix>_*`` metrics; CIs over shapes (from sentence scores), per category, per shape."""
    from harness.metrics import bootstrap_ci

    metrics = {f"cap_{prefix}_{k}": v for k, v in scores.items()}
    ci95, per_cat, per_shape = {}, {}, {}
    ids = list(next(iter(items.values())))
    cats = np.array([category_of.get(i, "unknown") for i in ids])
    for name, per_id in items.items():
        vals = np.array([per_id[i] for i in ids])
        key = f"cap_{prefix}_{name}"
        if resamples > 0:
            ci95[key] = bootstrap_ci(vals, ids, resamples=resamples, seed=seed)
        per_shape[key] = dict(zip(ids, vals.tolist(), strict=True))
        for cat in sorted(set(cats)):
            # Per category: mean of sentence-level scores (corpus BLEU/METEOR need the whole corpus).
            per_cat.setdefault(str(cat), {})[key] = float(vals[cats == cat].mean())
    return metrics, ci95, per_cat, per_shape


def _merge_per_category(dst: dict, src: dict) -> None:
    for cat, vals in src.items():
        dst.setdefault(cat, {}).update(vals)


def _photo_fields(photo):
    """(shape key, image path, bbox, mask path) of a Photo record, tolerant of field names."""
    get = (lambda k: photo.get(k)) if isinstance(photo, dict) else (lambda k: getattr(photo, k, None))
    key = next((get(k) for k in ("shape", "shape_key", "model", "key") if get(k)), None)
    img = next((get(k) for k in ("img", "img_path", "image", "path") if get(k)), None)
    mask = None if get("bad_mask") else next((get(k) for k in ("mask", "mask_path") if get(k)), None)
    return key, img, get("bbox"), mask


def crop_photo(img_path: Path, bbox, mask_path: Path | None, size: int, use_mask: bool = True):
    """Pix3D photo cropped to its bbox (square, padded white), masked onto white like the renders."""
    from PIL import Image

    img = Image.open(img_path).convert("RGB")
    if use_mask and mask_path is not None and Path(mask_path).is_file():
        mask = Image.open(mask_path).convert("L").resize(img.size)
        img = Image.composite(img, Image.new("RGB", img.size, (255, 255, 255)), mask)
    if bbox is not None and len(bbox) == 4:
        x0, y0, x1, y1 = (int(round(float(v))) for v in bbox)
        side = max(x1 - x0, y1 - y0, 1)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        box = (cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        inside = (max(box[0], 0), max(box[1], 0), min(box[2], img.width), min(box[3], img.height))
        canvas.paste(img.crop(inside), (inside[0] - box[0], inside[1] - box[1]))
        img = canvas
    return img.resize((size, size))


@dataclass(frozen=True)
class PhotoJob:
    """One photo query: its shape, its sources and the content-stamped file its crop is kept in."""

    shape: str
    img: Path
    bbox: object
    mask: Path | None
    crop: Path


def _photo_jobs(prepared, keys: set, work: Path, size: int, use_mask: bool) -> list[PhotoJob]:
    """The photos of ``keys`` whose image exists, each with the file (under ``work``) its crop goes to."""
    root = Path(getattr(prepared, "root", "."))
    jobs = []
    for photo in getattr(prepared.dataset, "photos", []) or []:
        key, img, bbox, mask = _photo_fields(photo)
        if key not in keys or img is None:
            continue
        img_path = Path(img) if Path(img).is_absolute() else root / img
        try:
            img_stat = img_path.stat()
        except OSError:
            continue
        if not stat.S_ISREG(img_stat.st_mode):
            continue
        mask_path = None if mask is None else (Path(mask) if Path(mask).is_absolute() else root / mask)
        # the sources' size and mtime are in the name: a replaced photo or mask is cropped again
        stamps = [(img_stat.st_size, img_stat.st_mtime_ns)]
        if mask_path is not None:
            try:
                st = mask_path.stat()
                stamps.append((st.st_size, st.st_mtime_ns))
            except OSError:
                pass
        name = hashlib.sha1(f"{img_path}|{mask_path}|{stamps}|{bbox}|{use_mask}|{size}".encode()
                            ).hexdigest()[:16] + ".png"
        jobs.append(PhotoJob(key, img_path, bbox, mask_path, work / name))
    return jobs


def encode_photos(bundle, jobs: list[PhotoJob], features_dir, use_mask: bool, stats: dict,
                  batch_size: int = 64, crop_thread: bool = True) -> np.ndarray:
    """(N, D) embeddings of the photo queries ``jobs``, through the feature cache.

    Crops are made (and kept in their content-stamped files) or read back by a thread, a batch
    ahead of the model, and go straight into the model as tensors: no crop is written and decoded
    again. Raw features are cached under ``<features_dir>/<model>-<weights>/photo-crops/`` keyed by
    the crop file name, so evaluating the same weights again encodes no photo. ``stats`` gets
    ``cropped`` / ``crops_cached`` / ``encoded`` / ``encode_cached`` counts.
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from PIL import Image

    from models.features import FeatureCache, apply_heads

    size = bundle.image_size
    for name in ("cropped", "crops_cached", "encoded", "encode_cached"):
        stats.setdefault(name, 0)
    if not jobs:
        return np.zeros((0, 0), dtype=np.float32)
    by_crop = {str(j.crop): j for j in jobs}

    def tensor(key: str):
        job = by_crop[key]
        if job.crop.is_file():
            with Image.open(job.crop) as img:
                img = img.convert("RGB")
            made = False
        else:
            img = crop_photo(job.img, job.bbox, job.mask, size, use_mask)
            tmp = job.crop.with_name(f".{job.crop.name}.{os.getpid()}-{threading.get_ident()}.png")
            img.save(tmp, compress_level=1)  # lossless: the same pixels, written faster
            os.replace(tmp, job.crop)
            made = True
        return bundle.preprocess(img), made

    def compute(missing: list[str]):
        model = bundle.model.eval()
        batches = [missing[s:s + batch_size] for s in range(0, len(missing), batch_size)]
        out = []
        with ThreadPoolExecutor(max_workers=1) as pool, torch.no_grad():
            run = pool.map if crop_thread else (lambda f, xs: [f(x) for x in xs])  # (inline: profiling)
            pending = [run(tensor, batches[0])]
            for i in range(len(batches)):
                if i + 1 < len(batches):  # the next batch is cropped while this one is encoded
                    pending.append(run(tensor, batches[i + 1]))
                done = list(pending[i])
                pending[i] = None
                made = sum(m for _, m in done)
                stats["cropped"] += made
                stats["crops_cached"] += len(done) - made
                batch = torch.stack([t for t, _ in done]).to(bundle.device)
                out.append(model.encode_image(batch).float().cpu())
        stats["encoded"] += len(missing)
        return torch.cat(out)

    work = Path(jobs[0].crop).parent
    work.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache(features_dir, bundle, render_config_id="photo-crops")
    keys = [str(j.crop) for j in jobs]
    raw = cache.lookup("images", keys, compute)
    stats["encode_cached"] += cache.hits
    return apply_heads(bundle, raw, "image").numpy()


def _provenance(cfg, prepared, renders, bundle, trained, checkpoint) -> dict:
    from harness.metrics.provenance import file_sha256, git_commit, metric_impl, package_versions

    return {
        "dataset_fingerprint": getattr(prepared.dataset, "fingerprint", None),
        "split": getattr(prepared.split, "split_id", None),
        "eval_split": cfg["eval"].get("split", "test"),
        "render_config_id": getattr(renders, "config_id", None),
        "renders_fingerprint": getattr(renders, "fingerprint", None),
        "render_size": cfg["render"].get("size"), "model_input_size": bundle.image_size,
        "model": bundle.name, "pretrained": bundle.pretrained, "weights_sha256": bundle.weights_sha256,
        "train_mode": getattr(bundle, "mode", None) or cfg.get("train", {}).get("mode"),
        "pooling": cfg["model"].get("pooling"),
        "checkpoint": checkpoint, "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None,
        "metric_impl": metric_impl(), "packages": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent), "seed": cfg.get("seed", 0),
    }


def _bundle(cfg, trained):
    """The model to evaluate: the trained bundle, else the model as loaded (+ ``eval.checkpoint``)."""
    import models

    checkpoint = cfg["eval"].get("checkpoint")
    if trained is not None and not checkpoint:
        return trained.bundle, getattr(trained, "checkpoint", None)
    device = models.resolve_device(cfg["model"].get("device", "auto"))
    bundle = models.create_model(cfg["model"]["name"], cfg["model"].get("pretrained"), device=device,
                                 seed=cfg.get("seed", 0))
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


def evaluate_stage(cfg: dict, run=None, prepared=None, renders=None, trained=None,
                   reevaluation: bool = False) -> dict:
    """Evaluate on ``eval.split`` and return the run record's ``result`` (plain Python types).

    Inputs not given are produced here (data prepared, renders made/reused, model created as loaded
    or from ``eval.checkpoint``). With a Sacred ``run``: timings as metrics, per-shape scores in
    ``run.info["per_shape"]``, a retrieval-examples image and a caption table as artifacts.
    ``reevaluation``: a further evaluation of the run's model (another view count, a rotation):
    captioning is skipped unless ``eval.captioning`` is ``"always"``, and
    ``result.provenance.captioning`` says so.
    """
    import torch

    import models
    from harness.commands.train import shape_items
    from harness.metrics import java_executable, photo_ranks, retrieval_ranks
    from harness.metrics.provenance import plain

    ev = dict(cfg["eval"])
    ks = tuple(int(k) for k in ev.get("ks", (1, 5, 10)))
    resamples, seed = int(ev.get("bootstrap", 1000)), int(cfg.get("seed", 0))
    do_caption, caption_status = captioning_decision(ev.get("captioning", True), reevaluation)
    if do_caption:
        java_executable()  # missing Java fails here, before any encoding or training
    elif reevaluation:
        log.info("evaluate: captioning %s", caption_status)
    start, timings = time.perf_counter(), {}
    if prepared is None:
        from harness.data import prepare
        prepared = prepare(cfg["data"], cfg["seed"])
    if renders is None:
        from harness.commands.render import render_stage
        renders = render_stage(cfg, run=run, prepared=prepared)
    render_dir, config_id = renders.render_dir, getattr(renders, "config_id", None)
    bundle, checkpoint = _bundle(cfg, trained)
    if bundle.pooling is None and cfg["model"].get("pooling", "mean") not in ("mean", None):
        bundle.pooling = models.make_pooling(cfg["model"]["pooling"], _embed_dim(bundle)).to(bundle.device)
    features_dir = cfg.get("train", {}).get("features_dir", "runs/features")
    category_of = {s.key: s.category for s in prepared.dataset.shapes}
    split_keys = list(getattr(prepared.split, ev.get("split", "test")))
    test_items = shape_items(prepared, render_dir, split_keys)
    if not test_items:
        raise models.ConfigError(f"eval.split={ev.get('split', 'test')!r} has no rendered shapes with "
                                 f"captions under {render_dir}; render first or check the split")
    keys = [it.key for it in test_items]

    with torch.no_grad():
        encode_stats: dict = {}
        with _timer(timings, "encode_images"):
            shape_emb = models.encode_shapes(bundle, [it.views for it in test_items], cache_dir=features_dir,
                                             render_config_id=config_id, stats=encode_stats).numpy()
        n_views = sum(len(it.views) for it in test_items)
        texts = [c for it in test_items for c in it.captions]
        text_shape = [it.key for it in test_items for _ in it.captions]
        with _timer(timings, "encode_texts"):
            text_emb = models.encode_texts(bundle, texts).numpy()
    counts = {"shapes": len(keys), "texts": len(texts), "views": n_views}
    captioner = None
    if do_caption:  # the captioner's inputs now; it trains in a thread while photo→shape runs
        captioner = CaptioningJob(ev, bundle, prepared, render_dir, config_id, features_dir, test_items, seed,
                                  timings)
        captioner.start()
    photo_stats: dict = {}
    try:
        with _torch_threads(1 if captioner is not None and captioner.running and bundle.device.type == "cpu"
                            else None):
            with _timer(timings, "retrieval"):
                ranks = retrieval_ranks(shape_emb, text_emb, keys, text_shape, text_strings=texts,
                                        same_caption_match=bool(ev.get("same_caption_match", False)))
                block = retrieval_block(ranks, ks, resamples, seed, category_of)
            metrics, ci95, per_cat = block["metrics"], block["ci95"], block["per_category"]
            per_shape = block["per_shape"]
            if ev.get("photo2shape", True):
                with _timer(timings, "photo2shape"):
                    use_mask = bool(ev.get("photo_mask", True))
                    jobs = _photo_jobs(prepared, set(keys), Path(features_dir) / "photo_crops",
                                       bundle.image_size, use_mask)
                    counts["photos"] = len(jobs)
                    if jobs:
                        photo_emb = encode_photos(bundle, jobs, features_dir, use_mask, photo_stats)
                        pr = {"photo2shape": photo_ranks(photo_emb, shape_emb, [j.shape for j in jobs], keys)}
                        pblock = retrieval_block(pr, ks, resamples, seed, category_of)
                        metrics.update(pblock["metrics"])
                        ci95.update(pblock["ci95"])
                        _merge_per_category(per_cat, pblock["per_category"])
                        per_shape.update({k: v for k, v in pblock["per_shape"].items() if k != "_n"})
                        per_shape["_n"].update(pblock["per_shape"]["_n"])
        if captioner is not None and captioner.running:
            # METEOR loads its paraphrase table (seconds of JVM start-up) while the captioner still
            # trains, not while the models encode (no-op when the process's JVMs already run)
            from harness.metrics.captioning import jvm_pool
            jvm_pool().prestart()
    finally:
        if captioner is not None:
            captioner.join()

    work = Path(tempfile.mkdtemp(prefix="clip3d-eval-"))
    samples, captioner_info = {}, {}
    if captioner is not None:
        samples = captioner.finish(shape_emb, resamples, category_of, metrics, ci95, per_cat, per_shape,
                                   captioner_info)
        if not samples:
            caption_status = "skipped: no train shapes with captions for the captioners"
    if trained is not None:
        metrics.update({k: float(v) for k, v in (getattr(trained, "metrics", None) or {}).items()})

    eval_seconds = time.perf_counter() - start
    throughput = dict(getattr(trained, "throughput", None) or {})
    summary = getattr(renders, "summary", None) or {}
    # A figure only for work this run did; work taken from a cache is marked, never recorded as 0.
    if isinstance(summary, dict) and summary.get("views_per_s") is not None:
        throughput["render_views_per_s"] = float(summary["views_per_s"])
    elif isinstance(summary, dict) and summary.get("total"):
        throughput["render_from_cache"] = True
    if encode_stats.get("encoded") and timings.get("encode_images"):
        throughput["encode_images_per_s"] = encode_stats["encoded"] / timings["encode_images"]
    elif encode_stats.get("cached"):
        throughput["encode_from_cache"] = True
    if photo_stats.get("encoded") and timings.get("photo2shape"):
        throughput["photo2shape_photos_per_s"] = counts["photos"] / timings["photo2shape"]
    elif photo_stats.get("encode_cached"):
        throughput["photo_encode_from_cache"] = True
    if photo_stats and not photo_stats.get("cropped") and photo_stats.get("crops_cached"):
        throughput["photo_crops_from_cache"] = True
    if timings.get("photo2shape"):
        throughput["eval_photo2shape_share"] = timings["photo2shape"] / eval_seconds
    if captioner_info.get("from_cache"):
        throughput["captioner_from_cache"] = True
    throughput.update({"eval_seconds": eval_seconds, "device": _device_name(bundle),
                       **{f"eval_{k}_seconds": v for k, v in timings.items()}})
    provenance = {**_provenance(cfg, prepared, renders, bundle, trained, checkpoint), "counts": counts,
                  "captioning": caption_status}
    if captioner_info:
        provenance["captioner"] = captioner_info
    result = plain({"metrics": metrics, "ci95": ci95, "per_category": per_cat, "throughput": throughput,
                    "provenance": provenance})
    if run is not None:
        for name, seconds in timings.items():
            run.log_scalar(f"eval.{name}_seconds", float(seconds))
        run.info["per_shape"] = plain(per_shape_record(per_shape))
        _artifacts(run, work, test_items, top_captions(shape_emb[:4], text_emb, texts, keys[:4]), samples)
    return result


def per_shape_record(per_shape: dict) -> dict:
    """``{"shapes": [...], metric: [score per shape], "n_queries": {metric: [...]}}`` aligned lists."""
    shapes = sorted({k for name, v in per_shape.items() if name != "_n" for k in v})
    out = {"shapes": shapes, "n_queries": {}}
    for name, vals in per_shape.items():
        if name == "_n":
            continue
        out[name] = [vals.get(s, float("nan")) for s in shapes]
        direction = name.split("_", 1)[0]
        n = per_shape.get("_n", {}).get(direction)
        if n is not None:
            out["n_queries"][name] = [n.get(s, 0) for s in shapes]
    return out


def _embed_dim(bundle) -> int:
    return int(getattr(bundle.model, "embed_dim", None) or bundle.model.text_projection.shape[-1])


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Torch intra-op threads set to ``n`` inside the block (None: unchanged), restored after."""
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CaptioningJob:
    """Retrieval captioner (train caption bank) and generative captioner of one evaluation.

    ``start()`` encodes the caption bank and the train shapes (the caller's thread, timed as
    ``captioning_encode``) and trains the generative captioner — or takes it from the cache — in a
    thread of its own (``captioning_train``; absent when cached), so it runs alongside photo → shape;
    on a CPU each of the two then uses one torch thread, so they share the two cores instead of
    contending for them. ``join()`` waits for it; ``finish()`` captions the test shapes
    (``captioning_generate``, beam search over all shapes at once) and scores both captioners with the
    process's JVMs (``captioning_score``). ``captioning`` is the sum of these steps (its training
    overlaps photo → shape, so the steps add up to more than ``eval_seconds``).
    """

    def __init__(self, ev, bundle, prepared, render_dir, config_id, features_dir, test_items, seed, timings):
        self.ev, self.bundle, self.prepared, self.render_dir = ev, bundle, prepared, render_dir
        self.config_id, self.features_dir, self.test_items = config_id, features_dir, test_items
        self.seed, self.timings = seed, timings
        self.thread, self.error, self.model, self.hit, self.running = None, None, None, False, False

    def start(self) -> None:
        import models
        from harness.commands.train import shape_items
        from models.captioner import RetrievalCaptioner

        self.keys = [it.key for it in self.test_items]
        self.train_items = shape_items(self.prepared, self.render_dir, self.prepared.split.train)
        if not self.train_items:
            return
        t = time.perf_counter()
        bank = RetrievalCaptioner.bank_from_captions({it.key: it.captions for it in self.train_items},
                                                     self.keys)
        bank_emb = models.encode_texts(self.bundle, bank).numpy()
        self.retrieval = RetrievalCaptioner(bank, bank_emb)
        train_emb = models.encode_shapes(self.bundle, [it.views for it in self.train_items],
                                         cache_dir=self.features_dir, render_config_id=self.config_id).numpy()
        self.timings["captioning_encode"] = time.perf_counter() - t
        ccfg = {**CAPTIONER_DEFAULTS, **(self.ev.get("captioner") or {})}
        self.beam = int(ccfg.pop("beam_size"))
        cache_dir = Path(self.features_dir) / "captioners" if ccfg.pop("cache") else None
        captions = [list(it.captions) for it in self.train_items]
        self.thread = threading.Thread(target=self._train, args=(train_emb, captions, cache_dir, ccfg),
                                       name="captioner", daemon=True)
        self.running = True
        self.thread.start()

    def _train(self, train_emb, captions, cache_dir, ccfg) -> None:
        t = time.perf_counter()
        try:
            from models.captioner import cached_captioner

            self.model, self.hit = cached_captioner(train_emb, captions, cache_dir, seed=self.seed, **ccfg)
            if not self.hit:
                self.timings["captioning_train"] = time.perf_counter() - t
        except BaseException as exc:  # noqa: BLE001 - raised again in the evaluating thread
            self.error = exc

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.running = False

    def finish(self, shape_emb, resamples, category_of, metrics, ci95, per_cat, per_shape, info) -> dict:
        """Caption and score the test shapes; updates the result dicts; ``{}`` without train shapes."""
        from harness.metrics import captioning

        if self.thread is None:
            return {}
        self.join()
        if self.error is not None:
            raise self.error
        keys, model, timings = self.keys, self.model, self.timings
        references = {it.key: list(it.captions) for it in self.test_items}
        predictions = {"ret": dict(zip(keys, self.retrieval.caption(shape_emb), strict=True))}
        info.update({"from_cache": self.hit, "epochs_run": getattr(model, "epochs_run", None),
                     "stopped_early": getattr(model, "stopped_early", None),
                     "val_loss": getattr(model, "val_loss", None),
                     "train_loss": getattr(model, "train_loss", None), "beam_size": self.beam})
        with _timer(timings, "captioning_generate"):
            predictions["gen"] = dict(zip(keys, model.generate(shape_emb, beam_size=self.beam), strict=True))
        with _timer(timings, "captioning_score"):
            # one tokenizer JVM and one METEOR JVM for both captioners (the process's, reused)
            scored = captioning.caption_scores_many(predictions, references)
            for prefix, (scores, items) in scored.items():
                m, c, pc, ps = caption_block(scores, items, prefix, resamples, self.seed, category_of)
                metrics.update(m)
                ci95.update(c)
                _merge_per_category(per_cat, pc)
                per_shape.update(ps)
        timings["captioning"] = sum(timings.get(f"captioning_{k}", 0.0)
                                    for k in ("encode", "train", "generate", "score"))
        return {"references": references, **predictions}


def top_captions(query_emb, text_emb, texts, keys, k: int = 5) -> dict:
    """``{key: top-k caption strings}`` of a few example queries (same normalisation as the metrics)."""
    from harness.metrics import l2_normalize

    scores = l2_normalize(query_emb) @ l2_normalize(text_emb).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {key: [texts[j] for j in row] for key, row in zip(keys, order, strict=True)}


def _artifacts(run, work: Path, test_items, ranked: dict, samples: dict) -> None:
    """A retrieval-examples image and a caption table (CSV + markdown) attached to the run."""
    try:
        items = [it for it in test_items if it.key in ranked]
        path = retrieval_examples_image(work / "retrieval_examples.png", items, ranked)
        run.add_artifact(str(path), name="retrieval_examples.png")
    except OSError as exc:  # an artifact must never lose the run's figures
        run.info.setdefault("warnings", []).append(f"retrieval_examples.png not written: {exc}")
    if samples:
        csv_path, md_path = caption_table(work, samples)
        run.add_artifact(str(csv_path), name="caption_samples.csv")
        run.add_artifact(str(md_path), name="caption_samples.md")


def retrieval_examples_image(path: Path, items, ranked: dict) -> Path:
    """One row per query shape: its first view and its top-5 retrieved captions, correct ones marked."""
    from PIL import Image, ImageDraw

    thumb, line_h, width = 96, 16, 720
    img = Image.new("RGB", (width, max(1, len(items)) * (thumb + 8)), "white")
    draw = ImageDraw.Draw(img)
    for r, it in enumerate(items):
        y = r * (thumb + 8)
        img.paste(Image.open(it.views[0]).convert("RGB").resize((thumb, thumb)), (4, y + 4))
        draw.text((thumb + 12, y + 2), it.key[:100], fill=(0, 0, 0))
        for j, cap in enumerate(ranked[it.key][:5]):
            ok = cap in it.captions
            draw.text((thumb + 12, y + 4 + (j + 1) * line_h), f"{'[x]' if ok else '[ ]'} {cap}"[:100],
                      fill=(0, 128, 0) if ok else (160, 0, 0))
    img.save(path)
    return path


def caption_table(work: Path, samples: dict, n: int = 20) -> tuple[Path, Path]:
    """Sample captions against references: CSV and markdown."""
    refs = samples["references"]
    keys = list(refs)[:n]
    csv_path, md_path = work / "caption_samples.csv", work / "caption_samples.md"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["shape", "retrieval_caption", "generated_caption", "references"])
        for k in keys:
            w.writerow([k, samples.get("ret", {}).get(k, ""), samples.get("gen", {}).get(k, ""),
                        " | ".join(refs[k])])
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| shape | retrieval caption | generated caption | references |", "|---|---|---|---|"]
    ret, gen = samples.get("ret", {}), samples.get("gen", {})
    lines += [f"| {esc(k)} | {esc(ret.get(k, ''))} | {esc(gen.get(k, ''))} | {esc(' / '.join(refs[k]))} |"
              for k in keys]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path, md_path


@ex.command
def evaluate(_config, _run):
    """Evaluate ``model.name`` (``eval.checkpoint``, or as loaded: untrained / zero-shot) on eval.split."""
    from harness.config import resolve

    cfg = resolve(dict(_config))
    return evaluate_stage(cfg, run=_run)
