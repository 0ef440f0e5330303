"""The evaluation's tasks, one registry entry each: an ``EvalContext`` and the ``Encoded`` embeddings in,
a ``harness.metrics.Block`` out.

The evaluate stage encodes the shapes and captions once, then runs every wanted task in registry
order (:func:`score`). Tasks marked ``sweep`` are cheap given the embeddings (a few matrix products)
and are scored again for each ``eval.views`` count and ``eval.rotation`` (``harness.evaluation.sweeps``);
the probe (it trains a classifier) and captioning (a job of its own: ``captioning.py``) are not.
Adding a protocol is one function and one entry here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from harness.metrics import Block, retrieval_block, retrieval_ranks, text_to_shape_block
from registries import Registry

from .context import EvalContext
from .photos import photo_block, photo_queries
from .probe import probe_block
from .zero_shot import zero_shot_task


@dataclass(frozen=True)
class Encoded:
    """What the tasks score: pooled shape embeddings (rows = ``ctx.keys``) and caption embeddings
    (``text_shape[i]`` is the shape of caption ``text_strings[i]``)."""

    shapes: np.ndarray
    texts: np.ndarray
    text_strings: list
    text_shape: list

    def with_shapes(self, shapes: np.ndarray) -> Encoded:
        """The same captions against other embeddings of the same shapes (fewer views, rotated)."""
        return replace(self, shapes=shapes)

    def restricted(self, keys) -> Encoded:
        """Only the captions of the shapes ``keys`` (a rotation whose render failed for some shapes)."""
        keep = set(keys)
        rows = [i for i, k in enumerate(self.text_shape) if k in keep]
        return replace(self, texts=self.texts[rows], text_strings=[self.text_strings[i] for i in rows],
                       text_shape=[self.text_shape[i] for i in rows])

    def subset(self, rows: list[int], keys: list) -> Encoded:
        """The shapes at ``rows`` (whose keys are ``keys``) and their captions only."""
        return replace(self.restricted(keys), shapes=self.shapes[rows])


@dataclass(frozen=True)
class Task:
    """``run(ctx, encoded) -> Block``; ``wanted(eval config)``: whether this evaluation runs it;
    ``step``: its ``eval_<step>_seconds`` figure; ``sweep``: scored again per view count and rotation."""

    run: Callable[[EvalContext, Encoded], Block]
    step: str
    wanted: Callable = lambda ev: True
    sweep: bool = True
    texts: bool = False  # scored on the shapes whose captions describe them (``text_view``)


def _retrieval(ctx: EvalContext, enc: Encoded) -> Block:
    ranks = retrieval_ranks(enc.shapes, enc.texts, ctx.keys, enc.text_shape, text_strings=enc.text_strings,
                            same_caption_match=bool(getattr(ctx.config, "same_caption_match", False)))
    return retrieval_block(ranks, ctx.ks, ctx.resamples, ctx.seed, ctx.category_of)


def _text_to_shape(ctx: EvalContext, enc: Encoded) -> Block:
    return text_to_shape_block(enc.texts, enc.shapes, enc.text_shape, ctx.keys, ctx.resamples, ctx.seed,
                               ctx.category_of)


def _photo2shape(ctx: EvalContext, enc: Encoded) -> Block:
    return photo_block(ctx, enc.shapes, photo_queries(ctx))


def _probe(ctx: EvalContext, enc: Encoded) -> Block:
    block, info = probe_block(ctx)
    ctx.provenance["probe"] = info
    return block


TASKS = Registry("eval task", {
    "retrieval": Task(_retrieval, "retrieval", texts=True),  # i2t / t2i Recall@K, mAP
    "text_to_shape": Task(_text_to_shape, "retrieval", texts=True),  # Text2Shape's RR@1, RR@5, NDCG@5
    "photo2shape": Task(_photo2shape, "photo2shape", wanted=lambda ev: bool(ev.photo2shape)),
    "zero_shot": Task(zero_shot_task, "zero_shot"),  # shapes, and photos when photo2shape runs
    "probe": Task(_probe, "probe", sweep=False),
})


def described_context(ctx: EvalContext) -> tuple[EvalContext, list[int]] | None:
    """(context of, row indices of) the evaluated shapes whose captions describe them
    (``harness.data.captions.described_shapes``: all of them on Pix3D; none on ModelNet, whose captions
    only name the class): what text retrieval and captioning score. None when there are none."""
    from harness.data.captions import described_shapes

    described = ctx.once("described", lambda: described_shapes(ctx.prepared.dataset, ctx.prepared.captions))
    rows = [i for i, k in enumerate(ctx.keys) if k in described]
    if len(rows) == len(ctx.items):
        return ctx, rows
    return (replace(ctx, items=[ctx.items[i] for i in rows]), rows) if rows else None


def text_view(ctx: EvalContext, enc: Encoded) -> tuple[EvalContext, Encoded] | None:
    """``described_context`` with the embeddings of those shapes and their captions."""
    found = described_context(ctx)
    if found is None:
        return None
    sub, rows = found
    return (ctx, enc) if sub is ctx else (sub, enc.subset(rows, sub.keys))


def score(ctx: EvalContext, enc: Encoded, sweep_only: bool = False) -> Block:
    """Every wanted task's block, merged, each timed under its step (``sweep_only``: the sweep tasks).
    Text tasks score ``text_view``'s shapes and are left out when it has none."""
    block = Block()
    text, viewed = None, False
    for task in TASKS.values():
        if (sweep_only and not task.sweep) or not task.wanted(ctx.config):
            continue
        if task.texts:
            if not viewed:
                text, viewed = text_view(ctx, enc), True
            if text is None:
                continue
        with ctx.timed(task.step):
            block.merge(task.run(*(text if task.texts else (ctx, enc))))
    return block
