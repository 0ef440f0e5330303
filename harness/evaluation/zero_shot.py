"""Zero-shot classification of one evaluation: shapes (pooled views) and photos against the class names.

Class embeddings come from the dataset's category names through a prompt-template ensemble, as CLIP
does: each class's text embeddings over the templates, normalised, averaged and normalised again.
``eval.zs_templates`` names a set of ``TEMPLATE_SETS`` or lists templates (each with one ``{}``).
"""
from __future__ import annotations

import numpy as np

from harness.metrics import Block, per_query_block, true_item_ranks
from harness.metrics.protocols import zero_shot_figures
from models.errors import ConfigError
from registries import Registry

from .context import EvalContext
from .photos import photo_queries

# Render-aware by default: the shapes are renders on white, the photos are photos.
TEMPLATE_SETS = Registry("eval.zs_templates", {
    "render": ("a 3D render of a {}.", "a rendering of a {}.", "a 3D model of a {}.",
               "a photo of a {}.", "a picture of a {}.", "a {} on a white background."),
    "photo": ("a photo of a {}.",),  # CLIP's single default prompt
    "name": ("{}",),  # the bare class name
}, ConfigError)
KS = (1, 3, 5)


def templates_of(setting) -> tuple[str, tuple[str, ...]]:
    """``(name recorded in the provenance, templates)`` of ``eval.zs_templates``: a set's name, or a
    list of templates (recorded as ``"custom"``); anything else is a ConfigError."""
    if isinstance(setting, str):
        return setting, tuple(TEMPLATE_SETS.lookup(setting))
    templates = tuple(setting or ())
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if not templates or bad:
        raise ConfigError(f"eval.zs_templates={setting!r} must name a set ({', '.join(TEMPLATE_SETS)}) or "
                          f"list templates with one '{{}}' each (bad: {bad[:3]})")
    return "custom", templates


def class_embeddings(bundle, classes: list[str], templates: tuple[str, ...]) -> np.ndarray:
    """(C, D) prompt-ensembled, L2-normalised text embeddings of the class names."""
    import torch

    import models

    prompts = [t.format(c.replace("_", " ")) for c in classes for t in templates]
    with torch.no_grad():
        emb = models.encode_texts(bundle, prompts).numpy().reshape(len(classes), len(templates), -1)
    mean = emb.mean(axis=1)  # each prompt embedding is already normalised
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def zero_shot_block(ctx: EvalContext, class_emb: np.ndarray, classes: list[str], query_emb: np.ndarray,
                    query_shapes: list[str], prefix: str) -> Block:
    """``<prefix>_top1/3/5`` and ``<prefix>_mean_per_class`` of queries (rows of ``query_emb``, each of
    the shape ``query_shapes[i]``, whose category is its class); CIs over shapes, per category, per shape."""
    label_of = {c: i for i, c in enumerate(classes)}
    labels = np.array([label_of[ctx.category_of[k]] for k in query_shapes])
    figures, hits = zero_shot_figures(true_item_ranks(query_emb, class_emb, labels), labels, KS)
    return per_query_block({f"{prefix}_{k}": v for k, v in figures.items()},
                           {f"{prefix}_{k}": v for k, v in hits.items()}, query_shapes, prefix,
                           ctx.resamples, ctx.seed, ctx.category_of)


def zero_shot_task(ctx: EvalContext, enc) -> Block:
    """The zero-shot task: ``zs_*`` of the shapes (``enc.shapes``) and, when photo → shape runs,
    ``zs_photo_*`` of the photos; the classes are the dataset's categories, embedded once per evaluation
    (``ctx.once``) and recorded in ``ctx.provenance["zs_templates"]``."""
    def classes():
        name, templates = templates_of(ctx.config.zs_templates)
        names = sorted({s.category for s in ctx.prepared.dataset.shapes})
        ctx.provenance["zs_templates"] = {"name": name, "templates": list(templates), "classes": names}
        return names, class_embeddings(ctx.bundle, names, templates)

    names, class_emb = ctx.once("classes", classes)
    block = zero_shot_block(ctx, class_emb, names, enc.shapes, ctx.keys, "zs")
    if ctx.config.photo2shape:
        photos = photo_queries(ctx)
        if photos.shapes:
            block.merge(zero_shot_block(ctx, class_emb, names, photos.emb, photos.shapes, "zs_photo"))
    return block
