"""Photo → shape retrieval of one evaluation: the photo queries encoded in batches, ranked against
the shapes."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.photos import PhotoJob, crop_photo, photo_jobs
from harness.metrics import Block, photo_ranks, retrieval_block

from .context import EvalContext


@dataclass(frozen=True)
class PhotoQueries:
    """The photo queries of one evaluation: embeddings (N, D), each photo's shape and id (its image
    path relative to the dataset root), and ``encode_photos``' counts."""

    emb: np.ndarray
    shapes: list
    ids: list
    stats: dict

    def of(self, keys) -> PhotoQueries:
        """The photos of the shapes ``keys`` only (a gallery without some shapes)."""
        keep = set(keys)
        rows = [i for i, s in enumerate(self.shapes) if s in keep]
        if len(rows) == len(self.shapes):
            return self
        return PhotoQueries(self.emb[rows], [self.shapes[i] for i in rows], [self.ids[i] for i in rows],
                            self.stats)


def photo_queries(ctx: EvalContext) -> PhotoQueries:
    """The photos of ``ctx.items``' shapes, encoded (crops kept in ``<features_dir>/photo_crops/``);
    computed once per evaluation (``ctx.once``): the view sweep and the rotation reuse them."""
    def compute():
        use_mask = bool(getattr(ctx.config, "photo_mask", True))
        jobs = photo_jobs(ctx.prepared, set(ctx.keys), Path(ctx.features_dir) / "photo_crops",
                          ctx.bundle.image_size, use_mask)
        stats: dict = {}
        emb = (encode_photos(ctx.bundle, jobs, ctx.features_dir, use_mask, stats) if jobs
               else np.zeros((0, 0), dtype=np.float32))
        root = Path(ctx.prepared.root)
        ids = [str(j.img.relative_to(root)) if j.img.is_relative_to(root) else str(j.img) for j in jobs]
        return PhotoQueries(emb, [j.shape for j in jobs], ids, stats)

    return ctx.once("photos", compute).of(ctx.keys)


def photo_block(ctx: EvalContext, shape_emb: np.ndarray, photos: PhotoQueries) -> Block:
    """photo2shape figures of ``photos`` against the shapes (rows of ``shape_emb``, ``ctx.keys``)."""
    if not photos.shapes:
        return Block()
    ranks = {"photo2shape": photo_ranks(photos.emb, shape_emb, photos.shapes, ctx.keys)}
    return retrieval_block(ranks, ctx.ks, ctx.resamples, ctx.seed, ctx.category_of)


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
