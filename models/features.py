"""Encoding images, texts and shape views, with an on-disk feature cache.

The cache lives under ``<root>/<model>-<weights hash>/<render config id>/`` so that a change of
model, of weights (training) or of any rendering knob never reuses stale features; inside it an image
is keyed by its path *and* its file's size and mtime, so a view rendered again in place (its mesh
changed) is encoded again.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import ImageCache
from .pooling import pool_views
from .registry import ClipBundle, state_sha256


@torch.no_grad()
def _raw_images(bundle: ClipBundle, paths: Sequence[str], batch_size: int, progress: bool) -> torch.Tensor:
    load = ImageCache(bundle.preprocess, max_items=0)
    model = bundle.model.eval()
    out = []
    for s in tqdm(range(0, len(paths), batch_size), desc="encode images", disable=not progress,
                  leave=False):
        batch = torch.stack([load(p) for p in paths[s:s + batch_size]]).to(bundle.device)
        out.append(model.encode_image(batch).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


@torch.no_grad()
def _raw_texts(bundle: ClipBundle, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    model = bundle.model.eval()
    out = [model.encode_text(bundle.tokenizer(list(texts[s:s + batch_size])).to(bundle.device)).float().cpu()
           for s in range(0, len(texts), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, 0)


@torch.no_grad()
def apply_heads(bundle: ClipBundle, features: torch.Tensor, kind: str) -> torch.Tensor:
    """Apply the linear head (mode ``linear``) of ``kind`` (image|text) when present; L2-normalise."""
    if bundle.heads is not None:
        head = getattr(bundle.heads, kind)
        features = head(features.to(next(head.parameters()).device)).cpu()
    return F.normalize(features.float(), dim=-1)


def encode_images(bundle: ClipBundle, paths: Sequence[str], batch_size: int = 64, raw: bool = False,
                  progress: bool = False) -> torch.Tensor:
    """(N, D) L2-normalised image embeddings of image files (``raw``: tower output, no head, no norm)."""
    feats = _raw_images(bundle, [str(p) for p in paths], batch_size, progress)
    return feats if raw else apply_heads(bundle, feats, "image")


def encode_texts(bundle: ClipBundle, texts: Sequence[str], batch_size: int = 256, raw: bool = False,
                 cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """(N, D) L2-normalised text embeddings (``cache_dir``: reuse/extend the on-disk text cache)."""
    texts = list(texts)
    if cache_dir is None:
        feats = _raw_texts(bundle, texts, batch_size)
    else:
        cache = FeatureCache(cache_dir, bundle)
        feats = cache.lookup("texts", texts, lambda missing: _raw_texts(bundle, missing, batch_size))
    return feats if raw else apply_heads(bundle, feats, "text")


class FeatureCache:
    """Raw tower outputs on disk, keyed by (model, weights hash, render config id) and then by input.

    A file holds ``{"format": 2, "keys": [...], "features": (N, D) tensor}`` (one tensor loads in
    milliseconds where the former dict of one tensor per key took 0.6 s per 5k views; that format is
    still read, and rewritten in this one on the next addition). A file read or written by this process
    is kept in memory while its (size, mtime) stamp is unchanged, so the lookups of one evaluation (its
    views, the train views, the probe's) read it once; another process's write changes the stamp and
    it is read again.
    """

    def __init__(self, root: str | os.PathLike, bundle: ClipBundle, render_config_id: str | None = None):
        safe = bundle.name.replace("/", "_").replace(":", "_")
        self.dir = Path(root) / f"{safe}-{state_sha256(bundle.model)[:16]}"
        self.render_config_id = render_config_id

    def _file(self, kind: str) -> Path:
        if kind == "images":
            return self.dir / (self.render_config_id or "no-render-id") / "images.pt"
        return self.dir / "texts.pt"

    def lookup(self, kind: str, keys: Sequence[str], compute) -> torch.Tensor:
        """Features for ``keys``: loaded when cached, computed (and appended to the file) when not.

        A key ``"<name>\\0<version>"`` replaces the stored features of older versions of ``<name>``.
        """
        path = self._file(kind)
        with _MEMO_LOCK:
            stored = _read(path)
        missing = list(dict.fromkeys(k for k in keys if k not in stored.index))
        if missing:
            new = compute(missing).float()  # (not under the lock: encoding takes a while)
            renewed = {k.split("\0", 1)[0] for k in missing if "\0" in k}
            with _MEMO_LOCK:  # read again: another thread or process may have added entries since
                stored = _read(path).without(renewed).plus(missing, new)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
                torch.save({"format": 2, "keys": stored.keys, "features": stored.features}, tmp)
                os.replace(tmp, path)  # atomic: concurrent readers never see a half-written file
                _remember(path, stored)
        self.hits, self.misses = len(keys) - len(missing), len(missing)
        if not keys:
            return torch.zeros(0, 0)
        return stored.features[[stored.index[k] for k in keys]]


class _Stored:
    """One cache file's keys and (N, D) features, with a key -> row index."""

    def __init__(self, keys: list[str], features: torch.Tensor | None):
        self.keys, self.features = keys, features
        self.index = {k: i for i, k in enumerate(keys)}

    def without(self, names: set[str]) -> _Stored:
        """Without the entries of these file names (their older versions)."""
        if not names or not self.keys:
            return self
        rows = [i for i, k in enumerate(self.keys) if k.split("\0", 1)[0] not in names]
        if len(rows) == len(self.keys):
            return self
        return _Stored([self.keys[i] for i in rows], self.features[rows])

    def plus(self, keys: list[str], features: torch.Tensor) -> _Stored:
        """With these entries added (keys it holds already keep their features)."""
        rows = [i for i, k in enumerate(keys) if k not in self.index]
        keys, features = [keys[i] for i in rows], features.detach().cpu()[rows].contiguous()
        if self.features is None or not self.keys:
            return _Stored(list(keys), features)
        return _Stored(self.keys + list(keys), torch.cat([self.features, features]))


_MEMO_LOCK = threading.RLock()
_MEMO: OrderedDict[Path, tuple[tuple[int, int], _Stored]] = OrderedDict()
_MEMO_FILES = 6  # the most cache files kept in memory (an evaluation uses up to four)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


def _remember(path: Path, stored: _Stored) -> None:
    stamp = _stamp(path)
    if stamp is not None:
        _MEMO[path] = (stamp, stored)
        _MEMO.move_to_end(path)
        while len(_MEMO) > _MEMO_FILES:
            _MEMO.popitem(last=False)


def _read(path: Path) -> _Stored:
    """The cache file's contents: from memory while its stamp is the one this process last saw."""
    stamp = _stamp(path)
    if stamp is None:
        return _Stored([], None)
    hit = _MEMO.get(path)
    if hit is not None and hit[0] == stamp:
        _MEMO.move_to_end(path)
        return hit[1]
    blob = torch.load(path, weights_only=True)
    if isinstance(blob, dict) and blob.get("format") == 2:
        stored = _Stored(list(blob["keys"]), blob["features"])
    else:  # the former format: {key: feature tensor}
        keys = list(blob)
        stored = _Stored(keys, torch.stack([blob[k] for k in keys]).float() if keys else None)
    _remember(path, stored)
    return stored


def _file_key(path: str) -> str:
    """Cache key of an image file: its path and a stamp of its current bytes (size, mtime)."""
    st = os.stat(path)
    return f"{path}\0{st.st_size}:{st.st_mtime_ns}"


def encode_views(bundle: ClipBundle, views: Sequence[Sequence[str]],
                 cache_dir: str | os.PathLike | None = None,
                 render_config_id: str | None = None, batch_size: int = 64, raw: bool = False,
                 progress: bool = False, stats: dict | None = None) -> torch.Tensor:
    """(S, V, D) view embeddings of S shapes (lists of view files), through the feature cache.

    Shapes with fewer views (a failed view) are padded by repeating their last view.
    ``raw``: tower outputs without head or normalisation (what the cache stores).
    ``stats``: a dict whose ``encoded`` / ``cached`` counts of images are increased (throughput
    figures count encoded images only: a cache read is not an encoding speed).
    """
    n_views = max(len(v) for v in views) if views else 0
    padded = [list(v) + [v[-1]] * (n_views - len(v)) for v in views]
    flat = [str(Path(p).resolve()) for v in padded for p in v]
    if cache_dir is None:
        feats = _raw_images(bundle, flat, batch_size, progress)
        hits, misses = 0, len(flat)
    else:
        cache = FeatureCache(cache_dir, bundle, render_config_id)
        keys = [_file_key(p) for p in flat]
        feats = cache.lookup("images", keys, lambda missing: _raw_images(
            bundle, [k.split("\0", 1)[0] for k in missing], batch_size, progress))
        hits, misses = cache.hits, cache.misses
    if stats is not None:
        stats["encoded"] = stats.get("encoded", 0) + misses
        stats["cached"] = stats.get("cached", 0) + hits
    if not raw:
        feats = apply_heads(bundle, feats, "image")
    return feats.view(len(views), n_views, -1)


def encode_shapes(bundle: ClipBundle, views: Sequence[Sequence[str]], **kwargs) -> torch.Tensor:
    """(S, D) shape embeddings: view embeddings pooled with ``bundle.pooling`` (mean when unset)."""
    return pool_views(encode_views(bundle, views, **kwargs), bundle.pooling)
