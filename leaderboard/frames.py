"""Pure functions on the leaderboard's run table (pandas DataFrames): the row of a run document,
filters on literal text, ranking with rank intervals, seed groups, Pareto fronts, comparisons.
No store access here (``leaderboard.loading`` reads the store); no Sacred, no torch.

Malformed or older documents (a config that is not a dict / has no ``model.name``, a finished run
with no ``result`` or a non-dict ``result.metrics``) are skipped and counted in
``frame.attrs["skipped"]``; runs still going or failed are kept with empty metrics.
"""
from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import numpy as np
import pandas as pd

from harness.metrics import align_per_shape, paired_bootstrap
from harness.metrics import direction as metric_direction
from runstore import PROBABLY_DEAD as PROBABLY_DEAD  # re-exported for the app and tests
from runstore import effective_status

from .protocols import base_metric, is_rotation, is_views, sweep_columns

DEFAULT_METRIC = "i2t_R@1"
GROUP_KEYS = ["model", "pretrained", "mode", "pooling", "dataset"]
ID_COLUMNS = ["run_id", "experiment", "state", "status", "start_time", "model", "pretrained", "mode",
              "pooling", "dataset", "seed", "tags", "notes", "params", "training"]
THROUGHPUT_PREFIX = "tp_"
SEARCH_COLUMN = "_search"
SEARCHED = ["run_id", "experiment", "model", "pretrained", "mode", "pooling", "dataset", "tags", "notes",
            "state"]
# MongoDB paths the main table needs: nothing else is transferred.
def direction(name: str) -> str:
    """``"higher"`` or ``"lower"`` is better, as declared in ``harness.metrics`` (``tp_``, view-sweep and
    rotation columns too: those of their metric)."""
    bare = name[len(THROUGHPUT_PREFIX):] if name.startswith(THROUGHPUT_PREFIX) else base_metric(name)
    return metric_direction(bare)


def get_path(doc: dict, path: str, default=None):
    """``doc[a][b][c]`` for ``"a.b.c"``; also reads servers that return projected paths flat."""
    if path in doc:
        return doc[path]
    node = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            # a flat key for a prefix ("result.metrics" holding {"i2t_R@1": ...})
            head, _, rest = path.rpartition(".")
            while head:
                if head in doc and isinstance(doc[head], dict):
                    return get_path(doc[head], path[len(head) + 1:], default)
                head, _, rest = head.rpartition(".")
            return default
        node = node[part]
    return node


def dataset_label(root, preset, fingerprint) -> str:
    """A short dataset name for grouping: root's last folder (or preset) + fingerprint prefix."""
    name = str(root).rstrip("/").rsplit("/", 1)[-1] if root else (preset or "?")
    return f"{name}@{str(fingerprint)[:8]}" if fingerprint else name


def params_count(value) -> float:
    """Parameter count from ``info.params`` (a number or a dict with ``total``)."""
    if isinstance(value, dict):
        value = value.get("total", value.get("all"))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def training_note(doc: dict) -> str:
    """How the run got its weights when not by training from scratch in this run ("" otherwise)."""
    if get_path(doc, "info.reused_checkpoint"):
        return "reused checkpoint"
    resumed = get_path(doc, "info.resumed_from")
    if isinstance(resumed, dict):
        return f"resumed at step {resumed.get('step', '?')}"
    return ""


