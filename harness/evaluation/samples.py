"""Per-query logs of one evaluation (``eval.log_samples=True``; lm-evaluation-harness's ``--log_samples``).

One JSON line per query of every retrieval direction and of zero-shot classification, gzipped (the
run's ``samples.jsonl.gz`` artifact): ``{"task": "i2t" | "t2i" | "photo2shape" | "zs", "query": id,
"category": its shape's category,
"rank": rank of its first positive (pessimistic ties, as the metrics; null: no positive),
"top": [[id, score], ...] (the 10 best, ties by gallery order), "zs_pred": zero-shot class}``
(+ ``"text"`` for caption queries; ``zs_pred`` for shape and photo queries; a ``zs`` line ranks the
class names for one shape, ``rank`` being its true class's). Caption queries only where captions
describe the shapes (``tasks.text_view``). Ids: a shape's key, a
caption's ``<shape key>#<index among its captions>``, a photo's image path relative to the dataset
root. A metric is re-scored from the log without running anything (:func:`read_samples`), e.g.
R@1 = share of a task's lines with ``rank == 1``.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from harness.metrics import l2_normalize, photo_ranks, retrieval_ranks, true_item_ranks

from .context import EvalContext
from .photos import photo_queries
from .tasks import text_view

TOP = 10


def _lines(task, query_ids, queries, gallery_ids, gallery, ranks, extra) -> list[dict]:
    scores = l2_normalize(queries) @ l2_normalize(gallery).T
    k = min(TOP, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = []
    for i, qid in enumerate(query_ids):
        rank = ranks[i]
        out.append({"task": task, "query": qid, **extra(i), "rank": int(rank) if np.isfinite(rank) else None,
                    "top": [[gallery_ids[j], round(float(scores[i, j]), 6)] for j in top[i]]})
    return out


def _text_ids(text_shape) -> list[str]:
    counter: dict[str, int] = {}
    ids = []
    for key in text_shape:
        ids.append(f"{key}#{counter.get(key, 0)}")
        counter[key] = counter.get(key, 0) + 1
    return ids


def sample_log(ctx: EvalContext, enc) -> list[dict]:
    """Every query's line (see the module doc) for the evaluation's embeddings ``enc``."""
    cat = ctx.category_of
    names, class_emb = ctx.memo.get("classes", (None, None))

    def predicted(emb):
        if class_emb is None or not len(emb):
            return [None] * len(emb)
        return [names[j] for j in np.argmax(l2_normalize(emb) @ class_emb.T, axis=1)]

    lines = []
    text = text_view(ctx, enc)  # caption queries only where captions describe the shapes
    if text is not None:
        tctx, tenc = text
        text_ids = _text_ids(tenc.text_shape)
        ranks = retrieval_ranks(tenc.shapes, tenc.texts, tctx.keys, tenc.text_shape,
                                text_strings=tenc.text_strings,
                                same_caption_match=bool(getattr(ctx.config, "same_caption_match", False)))
        shape_pred = predicted(tenc.shapes)
        lines += _lines("i2t", tctx.keys, tenc.shapes, text_ids, tenc.texts, ranks["i2t"].first_rank,
                        lambda i: {"category": cat[tctx.keys[i]], "zs_pred": shape_pred[i]})
        lines += _lines("t2i", text_ids, tenc.texts, tctx.keys, tenc.shapes, ranks["t2i"].first_rank,
                        lambda i: {"category": cat[tenc.text_shape[i]], "text": tenc.text_strings[i]})
    if class_emb is not None:  # every shape against the class prompts (ModelNet's only protocol)
        labels = np.array([names.index(cat[k]) for k in ctx.keys])
        ranks = true_item_ranks(enc.shapes, class_emb, labels)
        lines += _lines("zs", ctx.keys, enc.shapes, names, class_emb, ranks,
                        lambda i: {"category": cat[ctx.keys[i]]})
    if getattr(ctx.config, "photo2shape", False):
        photos = photo_queries(ctx)
        if photos.shapes:
            first = photo_ranks(photos.emb, enc.shapes, photos.shapes, ctx.keys).first_rank
            photo_pred = predicted(photos.emb)
            lines += _lines("photo2shape", photos.ids, photos.emb, ctx.keys, enc.shapes, first,
                            lambda i: {"category": cat[photos.shapes[i]], "zs_pred": photo_pred[i]})
    return lines


def write_samples(path: Path, lines: list[dict]) -> Path:
    """``lines`` as gzipped JSON lines at ``path``."""
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def read_samples(path) -> list[dict]:
    """The lines of a ``samples.jsonl.gz`` artifact (e.g. fetched with ``runstore``'s artifact access)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
