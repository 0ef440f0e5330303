"""Reading the run store for the leaderboard (a pymongo ``Database``): the main table through the
row cache, and on demand per-category results, per-shape scores, curves, documents and artifacts;
writing tags and notes (Omniboard-compatibly in ``omniboard.tags`` / ``omniboard.notes``).

The main table projects only the fields it shows (``RUN_FIELDS``). User text never reaches MongoDB:
filters run in pandas on literal strings (``leaderboard.frames.filter_runs``).
"""
from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np
import pandas as pd

from runstore import FINAL_STATUSES, ROW_CACHE, forget_rows

from .frames import DEFAULT_METRIC, _frame, get_path, run_row

RUN_FIELDS = ["experiment.name", "status", "start_time", "stop_time", "heartbeat",
              "config.model.name", "config.model.pretrained", "config.model.pooling", "config.train.mode",
              "config.data.root", "config.data.synth_preset", "config.seed",
              "result.metrics", "result.ci95", "result.throughput", "result.provenance.dataset_fingerprint",
              "result.by_views", "result.by_rotation",
              "omniboard.tags", "omniboard.notes", "meta.comment", "info.params",
              "info.reused_checkpoint", "info.resumed_from"]
# Bumped whenever RUN_FIELDS or run_row change what a row holds: older cached rows are rebuilt.
ROW_CACHE_VERSION = 3
INDEXES = {"runs": [[("status", 1)], [("start_time", -1)], [("experiment.name", 1)]],
           "metrics": [[("run_id", 1), ("name", 1)]]}
_INDEXED: set = set()


class RunNotFound(KeyError):
    """No run document with the requested id."""


def ensure_indexes(db) -> None:
    """Create the indexes the queries use, once per process and database."""
    key = (id(db.client), db.name)
    if key in _INDEXED:
        return
    import pymongo.errors

    try:
        for collection, indexes in INDEXES.items():
            for keys in indexes:
                db[collection].create_index(keys)
    except pymongo.errors.OperationFailure:
        pass  # a read-only user may not create indexes: queries still work, only slower
    _INDEXED.add(key)


def load_runs(db, now: dt.datetime | None = None) -> pd.DataFrame:
    """One row per run: identity columns, every result metric, ``tp_``-prefixed throughput.

    Rows of finished runs are cached in ``ROW_CACHE`` (a finished Sacred run no longer changes), so a
    load reads the small cached rows plus the documents of new and unfinished runs only: on a store of
    thousands of runs that is the difference between reading every whole run document (nx-27017 decodes
    each one whatever the projection) and reading a few. Deleted runs are noticed by count and their
    rows dropped. A store the user cannot write to still loads correctly, only without the cache.
    """
    ensure_indexes(db)
    import bson
    import pymongo.errors

    cached, skipped, outdated = {}, Counter(), []
    for entry in db[ROW_CACHE].find({}):
        if entry.get("v") != ROW_CACHE_VERSION:
            outdated.append(entry["_id"])
        elif "skip" in entry:
            cached[entry["_id"]] = entry["skip"]
        else:
            cached[entry["_id"]] = bson.decode(entry["row"])
    projection = {field: 1 for field in RUN_FIELDS}
    fresh = list(db.runs.find({"_id": {"$nin": list(cached)}} if cached else {}, projection))
    if len(cached) + len(fresh) != db.runs.estimated_document_count():
        # runs were deleted (or the count is approximate): drop the rows of runs that are gone
        live = {doc["_id"] for doc in db.runs.find({}, {"_id": 1})}
        gone = [run_id for run_id in cached if run_id not in live]
        for run_id in gone:
            del cached[run_id]
        outdated += gone

    rows, entries = [], []
    for value in cached.values():
        if isinstance(value, dict):
            rows.append(value)
        else:
            skipped[value] += 1
    for doc in fresh:
        row, reason = run_row(doc, now)
        if row is None:
            skipped[reason] += 1
        else:
            rows.append(row)
        if doc.get("status") in FINAL_STATUSES:
            # opaque BSON bytes: nx-27017 parses and copies every field of a document it returns,
            # which for a nested row costs four times the transfer
            entries.append({"_id": doc["_id"], "v": ROW_CACHE_VERSION, "skip": reason} if row is None else
                           {"_id": doc["_id"], "v": ROW_CACHE_VERSION, "row": bson.Binary(bson.encode(row))})
    try:
        if outdated:
            forget_rows(db, outdated)
        if entries:
            db[ROW_CACHE].insert_many(entries, ordered=False)
    except pymongo.errors.BulkWriteError:
        pass  # another viewer cached the same runs first
    except pymongo.errors.OperationFailure:
        pass  # a read-only user: no cache, every load reads the run documents
    return _frame(rows, skipped)


