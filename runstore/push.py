"""Push: a spooled run into MongoDB, idempotently (run twice = once), with Sacred's integer run ids;
and ``sync``: every spooled run not yet in the store, then the folders the store provably holds."""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from pathlib import Path

from .errors import RunIdError
from .masking import mask_secrets
from .rows import forget_rows
from .spool import ARTIFACT_DIR, DEFAULT_SPOOL, SOURCE_DIR, SpoolRun, marked_synced, spooled_runs

DEFAULT_DB = "clip3d"


_LAST_ID: dict = {}  # (client, collection) -> last _id this process allocated: skips rescans in sync


def insert_autoinc(runs, doc: dict, wanted_id=None) -> int:
    """Insert ``doc`` with Sacred's integer id scheme (max + 1, retried when another run took it)."""
    import pymongo
    import pymongo.errors

    scan = False
    key = (id(runs.database.client), runs.full_name)
    for _attempt in range(100):
        if wanted_id is not None:
            run_id = wanted_id
        elif not scan:
            last = list(runs.find({}, {"_id": 1}).sort("_id", pymongo.DESCENDING).limit(1))
            top = last[0]["_id"] if last else 0
            run_id = max((top + 1) if isinstance(top, int) else 1, _LAST_ID.get(key, 0) + 1)
        else:
            # nx-27017 sorts integer _ids as text (9 > 10), so after a collision take the true
            # maximum from all ids (Sacred's own observer loops forever there once 10 runs exist).
            ids = [d["_id"] for d in runs.find({}, {"_id": 1})]
            run_id = max((i for i in ids if isinstance(i, int)), default=0) + 1
        try:
            runs.insert_one({**doc, "_id": run_id})
            _LAST_ID[key] = run_id
            forget_rows(runs.database, [run_id])  # a deleted run's id may be given again: drop its cached row
            return run_id
        except pymongo.errors.DuplicateKeyError:
            if wanted_id is not None:
                raise
            scan = True
    raise RunIdError(f"could not allocate a run _id in {runs.full_name} after 100 attempts")


def push_run(db, run: SpoolRun | str | os.PathLike, *, collection_prefix: str = "") -> int:
    """Upsert the run document, its metric documents, sources and artifacts from the spool; return its _id.

    Idempotent: pushing the same spool state twice leaves the store as after one push.
    Raises pymongo errors when the store is unreachable (callers decide whether to retry).
    """
    import gridfs
    from pymongo import ReturnDocument

    if not isinstance(run, SpoolRun):
        run = SpoolRun.load(Path(run))
    runs = db[f"{collection_prefix}runs"]
    metrics = db[f"{collection_prefix}metrics"]
    fs = gridfs.GridFS(db)
    state = run.state
    if state.get("run_id") is None:
        found = runs.find_one({"meta.run_uid": run.uid}, {"_id": 1})
        state["run_id"] = found["_id"] if found else insert_autoinc(runs, document(run),
                                                                     state.get("wanted_id"))
        run.write_state()
    run_id = state["run_id"]

    for src in state.get("sources", {}).values():
        if src.get("file_id") is None:
            existing = fs.find_one({"filename": src["abs_path"], "metadata.md5": src["md5"]})
            if existing is None:
                with open(run.path / SOURCE_DIR / src["md5"], "rb") as fh:
                    existing_id = fs.put(fh, filename=src["abs_path"], metadata={"md5": src["md5"]})
            else:
                existing_id = existing._id
            src["file_id"] = existing_id
    for name, art in state.get("artifacts", {}).items():
        if art.get("file_id") is None:
            db_name = f"artifact://{collection_prefix}runs/{run_id}/{name}"
            existing = fs.find_one({"filename": db_name})
            if existing is None:
                with open(run.path / ARTIFACT_DIR / art["file"], "rb") as fh:
                    file_id = fs.put(fh, filename=db_name, metadata=art.get("metadata"),
                                     content_type=art.get("content_type"))
            else:
                file_id = existing._id
            art["file_id"] = file_id

    for name, series in run.metrics.items():
        if run.pushed_counts.get(name) == len(series["steps"]) and name in state["metric_ids"]:
            continue
        count = len(series["steps"])
        res = metrics.find_one_and_replace(
            {"run_id": run_id, "name": name},
            {"run_id": run_id, "name": name, "steps": series["steps"][:count],
             "values": json_safe(series["values"][:count]), "timestamps": series["timestamps"][:count]},
            upsert=True, return_document=ReturnDocument.AFTER, projection={"_id": 1})
        state["metric_ids"][name] = str(res["_id"])
        run.pushed_counts[name] = count

    full = document(run)
    full.pop("_id", None)
    # A whole-document replace, not Sacred's $set: nx-27017 stores a top-level datetime given to $set
    # as a string (heartbeat, start_time), which would hide dead runs. Fields others added to the
    # document (Omniboard's tags and notes, a worker's claim) are carried over.
    existing = runs.find_one({"_id": run_id}) or {}
    foreign = {k: v for k, v in existing.items() if k not in full and k != "_id"}
    runs.replace_one({"_id": run_id}, {**foreign, **full}, upsert=True)
    forget_rows(db, [run_id])
    run.write_state()
    return run_id


