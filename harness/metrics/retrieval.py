"""Cross-modal retrieval metrics with multiple positives per query, computed blockwise.

Every query (an image or a text) is ranked against the whole gallery of the other modality. A query
may have several correct items (a shape has several captions; with ``same_caption_match`` every text
carrying a caption string of the shape counts too). For each query we compute the rank of every
positive in one pass over the gallery — never a dense ``(Q, G)`` argsort — so 50k x 50k runs in a
few hundred MB.

Ranking convention (deterministic and pessimistic): items are ordered by score descending; among
items with *equal* scores the negatives come first, then positives by gallery index. A degenerate
model that scores everything the same therefore gets the worst possible ranks, never a recall that
depends on the order in which the gallery happens to be stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DEFAULT_KS = (1, 5, 10)
DEFAULT_BLOCK_BYTES = 256 * 2**20  # budget for one block's score + mask temporaries


class RetrievalInputError(ValueError):
    """Embeddings or keys handed to a retrieval metric are inconsistent."""


@dataclass
class QueryRanks:
    """Per-query results of one retrieval direction.

    ``first_rank``: 1-based rank of the best-ranked positive (``inf`` when a query has none);
    ``ap``: average precision over all positives; ``keys``: the query's shape key (bootstrap groups).
    """

    first_rank: np.ndarray
    ap: np.ndarray
    keys: np.ndarray
    n_positives: np.ndarray = field(default=None)

    def select(self, mask: np.ndarray) -> QueryRanks:
        """The subset of queries where ``mask`` is true (e.g. one category)."""
        return QueryRanks(self.first_rank[mask], self.ap[mask], self.keys[mask],
                          None if self.n_positives is None else self.n_positives[mask])


def l2_normalize(x) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise RetrievalInputError(f"embeddings must be 2-D (N, D), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _positive_lists(query_groups: list[np.ndarray], gallery_labels: np.ndarray):
    """CSR positives: query q matches gallery items whose label is in ``query_groups[q]``."""
    order = np.argsort(gallery_labels, kind="stable")
    sorted_labels = gallery_labels[order]
    indptr = [0]
    chunks = []
    for groups in query_groups:
        lo = np.searchsorted(sorted_labels, groups, side="left")
        hi = np.searchsorted(sorted_labels, groups, side="right")
        parts = [order[a:b] for a, b in zip(lo, hi, strict=True)]
        idx = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        chunks.append(idx)
        indptr.append(indptr[-1] + len(idx))
    indices = np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, np.int64)
    return np.asarray(indptr, dtype=np.int64), indices


def rank_positives(queries: np.ndarray, gallery: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                   block_bytes: int = DEFAULT_BLOCK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """First-positive rank and average precision of every query, computed block by block.

    ``queries`` (Q, D) and ``gallery`` (G, D) are already normalised; the positives of query ``q``
    are ``indices[indptr[q]:indptr[q + 1]]``. Peak extra memory is about ``block_bytes``.
    """
    nq, ng = len(queries), len(gallery)
    first = np.full(nq, np.inf)
    ap = np.zeros(nq)
    n_pos = np.diff(indptr)
    # Per block: scores (4 B) + positive mask (1 B) + two comparison temporaries (1 B each) per pair.
    block = int(max(1, min(nq, block_bytes // max(1, ng * 8))))
    gallery_t = np.ascontiguousarray(gallery.T)
    for start in range(0, nq, block):
        stop = min(nq, start + block)
        rows = np.arange(start, stop)
        scores = queries[start:stop] @ gallery_t  # (B, G) float32
        counts = n_pos[start:stop]
        p_max = int(counts.max()) if len(counts) else 0
        if p_max == 0:
            continue
        # Dense (B, P) table of positive gallery indices, padded with -1.
        pos = np.full((stop - start, p_max), -1, dtype=np.int64)
        for r, q in enumerate(rows):
            a, b = indptr[q], indptr[q + 1]
            pos[r, : b - a] = indices[a:b]
        is_pos = np.zeros(scores.shape, dtype=bool)
        rr, cc = np.nonzero(pos >= 0)
        is_pos[rr, pos[rr, cc]] = True
        ranks = np.full((stop - start, p_max), np.inf)
        local = np.arange(stop - start)
        for p in range(p_max):
            valid = pos[:, p] >= 0
            if not valid.any():
                continue
            sub = local[valid]
            s = scores[sub]
            j = pos[sub, p]
            sp = s[np.arange(len(sub)), j][:, None]
            above = (s > sp).sum(axis=1)
            ties = s == sp
            tie_count = ties.sum(axis=1)
            rank = above + 1
            tied = np.nonzero(tie_count > 1)[0]
            if len(tied):
                # Tied negatives rank before the positive; tied positives keep gallery-index order.
                t = ties[tied]
                neg_tied = (t & ~is_pos[sub[tied]]).sum(axis=1)
                gidx = np.arange(ng)[None, :]
                pos_before = (t & is_pos[sub[tied]] & (gidx < j[tied][:, None])).sum(axis=1)
                rank[tied] += neg_tied + pos_before
            ranks[sub, p] = rank
        ranks.sort(axis=1)  # inf padding goes last
        first[start:stop] = ranks[:, 0]
        m = np.arange(1, p_max + 1)[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = np.where(np.isfinite(ranks), m / ranks, 0.0)
        ap[start:stop] = prec.sum(axis=1) / np.maximum(counts, 1)
    return first, ap


def summarize(ranks: QueryRanks, ks=DEFAULT_KS, prefix: str = "") -> dict:
    """R@k (any positive in the top k), mAP and medR (median first-positive rank) as plain floats."""
    out = {}
    for k in ks:
        hits = ranks.first_rank <= k
        out[f"{prefix}R@{k}"] = float(np.mean(hits)) if len(hits) else float("nan")
    out[f"{prefix}mAP"] = float(np.mean(ranks.ap)) if len(ranks.ap) else float("nan")
    out[f"{prefix}medR"] = float(np.median(ranks.first_rank)) if len(ranks.first_rank) else float("nan")
    return out


def _check(emb, keys, what):
    emb = l2_normalize(emb)
    keys = np.asarray(keys)
    if keys.ndim != 1 or len(keys) != len(emb):
        raise RetrievalInputError(
            f"{what}: {len(emb)} embeddings but {keys.shape} keys; give one shape key per embedding row")
    return emb, keys


def _labelled_pair(a_emb, a_keys, a_args, b_emb, b_keys, b_args):
    """Check two embedding sets of equal width; integer labels over the union of their shape keys.

    a_args/b_args: the argument names for error messages, e.g. "image_emb/image_shape".
    """
    a, a_keys = _check(a_emb, a_keys, a_args)
    b, b_keys = _check(b_emb, b_keys, b_args)
    if a.shape[1] != b.shape[1]:
        a_name, b_name = a_args.split("_")[0], b_args.split("_")[0]
        raise RetrievalInputError(f"{a_name} dim {a.shape[1]} != {b_name} dim {b.shape[1]}")
    _, inv = np.unique(np.concatenate([a_keys.astype(str), b_keys.astype(str)]), return_inverse=True)
    return a, a_keys, inv[: len(a_keys)], b, b_keys, inv[len(a_keys):]


def retrieval_ranks(image_emb, text_emb, image_shape, text_shape, text_strings=None,
                    same_caption_match: bool = False,
                    block_bytes: int = DEFAULT_BLOCK_BYTES) -> dict[str, QueryRanks]:
    """Per-query ranks for both directions: ``{"i2t": QueryRanks, "t2i": QueryRanks}``.

    An image matches every text of the same shape. With ``same_caption_match`` (needs
    ``text_strings``) it also matches every text whose caption string equals one of its shape's
    captions, and a text query matches every image of every shape that carries its string.
    """
    img, img_keys, img_lab, txt, txt_keys, txt_lab = _labelled_pair(
        image_emb, image_shape, "image_emb/image_shape", text_emb, text_shape, "text_emb/text_shape")
    if same_caption_match:
        if text_strings is None or len(text_strings) != len(txt_keys):
            raise RetrievalInputError(
                "same_caption_match=True needs text_strings: one caption string per text embedding")
        _, str_id = np.unique(np.asarray(text_strings, dtype=str), return_inverse=True)
        # shape label -> caption string ids it carries; string id -> shape labels carrying it.
        strings_of = {}
        shapes_of = {}
        for lab, sid in zip(txt_lab, str_id, strict=True):
            strings_of.setdefault(lab, set()).add(sid)
            shapes_of.setdefault(sid, set()).add(lab)
        i2t_groups = [np.array(sorted(strings_of.get(lab, ())), dtype=np.int64) for lab in img_lab]
        i2t_ptr, i2t_idx = _positive_lists(i2t_groups, str_id)
        t2i_groups = [np.array(sorted(shapes_of[sid] | {lab}), dtype=np.int64)
                      for lab, sid in zip(txt_lab, str_id, strict=True)]
    else:
        i2t_ptr, i2t_idx = _positive_lists([np.array([lab]) for lab in img_lab], txt_lab)
        t2i_groups = [np.array([lab]) for lab in txt_lab]
    t2i_ptr, t2i_idx = _positive_lists(t2i_groups, img_lab)
    first, ap = rank_positives(img, txt, i2t_ptr, i2t_idx, block_bytes)
    i2t = QueryRanks(first, ap, img_keys, np.diff(i2t_ptr))
    first, ap = rank_positives(txt, img, t2i_ptr, t2i_idx, block_bytes)
    t2i = QueryRanks(first, ap, txt_keys, np.diff(t2i_ptr))
    return {"i2t": i2t, "t2i": t2i}


def evaluate_retrieval(image_emb, text_emb, image_shape, text_shape, ks=DEFAULT_KS, text_strings=None,
                       same_caption_match: bool = False, block_bytes: int = DEFAULT_BLOCK_BYTES) -> dict:
    """Image↔text retrieval metrics: i2t_/t2i_ R@k, mAP, medR (plain floats).

    An image matches every text of the same shape (multi-positive); a query scores a hit at k when
    any positive is in its top k. Embeddings are L2-normalised here. See ``retrieval_ranks``.
    """
    ranks = retrieval_ranks(image_emb, text_emb, image_shape, text_shape, text_strings,
                            same_caption_match, block_bytes)
    out = {}
    for direction, r in ranks.items():
        out.update(summarize(r, ks, prefix=f"{direction}_"))
    return out


def photo_ranks(photo_emb, shape_emb, photo_shape, shape_keys,
                block_bytes: int = DEFAULT_BLOCK_BYTES) -> QueryRanks:
    """Per-photo ranks of its own shape among all gallery shapes (Pix3D's photo → shape task)."""
    photo, photo_keys, photo_lab, shapes, _, gallery_lab = _labelled_pair(
        photo_emb, photo_shape, "photo_emb/photo_shape", shape_emb, shape_keys, "shape_emb/shape_keys")
    ptr, idx = _positive_lists([np.array([lab]) for lab in photo_lab], gallery_lab)
    first, ap = rank_positives(photo, shapes, ptr, idx, block_bytes)
    return QueryRanks(first, ap, photo_keys, np.diff(ptr))


def photo_to_shape(photo_emb, shape_emb, photo_shape, shape_keys, ks=DEFAULT_KS,
                   block_bytes: int = DEFAULT_BLOCK_BYTES) -> dict:
    """photo2shape_R@k, photo2shape_mAP, photo2shape_medR: photos query pooled shape embeddings."""
    return summarize(photo_ranks(photo_emb, shape_emb, photo_shape, shape_keys, block_bytes), ks,
                     prefix="photo2shape_")


def per_category(ranks: dict[str, QueryRanks], category_of: dict, ks=DEFAULT_KS) -> dict:
    """``{category: {metric: value}}`` — each query counted in its shape's category (full gallery)."""
    out: dict[str, dict] = {}
    for direction, r in ranks.items():
        cats = np.array([category_of.get(str(k), "unknown") for k in r.keys.astype(str)])
        for cat in sorted(set(cats)):
            out.setdefault(str(cat), {}).update(summarize(r.select(cats == cat), ks, prefix=f"{direction}_"))
    return out