def run_row(doc: dict, now: dt.datetime | None = None) -> tuple[dict | None, str | None]:
    """One table row from a projected run document, or ``(None, reason)`` when it must be skipped."""
    model = get_path(doc, "config.model.name")
    if not isinstance(model, str):
        return None, "config is not a dict or has no model.name"
    status = doc.get("status")
    result_metrics = get_path(doc, "result.metrics")
    if result_metrics is None and status == "COMPLETED":
        return None, "completed run without result"
    if result_metrics is not None and not isinstance(result_metrics, dict):
        return None, "result.metrics is not a dict"
    tags = get_path(doc, "omniboard.tags") or []
    row = {
        "run_id": doc.get("_id"),
        "experiment": str(get_path(doc, "experiment.name", "") or ""),
        "status": status or "UNKNOWN",
        "state": effective_status(doc, now),
        "start_time": doc.get("start_time"),
        "model": model,
        "pretrained": str(get_path(doc, "config.model.pretrained") or "-"),
        "mode": str(get_path(doc, "config.train.mode") or "-"),
        "pooling": str(get_path(doc, "config.model.pooling") or "-"),
        "dataset": dataset_label(get_path(doc, "config.data.root"), get_path(doc, "config.data.synth_preset"),
                                 get_path(doc, "result.provenance.dataset_fingerprint")),
        "seed": get_path(doc, "config.seed"),
        "tags": ", ".join(str(t) for t in tags) if isinstance(tags, list) else str(tags),
        "notes": str(get_path(doc, "omniboard.notes") or get_path(doc, "meta.comment") or ""),
        "params": params_count(get_path(doc, "info.params")),
        "training": training_note(doc),
        "ci95": get_path(doc, "result.ci95") if isinstance(get_path(doc, "result.ci95"), dict) else {},
    }
    # what the free-text filter searches, built once per load (a row-wise join per keystroke is slow)
    row[SEARCH_COLUMN] = " ".join(str(row[c]) for c in SEARCHED).lower()
    for name, value in (result_metrics or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            row[name] = float(value)
    row.update(sweep_columns({"by_views": get_path(doc, "result.by_views"),
                              "by_rotation": get_path(doc, "result.by_rotation")}))
    throughput = get_path(doc, "result.throughput")
    if isinstance(throughput, dict):
        for name, value in throughput.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[THROUGHPUT_PREFIX + name] = float(value)
    return row, None


def rows_to_frame(docs, now: dt.datetime | None = None) -> pd.DataFrame:
    """The main table from run documents; skipped documents are counted in ``attrs``."""
    rows, skipped = [], Counter()
    for doc in docs:
        if not isinstance(doc, dict):
            skipped["not a document"] += 1
            continue
        row, reason = run_row(doc, now)
        if row is None:
            skipped[reason] += 1
        else:
            rows.append(row)
    return _frame(rows, skipped)


def _frame(rows: list[dict], skipped: Counter) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=None if rows else ID_COLUMNS + ["ci95", SEARCH_COLUMN])
    extra = [c for c in frame.columns if c not in ID_COLUMNS and c not in ("ci95", SEARCH_COLUMN)]
    frame.attrs["views"] = sorted(c for c in extra if is_views(c))
    frame.attrs["rotation"] = sorted(c for c in extra if is_rotation(c))
    frame.attrs["throughput"] = sorted(c for c in extra if c.startswith(THROUGHPUT_PREFIX))
    other = set(frame.attrs["views"]) | set(frame.attrs["rotation"]) | set(frame.attrs["throughput"])
    frame.attrs["metrics"] = sorted(c for c in extra if c not in other)
    frame.attrs["skipped"] = sum(skipped.values())
    frame.attrs["skip_reasons"] = dict(skipped)
    if len(frame):
        frame["start_time"] = pd.to_datetime(frame["start_time"], errors="coerce")
    return frame


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """Result metric columns of a frame from ``load_runs`` (default metric first)."""
    names = list(frame.attrs.get("metrics", []))
    return sorted(names, key=lambda n: (n != DEFAULT_METRIC, n))


def filter_runs(frame: pd.DataFrame, *, states=None, experiments=None, datasets=None, models=None,
                modes=None, tags=None, date_range=None, text: str = "") -> pd.DataFrame:
    """Rows matching every given filter; ``text`` is matched literally (case-insensitive), never as a regex.

    date_range: ``(first_day, last_day)`` inclusive, dates or datetimes.
    """
    mask = pd.Series(True, index=frame.index)
    for column, chosen in (("state", states), ("experiment", experiments), ("dataset", datasets),
                           ("model", models), ("mode", modes)):
        if chosen:
            mask &= frame[column].isin(list(chosen))
    if tags:
        wanted = set(tags)
        mask &= frame["tags"].map(lambda s: bool(wanted & {t.strip() for t in str(s).split(",")}))
    if date_range and len(frame):
        first, last = (pd.Timestamp(d) for d in date_range)
        start = frame["start_time"]
        mask &= (start >= first.normalize()) & (start < last.normalize() + pd.Timedelta(days=1))
    if text:
        if SEARCH_COLUMN in frame:
            haystack = frame[SEARCH_COLUMN]
        else:
            haystack = frame[SEARCHED].astype(str).agg(" ".join, axis=1).str.lower()
        mask &= haystack.str.contains(text.lower(), regex=False)
    out = frame[mask]
    out.attrs = dict(frame.attrs)
    return out


