"""The linear probe of one evaluation (CLIP_benchmark's recipe), for every train mode.

A logistic regression on the frozen, mean-pooled view features of the train shapes (the image tower's
output, before any linear head), its regularisation chosen on the val shapes, top-1 category accuracy
reported on the evaluated shapes with a CI over them. Features come through the feature cache, so
the views the evaluation and its captioner encode are not encoded again.
"""
from __future__ import annotations

from harness.metrics import Block, per_query_block

from .context import EvalContext


def probe_block(ctx: EvalContext) -> tuple[Block, dict]:
    """(``probe_top1`` of ``ctx.items``, ``{"C": chosen regularisation, "val_top1": its val accuracy}``
    for the provenance); empty when the split has no train or val shapes with renders."""
    import models
    from harness.commands.render import shape_items

    prepared = ctx.prepared
    train = shape_items(prepared, ctx.render_dir, prepared.split.train)
    val = shape_items(prepared, ctx.render_dir, prepared.split.val)
    if not train or not val:
        return Block(), {}

    def feats(items):
        views = models.encode_views(ctx.bundle, [it.views for it in items], cache_dir=ctx.features_dir,
                                    render_config_id=ctx.render_config_id, raw=True)
        return models.pool_views(views).numpy(), [it.category for it in items]

    out, correct = models.linear_probe(*feats(train), *feats(val), *feats(ctx.items), seed=ctx.seed,
                                       per_item=True)
    block = per_query_block({"probe_top1": out["probe_top1"]}, {"probe_top1": correct}, ctx.keys, "probe",
                            ctx.resamples, ctx.seed, ctx.category_of)
    return block, {"C": out["probe_C"], "val_top1": out["probe_val_top1"]}
