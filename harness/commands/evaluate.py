"""The ``evaluate`` command and stage: a model (trained, from a checkpoint, or as loaded) on the test split.

``python -m harness evaluate with tiny model.name=clip3d-tiny eval.checkpoint=runs/checkpoints/<key>/best.pt``
records image↔text retrieval, photo → shape retrieval, captioning (retrieval + generative captioner),
bootstrap 95 % CIs over test shapes, per-category figures, throughput and provenance as the run's
``result``; per-shape scores for paired comparisons go to ``run.info["per_shape"]``.
"""
from __future__ import annotations

import csv
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.experiment import ex

# Which per-query values a metric is computed from, and how they are aggregated (for the CIs).
HEADLINE = ("R@1", "R@5", "R@10", "mAP", "medR")
CAPTIONER_DEFAULTS = dict(epochs=30, beam_size=3, d_model=128, layers=2, prefix_len=4, lr=2e-3, batch_size=64)


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


def _photo_queries(prepared, keys: set, work: Path, size: int, use_mask: bool):
    """Crops of the photos of ``keys`` written under ``work``; ``(paths, shape keys)``."""
    root = Path(getattr(prepared, "root", "."))
    paths, shapes = [], []
    for photo in getattr(prepared.dataset, "photos", []) or []:
        key, img, bbox, mask = _photo_fields(photo)
        if key not in keys or img is None:
            continue
        img_path = Path(img) if Path(img).is_absolute() else root / img
        if not img_path.is_file():
            continue
        mask_path = None if mask is None else (Path(mask) if Path(mask).is_absolute() else root / mask)
        # the sources' size and mtime are in the name: a replaced photo or mask is cropped again
        stamps = [(st.st_size, st.st_mtime_ns) for st in (p.stat() for p in (img_path, mask_path)
                                                          if p is not None and p.is_file())]
        name = hashlib.sha1(f"{img_path}|{mask_path}|{stamps}|{bbox}|{use_mask}|{size}".encode()
                            ).hexdigest()[:16] + ".png"
        out = work / name
        if not out.is_file():
            crop_photo(img_path, bbox, mask_path, size, use_mask).save(out)
        paths.append(str(out))
        shapes.append(key)
    return paths, shapes


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


def evaluate_stage(cfg: dict, run=None, prepared=None, renders=None, trained=None) -> dict:
    """Evaluate on ``eval.split`` and return the run record's ``result`` (plain Python types).

    Inputs not given are produced here (data prepared, renders made/reused, model created as loaded
    or from ``eval.checkpoint``). With a Sacred ``run``: timings as metrics, per-shape scores in
    ``run.info["per_shape"]``, a retrieval-examples image and a caption table as artifacts.
    """
    import torch

    import models
    from harness.commands.train import shape_items
    from harness.metrics import java_executable, photo_ranks, retrieval_ranks
    from harness.metrics.provenance import plain

    ev = dict(cfg["eval"])
    ks = tuple(int(k) for k in ev.get("ks", (1, 5, 10)))
    resamples, seed = int(ev.get("bootstrap", 1000)), int(cfg.get("seed", 0))
    if ev.get("captioning", True):
        java_executable()  # missing Java fails here, before any encoding or training
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
    with _timer(timings, "retrieval"):
        ranks = retrieval_ranks(shape_emb, text_emb, keys, text_shape, text_strings=texts,
                                same_caption_match=bool(ev.get("same_caption_match", False)))
        block = retrieval_block(ranks, ks, resamples, seed, category_of)
    metrics, ci95, per_cat = block["metrics"], block["ci95"], block["per_category"]
    per_shape = block["per_shape"]
    counts = {"shapes": len(keys), "texts": len(texts), "views": n_views}

    work = Path(tempfile.mkdtemp(prefix="clip3d-eval-"))
    if ev.get("photo2shape", True):
        with _timer(timings, "photo2shape"):
            photo_dir = Path(features_dir) / "photo_crops"
            photo_dir.mkdir(parents=True, exist_ok=True)
            paths, photo_keys = _photo_queries(prepared, set(keys), photo_dir, bundle.image_size,
                                               bool(ev.get("photo_mask", True)))
            counts["photos"] = len(paths)
            if paths:
                photo_emb = models.encode_images(bundle, paths).numpy()
                pr = {"photo2shape": photo_ranks(photo_emb, shape_emb, photo_keys, keys)}
                pblock = retrieval_block(pr, ks, resamples, seed, category_of)
                metrics.update(pblock["metrics"])
                ci95.update(pblock["ci95"])
                _merge_per_category(per_cat, pblock["per_category"])
                per_shape.update({k: v for k, v in pblock["per_shape"].items() if k != "_n"})
                per_shape["_n"].update(pblock["per_shape"]["_n"])

    samples = {}
    if ev.get("captioning", True):
        samples = _captioning(cfg, ev, bundle, prepared, render_dir, config_id, features_dir, test_items,
                              shape_emb, resamples, seed, category_of, metrics, ci95, per_cat, per_shape,
                              timings)
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
    throughput.update({"eval_seconds": eval_seconds, "device": _device_name(bundle),
                       **{f"eval_{k}_seconds": v for k, v in timings.items()}})
    result = plain({"metrics": metrics, "ci95": ci95, "per_category": per_cat, "throughput": throughput,
                    "provenance": {**_provenance(cfg, prepared, renders, bundle, trained, checkpoint),
                                   "counts": counts}})
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


def _captioning(cfg, ev, bundle, prepared, render_dir, config_id, features_dir, test_items, shape_emb,
                resamples, seed, category_of, metrics, ci95, per_cat, per_shape, timings) -> dict:
    """Retrieval captioner (train caption bank) and generative captioner; updates the result dicts."""
    import models
    from harness.commands.train import shape_items
    from harness.metrics import captioning
    from models.captioner import RetrievalCaptioner, train_captioner

    keys = [it.key for it in test_items]
    references = {it.key: list(it.captions) for it in test_items}
    train_items = shape_items(prepared, render_dir, prepared.split.train)
    if not train_items:
        return {}
    with _timer(timings, "captioning"):
        bank = RetrievalCaptioner.bank_from_captions({it.key: it.captions for it in train_items}, keys)
        bank_emb = models.encode_texts(bundle, bank).numpy()
        ret = RetrievalCaptioner(bank, bank_emb).caption(shape_emb)
        predictions = {"ret": dict(zip(keys, ret, strict=True))}
        train_emb = models.encode_shapes(bundle, [it.views for it in train_items], cache_dir=features_dir,
                                         render_config_id=config_id).numpy()
        ccfg = {**CAPTIONER_DEFAULTS, **(ev.get("captioner") or {})}
        beam = int(ccfg.pop("beam_size"))
        gen_model = train_captioner(train_emb, [list(it.captions) for it in train_items], seed=seed, **ccfg)
        predictions["gen"] = dict(zip(keys, gen_model.generate(shape_emb, beam_size=beam), strict=True))
        # one tokenizer JVM and one METEOR JVM for both captioners
        scored = captioning.caption_scores_many(predictions, references)
        for prefix, (scores, items) in scored.items():
            m, c, pc, ps = caption_block(scores, items, prefix, resamples, seed, category_of)
            metrics.update(m)
            ci95.update(c)
            _merge_per_category(per_cat, pc)
            per_shape.update(ps)
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