def json_safe(value):
    """``value`` with every NaN and infinity replaced by None (null), in nested dicts and lists.

    A stored document holding a NaN makes nx-27017 (SQLite's JSON functions) fail *every* filtered
    query on its collection with "malformed JSON", not only queries on that document; JSON has no NaN
    either. So runs and metric series are stored with null for a non-finite number, on every store.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def document(run: SpoolRun) -> dict:
    """The Sacred-format run document from the spool (file ids filled in where uploaded); non-finite
    numbers as null (:func:`json_safe`)."""
    doc = json_safe(dict(run.doc))
    state = run.state
    doc["info"] = dict(doc.get("info") or {})
    if state.get("metric_ids"):
        doc["info"]["metrics"] = [{"name": n, "id": i} for n, i in state["metric_ids"].items()]
    doc["artifacts"] = [{"name": n, "file_id": a["file_id"]}
                        for n, a in state.get("artifacts", {}).items() if a.get("file_id") is not None]
    experiment = dict(doc.get("experiment") or {})
    experiment["sources"] = [[n, s["file_id"]] for n, s in state.get("sources", {}).items()
                             if s.get("file_id") is not None]
    doc["experiment"] = experiment
    return doc


@dataclasses.dataclass
class SyncReport:
    """What ``sync`` did with each spooled run (lists of spool dir names)."""

    pushed: list = dataclasses.field(default_factory=list)
    already: list = dataclasses.field(default_factory=list)
    live: list = dataclasses.field(default_factory=list)
    failed: list = dataclasses.field(default_factory=list)  # (dir name, reason)
    run_ids: dict = dataclasses.field(default_factory=dict)  # dir name -> _id in the store
    removed: list = dataclasses.field(default_factory=list)  # folders deleted: the store holds all of them
    kept: list = dataclasses.field(default_factory=list)  # (dir name, reason) of examined folders left
    bytes_freed: int = 0

    def summary(self) -> str:
        return (f"{len(self.pushed)} pushed, {len(self.already)} already in the store, "
                f"{len(self.live)} still running (skipped), {len(self.failed)} failed")

    def prune_summary(self) -> str:
        return (f"{len(self.removed)} removed from the spool ({format_bytes(self.bytes_freed)} freed), "
                f"{len(self.kept)} kept")


def format_bytes(n: int) -> str:
    """``n`` bytes in decimal units: 812 B, 41.2 kB, 3.1 MB."""
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} GB"


def sync(url: str | None = None, spool: str | os.PathLike = DEFAULT_SPOOL, db: str | None = None,
         store_dir=None, force: bool = False, timeout_s: float = 5.0, prune: bool = False,
         keep_days: float | None = None, now: dt.datetime | None = None) -> SyncReport:
    """Upload every spooled run not yet in the store and remove the folders the store then provably holds.

    Idempotent (twice = once). Runs whose lock is held by a live process are skipped.
    force: push runs marked synced again. prune: also check every run marked synced against the store,
    upload what it lacks and remove its folder (without it those are trusted and walked past, no query).
    keep_days: keep finished folders this long (None: each run's own ``store.spool_keep_days``).
    now: naive UTC for the keep-days check (default: the current time).
    Raises StoreUnreachable (masked URL) when the store does not answer.
    """
    from .prune import finish_interrupted_removals, prepare_reupload, prune_run
    from .server import connect

    report = SyncReport()
    if prune:
        report.bytes_freed += finish_interrupted_removals(spool)
    candidates = spooled_runs(spool)
    if not candidates:
        return report
    client = connect(url, store_dir, timeout_s=timeout_s)
    try:
        for path in candidates:
            if not (force or prune) and marked_synced(path):
                report.already.append(path.name)
                continue
            try:
                run = SpoolRun.load(path)
            except FileNotFoundError:  # removed meanwhile by its own run or another sync
                continue
            if run.is_live():
                report.live.append(path.name)
                continue
            database = client[db or run.state.get("db") or DEFAULT_DB]
            try:
                push = force or not run.state.get("synced")
                if not push:  # marked synced (prune): the store check decides, a gap is uploaded again
                    result = prune_run(database, run, keep_days=keep_days, now=now)
                    if result.gaps:
                        prepare_reupload(database, run, result.gaps)
                        push = True
                if push:
                    run_id = push_run(database, run)
                    run.state["synced"] = True
                    run.write_state()
                    report.pushed.append(path.name)
                    report.run_ids[path.name] = run_id
                    result = prune_run(database, run, keep_days=keep_days, now=now)
                else:
                    report.already.append(path.name)
            except Exception as exc:
                report.failed.append((path.name, mask_secrets(f"{type(exc).__name__}: {exc}")[:300]))
                continue
            if result.removed:
                report.removed.append(path.name)
                report.bytes_freed += result.bytes
            else:
                report.kept.append((path.name, result.reason))
    finally:
        client.close()
    return report
