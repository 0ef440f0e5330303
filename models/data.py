"""Multi-view training data: one item per shape (its rendered views and its captions).

Sampling is a pure function of (seed, epoch): every step draws one random view and one random
caption per shape, so a resumed run replays exactly the batches an uninterrupted run would see.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import ConfigError


@dataclass(frozen=True)
class ShapeItem:
    """A shape as training sees it: key (model path), category, view PNG paths, captions."""

    key: str
    category: str
    views: tuple[str, ...]
    captions: tuple[str, ...]

    def __post_init__(self):
        if not self.views:
            raise ConfigError(f"shape {self.key!r} has no rendered views; render it first")
        if not self.captions:
            raise ConfigError(f"shape {self.key!r} has no captions")


def make_items(keys: Sequence[str], views: dict[str, Sequence[str]], captions: dict[str, Sequence[str]],
               categories: dict[str, str]) -> list[ShapeItem]:
    """Build :class:`ShapeItem` s for ``keys``; shapes without views (failed renders) are skipped."""
    return [ShapeItem(k, categories[k], tuple(str(v) for v in views[k]), tuple(captions[k]))
            for k in keys if views.get(k) and captions.get(k)]


def epoch_plan(items: Sequence[ShapeItem], epoch: int, seed: int, batch_size: int,
               drop_last: bool = True) -> list[list[tuple[int, int, int]]]:
    """Batches of (item index, view index, caption index) for one epoch, from (seed, epoch) only."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(len(items), generator=gen).tolist()
    draws = torch.rand(len(items), 2, generator=gen)
    picks = [(i, int(draws[i, 0] * len(items[i].views)), int(draws[i, 1] * len(items[i].captions)))
             for i in order]
    batches = [picks[s:s + batch_size] for s in range(0, len(picks), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches = batches[:-1]
    return batches


class ImageCache:
    """Preprocessed view tensors kept in memory (renders are small and reread every epoch)."""

    def __init__(self, preprocess: Callable, max_items: int = 20000):
        self.preprocess = preprocess
        self.max_items = max_items
        self._cache: dict[str, torch.Tensor] = {}

    def warm(self, paths: Sequence[str], progress: bool = False) -> None:
        """Decode ``paths`` up front when they all fit, so training steps do no PNG decoding."""
        from tqdm.auto import tqdm

        paths = list(dict.fromkeys(paths))
        if len(paths) + len(self._cache) <= self.max_items:
            for path in tqdm(paths, desc="decode views", disable=not progress, leave=False):
                self(path)

    def __call__(self, path: str) -> torch.Tensor:
        hit = self._cache.get(path)
        if hit is None:
            with Image.open(path) as img:
                hit = self.preprocess(img.convert("RGB"))
            if len(self._cache) < self.max_items:
                self._cache[path] = hit
        return hit


class MultiViewDataset(Dataset):
    """Indexed by (item, view, caption) triples from :func:`epoch_plan`; yields (image, caption, item)."""

    def __init__(self, items: Sequence[ShapeItem], preprocess: Callable):
        self.items = list(items)
        self.load = ImageCache(preprocess)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: tuple[int, int, int]):
        i, v, c = index
        item = self.items[i]
        return self.load(item.views[v]), item.captions[c], i


class TokenCache:
    """Tokenize each distinct caption once (the BPE tokenizer is pure Python and captions repeat)."""

    def __init__(self, tokenizer: Callable):
        self.tokenizer = tokenizer
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if missing:
            self._cache.update(zip(missing, self.tokenizer(missing), strict=True))
        return torch.stack([self._cache[c] for c in captions])


def collate(batch, tokenizer: Callable):
    """Stack images, tokenize captions; keep captions and item indices for the positive mask."""
    images = torch.stack([b[0] for b in batch])
    captions = [b[1] for b in batch]
    return images, tokenizer(captions), captions, [b[2] for b in batch]