def tag_options(frame: pd.DataFrame) -> list[str]:
    """Every tag used by the runs in ``frame``."""
    found = {t.strip() for s in frame.get("tags", []) for t in str(s).split(",")}
    return sorted(t for t in found if t)


def rank_intervals(values, lows, highs, higher: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point rank and a rank interval per run from bootstrap 95 % CIs.

    The best possible rank counts runs whose whole CI is better than this run's; the worst counts
    runs whose CI overlaps or beats it. Missing values rank last; a missing CI is the point value.
    """
    v = np.asarray(values, dtype=float)
    lo = np.where(np.isnan(np.asarray(lows, dtype=float)), v, np.asarray(lows, dtype=float))
    hi = np.where(np.isnan(np.asarray(highs, dtype=float)), v, np.asarray(highs, dtype=float))
    if not higher:  # flip so that larger is always better
        v, lo, hi = -v, -hi, -lo
    n = len(v)
    missing = np.isnan(v)
    score = np.where(missing, -np.inf, v)
    order = np.argsort(-score, kind="stable")
    rank = np.empty(n, dtype=int)
    rank[order] = np.arange(1, n + 1)
    lo_ok, hi_ok = np.where(missing, -np.inf, lo), np.where(missing, -np.inf, hi)
    # O(n log n): runs whose lower bound beats my upper bound / whose upper bound reaches my lower bound
    sorted_lo, sorted_hi = np.sort(lo_ok), np.sort(hi_ok)
    surely_better = n - np.searchsorted(sorted_lo, hi_ok, side="right")
    maybe_better = n - np.searchsorted(sorted_hi, lo_ok, side="left") - 1  # minus itself
    best = np.where(missing, rank, surely_better + 1)
    worst = np.where(missing, rank, np.maximum(maybe_better + 1, rank))
    best = np.minimum(best, rank)
    return rank, best, worst


def ci_bounds(frame: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper 95 % CI of ``metric`` per row (NaN where the run has none)."""
    def pick(ci, i):
        pair = ci.get(metric) if isinstance(ci, dict) else None
        return float(pair[i]) if isinstance(pair, (list, tuple)) and len(pair) == 2 else math.nan

    cis = frame["ci95"] if "ci95" in frame else pd.Series([{}] * len(frame), index=frame.index)
    return np.array([pick(c, 0) for c in cis]), np.array([pick(c, 1) for c in cis])


def rank_runs(frame: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """``frame`` sorted by ``metric`` (its declared direction) with ``rank`` and ``rank_interval`` columns."""
    if metric not in frame:
        raise KeyError(f"metric {metric!r} is not in the runs (known: {', '.join(metric_columns(frame))})")
    lows, highs = ci_bounds(frame, metric)
    rank, best, worst = rank_intervals(frame[metric].to_numpy(float), lows, highs,
                                       direction(metric) == "higher")
    out = frame.assign(rank=rank, rank_interval=[f"{b}–{w}" for b, w in zip(best, worst, strict=False)])
    out = out.sort_values("rank", kind="stable")
    out.attrs = dict(frame.attrs)
    return out


_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t_quantile(dof: int) -> float:
    """Two-sided 95 % Student-t quantile (table; no scipy import in the app)."""
    if dof in _T95:
        return _T95[dof]
    smaller = [k for k in _T95 if k <= dof]
    return _T95[max(smaller)] if dof <= 30 else 1.96


def group_runs(frame: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Runs grouped by (model, pretrained, mode, pooling, dataset): mean, 95 % CI half-width, n per metric.

    The CI is Student-t over seeds (runs); with one run the half-width is NaN.
    """
    grouped = frame.groupby(GROUP_KEYS, dropna=False, sort=False)
    out = grouped.size().rename("n").to_frame()
    for metric in metrics:
        stats = grouped[metric].agg(["mean", "std", "count"])
        half = [t_quantile(int(c) - 1) * s / math.sqrt(c) if c > 1 else math.nan
                for s, c in zip(stats["std"], stats["count"], strict=False)]
        out[metric] = stats["mean"]
        out[f"{metric} ±"] = half
    out = out.reset_index()
    out.attrs = dict(frame.attrs)
    return out


def rank_groups(groups: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Grouped table sorted by ``metric`` with ``rank`` and a rank interval from the mean's 95 % CI."""
    half = groups[f"{metric} ±"].to_numpy(float)
    mean = groups[metric].to_numpy(float)
    rank, best, worst = rank_intervals(mean, mean - half, mean + half, direction(metric) == "higher")
    out = groups.assign(rank=rank, rank_interval=[f"{b}–{w}" for b, w in zip(best, worst, strict=False)])
    return out.sort_values("rank", kind="stable")


def best_per_column(frame: pd.DataFrame, columns: list[str]) -> dict[str, object]:
    """Index label of the best value of each column, by the column's declared direction."""
    best = {}
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce") if column in frame else None
        if values is None or values.notna().sum() == 0:
            continue
        best[column] = values.idxmax() if direction(column) == "higher" else values.idxmin()
    return best


def pareto_front(x, y, x_higher: bool = True, y_higher: bool = True) -> np.ndarray:
    """Boolean mask of points no other point beats on both axes (NaNs are never on the front)."""
    xs = np.asarray(x, dtype=float) * (1 if x_higher else -1)
    ys = np.asarray(y, dtype=float) * (1 if y_higher else -1)
    ok = ~(np.isnan(xs) | np.isnan(ys))
    mask = np.zeros(len(xs), dtype=bool)
    idx = np.flatnonzero(ok)
    # sweep by x descending: a point is on the front when its y beats every y seen so far
    order = idx[np.lexsort((-ys[idx], -xs[idx]))]
    best_y = -np.inf
    for i in order:
        if ys[i] > best_y:
            mask[i] = True
            best_y = ys[i]
    return mask


def format_table(frame: pd.DataFrame, metrics: list[str] | None = None) -> str:
    """Plain-text table of runs (identity columns + metrics) for terminals."""
    metrics = [m for m in (metrics or metric_columns(frame)) if m in frame]
    columns = ["run_id", "model", "pretrained", "mode", "pooling", "dataset", "state"] + metrics
    if not len(frame):
        return "(no runs)"
    return frame[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}")


def to_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes of a table (without the nested CI and search columns)."""
    return frame.drop(columns=["ci95", SEARCH_COLUMN], errors="ignore").to_csv(index=False).encode("utf-8")


def smooth(values, weight: float) -> np.ndarray:
    """Exponential moving average (TensorBoard-style, debiased); weight 0 returns the values."""
    values = np.asarray(values, dtype=float)
    if weight <= 0 or not len(values):
        return values
    out, last, norm = np.empty_like(values), 0.0, 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = last / norm
    return out


def prob_better(a: dict, b: dict, metric: str, resamples: int = 2000, seed: int = 0) -> tuple[float, int]:
    """Paired bootstrap over the shapes both runs evaluated: (P(run A beats run B) on ``metric``, n shapes).

    a, b: ``info.per_shape`` records; raises ``harness.metrics.BootstrapInputError`` naming what is missing.
    """
    sa, sb, weights = align_per_shape(a, b, metric)
    prob = paired_bootstrap(sa, sb, resamples=resamples, seed=seed, weights=weights,
                            higher_is_better=direction(metric) == "higher")
    return prob, len(sa)


def flatten(config, prefix: str = "") -> dict:
    """Nested dict → ``{"a.b": value}``."""
    if not isinstance(config, dict):
        return {prefix or "config": config}
    out = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) else {name: value})
    return out


def config_diff(configs: dict) -> pd.DataFrame:
    """Config keys whose values differ between runs: rows = keys, columns = run ids."""
    flat = {run_id: flatten(cfg) for run_id, cfg in configs.items()}
    keys = sorted(set().union(*flat.values())) if flat else []
    rows = {k: {r: repr(f.get(k, "—")) for r, f in flat.items()} for k in keys}
    table = pd.DataFrame.from_dict(rows, orient="index")
    if not len(table):
        return table
    differs = table.nunique(axis=1) > 1
    return table[differs]
