"""The leaderboard's view of the field's protocols: view-count sweeps, rotation robustness, Borda ranks.

A run's ``result.by_views`` and ``result.by_rotation`` become row columns ``v<n>/<metric>`` and
``rot_<kind>/<metric>`` (``sweep_columns``), kept out of the main metric list (a sweep of four counts
would quadruple it) but rankable and plottable like any metric: ``direction`` of such a column is
its metric's. Pure pandas; no store access.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

SEP = "/"
_VIEWS = re.compile(r"^v(\d+)/(.+)$")
ROTATION_PREFIX = "rot_"


def sweep_columns(result) -> dict[str, float]:
    """``{"v4/i2t_R@1": 0.31, "rot_so3/zs_top1": 0.12, ...}`` of a run document's ``result``."""
    out: dict[str, float] = {}
    if not isinstance(result, dict):
        return out
    for field, prefix in (("by_views", "v"), ("by_rotation", ROTATION_PREFIX)):
        sweep = result.get(field)
        if not isinstance(sweep, dict):
            continue
        for point, figures in sweep.items():
            if not isinstance(figures, dict):
                continue
            for name, value in figures.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[f"{prefix}{point}{SEP}{name}"] = float(value)
    return out


def base_metric(column: str) -> str:
    """The metric a column holds: ``"i2t_R@1"`` for ``"v4/i2t_R@1"`` and ``"rot_so3/i2t_R@1"``."""
    return column.split(SEP, 1)[1] if SEP in column else column


def is_views(column: str) -> bool:
    return bool(_VIEWS.match(column))


def is_rotation(column: str) -> bool:
    return column.startswith(ROTATION_PREFIX) and SEP in column


def rotation_columns(frame: pd.DataFrame, metric: str) -> list[str]:
    """The rotation columns of ``metric`` present in ``frame`` (``rot_so3/<metric>``, ...)."""
    return sorted(c for c in frame.attrs.get("rotation", []) if base_metric(c) == metric and c in frame)


def view_metrics(frame: pd.DataFrame) -> list[str]:
    """Metrics some run has a view sweep of."""
    return sorted({base_metric(c) for c in frame.attrs.get("views", [])})


def views_long(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (run, view count) with ``metric``: columns ``run_id``, ``label``, ``views``, ``value``
    (runs without a sweep of ``metric`` are left out)."""
    rows = []
    columns = [c for c in frame.attrs.get("views", []) if c in frame and _VIEWS.match(c).group(2) == metric]
    for column in columns:
        n = int(_VIEWS.match(column).group(1))
        for run_id, model, mode, value in zip(frame["run_id"], frame["model"], frame["mode"], frame[column],
                                              strict=True):
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                rows.append({"run_id": run_id, "label": f"{run_id} {model} {mode}", "views": n,
                             "value": float(value)})
    out = pd.DataFrame(rows, columns=["run_id", "label", "views", "value"])
    return out.sort_values(["run_id", "views"], kind="stable").reset_index(drop=True)


def borda(frame: pd.DataFrame, metrics: list[str], higher: dict[str, bool]) -> pd.DataFrame:
    """``frame`` with ``borda`` points and ``borda_rank`` over ``metrics`` (MTEB's summary rank).

    For each metric a run earns one point per run it beats and half a point per run it ties (by the
    metric's direction, ``higher[metric]``); a run without the metric earns nothing for it. Points are
    summed over the metrics; ``borda_rank`` 1 is the most points (ties share the better rank).
    """
    points = np.zeros(len(frame))
    for metric in metrics:
        if metric not in frame:
            continue
        v = pd.to_numeric(frame[metric], errors="coerce").to_numpy(float)
        v = v if higher[metric] else -v
        ok = ~np.isnan(v)
        vals = v[ok]
        if not len(vals):
            continue
        ordered = np.sort(vals)
        below = np.searchsorted(ordered, vals, side="left")
        ties = np.searchsorted(ordered, vals, side="right") - below - 1  # other runs with the same value
        points[ok] += below + 0.5 * ties
    out = frame.assign(borda=points)
    out["borda_rank"] = out["borda"].rank(method="min", ascending=False).astype(int)
    out = out.sort_values(["borda_rank"], kind="stable")
    out.attrs = dict(frame.attrs)
    return out