def _id_query(run_ids) -> dict:
    # ids come from the table (ints from Sacred), never from free text
    return {"_id": {"$in": [_plain_id(i) for i in run_ids]}}


def _plain_id(run_id):
    if isinstance(run_id, (np.integer,)):
        return int(run_id)
    if isinstance(run_id, (int, str)) and not isinstance(run_id, bool):
        return run_id
    raise TypeError(f"run id {run_id!r} must be an int or a string")


def load_per_category(db, run_ids, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Run × category table of ``metric`` from ``result.per_category`` (runs without it are absent)."""
    rows = {}
    for doc in db.runs.find(_id_query(run_ids), {"result.per_category": 1}):
        per_category = get_path(doc, "result.per_category")
        if isinstance(per_category, dict):
            rows[doc["_id"]] = {c: v.get(metric) for c, v in per_category.items() if isinstance(v, dict)}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame = frame.reindex([_plain_id(r) for r in run_ids if _plain_id(r) in rows])  # the caller's order
    frame.index.name = "run_id"
    return frame.astype(float)


def per_category_metrics(db, run_ids) -> list[str]:
    """Metric names present in the per-category results of the given runs."""
    names = set()
    for doc in db.runs.find(_id_query(run_ids), {"result.per_category": 1}):
        per_category = get_path(doc, "result.per_category")
        if isinstance(per_category, dict):
            for values in per_category.values():
                if isinstance(values, dict):
                    names.update(values)
    return sorted(names, key=lambda n: (n != DEFAULT_METRIC, n))


def load_curves(db, run_ids, names=None) -> pd.DataFrame:
    """Metric curves (Sacred ``metrics`` collection) as a long table: run_id, name, step, value, time."""
    ensure_indexes(db)
    query = {"run_id": {"$in": [_plain_id(i) for i in run_ids]}}
    rows = []
    for doc in db.metrics.find(query):
        if names and doc.get("name") not in names:
            continue
        steps, values = doc.get("steps") or [], doc.get("values") or []
        stamps = doc.get("timestamps") or [None] * len(steps)
        for step, value, stamp in zip(steps, values, stamps, strict=False):
            rows.append((doc.get("run_id"), doc.get("name"), step, value, stamp))
    frame = pd.DataFrame(rows, columns=["run_id", "name", "step", "value", "timestamp"])
    if len(frame):
        frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], errors="coerce")
        start = frame.groupby("run_id")["timestamp"].transform("min")
        frame["seconds"] = (frame["timestamp"] - start).dt.total_seconds()
    else:
        frame["seconds"] = []
    return frame


def curve_names(db, run_ids) -> list[str]:
    """Names of the curves logged by the given runs."""
    ensure_indexes(db)
    found = {d.get("name") for d in db.metrics.find({"run_id": {"$in": [_plain_id(i) for i in run_ids]}},
                                                     {"name": 1})}
    return sorted(n for n in found if isinstance(n, str))


def load_run(db, run_id) -> dict:
    """The full run document (for the detail view)."""
    doc = db.runs.find_one({"_id": _plain_id(run_id)})
    if doc is None:
        raise RunNotFound(f"no run with _id {run_id!r} in {db.name}.runs")
    return doc


def load_per_shape(db, run_ids) -> dict:
    """``info.per_shape`` of each run that recorded it: ``{run_id: {"shapes": [...], metric: [...]}}``."""
    out = {}
    for doc in db.runs.find(_id_query(run_ids), {"info.per_shape": 1}):
        per_shape = get_path(doc, "info.per_shape")
        if isinstance(per_shape, dict) and isinstance(per_shape.get("shapes"), list):
            out[doc["_id"]] = per_shape
    return out


def load_artifact(db, file_id) -> bytes:
    """Bytes of a GridFS artifact."""
    import gridfs

    return gridfs.GridFS(db).get(file_id).read()


def set_tags(db, run_id, tags) -> None:
    """Store tags in ``omniboard.tags`` (a list of strings)."""
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",")]
    clean = [str(t).strip() for t in tags if str(t).strip()]
    db.runs.update_one({"_id": _plain_id(run_id)}, {"$set": {"omniboard.tags": clean}})
    forget_rows(db, [_plain_id(run_id)])


def set_notes(db, run_id, notes: str) -> None:
    """Store free-text notes in ``omniboard.notes``."""
    db.runs.update_one({"_id": _plain_id(run_id)}, {"$set": {"omniboard.notes": str(notes)}})
    forget_rows(db, [_plain_id(run_id)])
