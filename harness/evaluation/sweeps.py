"""Re-evaluations of the same model inside one evaluation: fewer views per shape (``eval.views``) and
rotated shapes (``eval.rotation``).

Both score the sweep tasks of ``harness.evaluation.tasks`` (retrieval, Text2Shape, photo → shape,
zero-shot) on other shape embeddings and keep the captions, photos and class prompts already encoded;
no bootstrap (the records keep plain figures: ``result.by_views`` / ``result.by_rotation``); never
the probe or captioning. Duoduo CLIP reports accuracy against the number of views, MVTN under rotation.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.errors import ConfigError
from renderers.cameras import spread_views
from renderers.orientation import ROTATIONS

from .context import EvalContext
from .tasks import Encoded, score


def view_counts(setting) -> list[int]:
    """``eval.views`` as a sorted list of distinct positive ints ([] when unset); one clear error else."""
    if setting in (None, False, (), []):
        return []
    values = _as_list(setting, int)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ConfigError(f"eval.views={setting!r} must be a list of view counts >= 1, e.g. [1, 2, 4, 12]")
    return sorted(set(values))


def rotation_kinds(setting) -> list[str]:
    """``eval.rotation`` as a list of kinds (``z`` | ``so3``; [] when unset); one clear error else."""
    if setting in (None, False, "", (), []):
        return []
    values = _as_list(setting, str)
    if not values or any(v not in ROTATIONS for v in values):
        raise ConfigError(f"eval.rotation={setting!r} must be 'z' (about the up axis), 'so3' (any 3-D "
                          "rotation) or a list of them")
    return list(dict.fromkeys(values))


def _as_list(setting, scalar: type) -> list | None:
    if isinstance(setting, scalar):
        return [setting]
    return list(setting) if isinstance(setting, (list, tuple)) else None


def check_view_counts(counts: list[int], items) -> None:
    """Fail before any encoding when a count asks for more views than the renders have."""
    have = max((len(it.views) for it in items), default=0)
    if counts and counts[-1] > have:
        raise ConfigError(f"eval.views={counts}: the renders have {have} views per shape; use counts "
                          f"<= {have} (or a rig with more views)")


@dataclass
class SweepPoint:
    """One view count or rotation: its figures (plain floats), and the context and shape embeddings
    they came from (so the run's captioners can score the point too, ``eval.captioning='always'``)."""

    figures: dict
    ctx: EvalContext
    shapes: np.ndarray


def _sweep_context(ctx: EvalContext, items=None) -> EvalContext:
    # plain figures (no bootstrap); its own timings, so the main eval_<step>_seconds stay the main ones
    return replace(ctx, resamples=0, timings={}, **({"items": items} if items is not None else {}))


def by_views(ctx: EvalContext, enc: Encoded, view_emb, counts: list[int]) -> dict[str, SweepPoint]:
    """``{"<n>": SweepPoint}``: the sweep tasks with the shapes pooled from ``n`` evenly spaced views
    each (``spread_views``); ``view_emb`` is the evaluation's (S, V, D) view embeddings."""
    import torch

    import models

    sweep = _sweep_context(ctx)
    n_views = np.array([len(it.views) for it in ctx.items])
    out = {}
    for n in counts:
        pooled = torch.zeros(view_emb.shape[0], view_emb.shape[-1])
        for have in np.unique(n_views):  # shapes with a failed view pick from the views they have
            rows = torch.as_tensor(np.flatnonzero(n_views == have))
            pick = view_emb[rows][:, spread_views(int(have), n)]
            pooled[rows] = models.pool_views(pick, ctx.bundle.pooling).float().cpu()
        shapes = pooled.numpy()
        out[str(n)] = SweepPoint(dict(score(sweep, enc.with_shapes(shapes), sweep_only=True).metrics), sweep,
                                 shapes)
    return out


def rotated(ctx: EvalContext, enc: Encoded, items, render_config_id: str) -> SweepPoint:
    """The sweep tasks' figures with the shapes' embeddings from their rotated renders ``items``
    (``harness.commands.render.rotated_renders``; a shape whose rotated render failed is left out)."""
    import torch

    import models

    with torch.no_grad():
        shapes = models.encode_shapes(ctx.bundle, [it.views for it in items], cache_dir=ctx.features_dir,
                                      render_config_id=render_config_id).numpy()
    keys = [it.key for it in items]
    if keys != ctx.keys:
        enc = enc.restricted(keys)
    sweep = _sweep_context(ctx, items)
    return SweepPoint(dict(score(sweep, enc.with_shapes(shapes), sweep_only=True).metrics), sweep, shapes)
