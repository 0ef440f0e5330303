"""Run tracking where nothing is lost: a spooling Sacred observer, an idempotent push and ``sync``.

One mechanism serves every case. The local spool (``store.spool``, default ``./runs/spool``) is the
source of truth: every Sacred event is first written to ``<spool>/<run_uid>/`` and then *pushed* to
MongoDB by :func:`push_run`, which is idempotent (run twice = once):

- the run document is matched by ``meta.run_uid`` (a uuid in every run's meta) and gets an integer
  ``_id`` the way Sacred assigns one (max + 1, retried on a duplicate key) at its first push;
- metric documents are replaced by ``(run_id, name)`` with the full arrays, so a point logged while
  the store was down is pushed later and never twice;
- artifacts go to GridFS as ``artifact://runs/<id>/<name>`` unless a file of that name is there.

The documents are Sacred's MongoObserver format, so Omniboard and our leaderboard read both.
When the store is unreachable the run goes on (one warning with the masked URL and the spool dir);
each later event retries; what never made it stays in the spool (the "failure dir") until
``python -m harness sync`` uploads it. A finished run's folder is removed once the store provably
holds all of it (``harness.spool``; ``store.spool_keep_days`` keeps it longer, ``sync --prune``
cleans an old spool). Passwords in URLs are masked before anything is written.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import sys
import time
import uuid
from pathlib import Path

from bson import json_util
from sacred.observers.base import RunObserver
from sacred.utils import SacredError

from harness.store import StoreError, mask_secrets, mask_url, resolve_url

log = logging.getLogger("harness.tracking")

DEFAULT_SPOOL = "runs/spool"
DEFAULT_DB = "clip3d"
RUN_FILE = "run.json"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = "lock"
ARTIFACT_DIR = "artifacts"
SOURCE_DIR = "sources"
DEAD_AFTER_S = 120  # Sacred beats every 10 s: two silent minutes mean the process is gone
PROBABLY_DEAD = "PROBABLY_DEAD"
# Statuses Sacred never leaves: the leaderboard caches the table rows of runs in these (ROW_CACHE).
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "INTERRUPTED", "TIMEOUT"})
# The leaderboard's derived per-run rows, beside ``runs`` (see ``leaderboard.queries.load_runs``).
# A tool that changes the document of a finished run drops its row with ``forget_rows``.
ROW_CACHE = "leaderboard_rows"
FORMAT = "MongoObserver-0.7.0"  # Sacred's document format, so Omniboard reads our runs
_JSON = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=False)


class TrackingError(SacredError):
    """A run cannot be recorded as asked (e.g. queueing while the store is unreachable).

    A SacredError so Sacred's command line prints the message alone, not a stack trace.
    """

    def __init__(self, message: str):
        super().__init__(message, print_traceback=False)


# --------------------------------------------------------------------------------------------
# masking and status (pure)


def mask_doc(value):
    """A copy of ``value`` (dicts, lists, strings) with the password of every MongoDB URL masked."""
    if isinstance(value, str):
        return mask_secrets(value) if "@" in value else value
    if isinstance(value, dict):
        return {k: mask_doc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_doc(v) for v in value]
    return value


def _naive_utc(value):
    if isinstance(value, str):  # written through $set to nx-27017, which stores datetimes as text
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def is_dead(doc: dict, now: dt.datetime | None = None, threshold_s: float = DEAD_AFTER_S) -> bool:
    """True for a RUNNING run whose last sign of life (heartbeat, else start) is older than the threshold.

    now: naive UTC (Sacred's convention) or aware; default: the current time.
    """
    if doc.get("status") != "RUNNING":
        return False
    last = _naive_utc(doc.get("heartbeat") or doc.get("start_time"))
    if not isinstance(last, dt.datetime):
        return False
    now = _naive_utc(now) if now is not None else dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return (now - last).total_seconds() > threshold_s


def effective_status(doc: dict, now: dt.datetime | None = None, threshold_s: float = DEAD_AFTER_S) -> str:
    """The run's status as users should see it: ``PROBABLY_DEAD`` for a silent RUNNING run (kill -9)."""
    if is_dead(doc, now, threshold_s):
        return PROBABLY_DEAD
    return doc.get("status") or "UNKNOWN"


# --------------------------------------------------------------------------------------------
# the spool


def _dumps(obj) -> str:
    return json_util.dumps(obj, json_options=_JSON, default=str)


def _loads(text: str):
    return json_util.loads(text, json_options=_JSON)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SpoolRun:
    """One run's spool dir: ``run.json`` (the document), ``state.json`` (what reached which store),
    ``metrics.jsonl`` (every point, appended), ``artifacts/``, ``sources/`` and a ``lock`` file
    that is flock'ed while the run's process lives."""

    def __init__(self, path: Path, doc: dict, state: dict, metrics: dict):
        self.path = Path(path)
        self.doc = doc
        self.state = state
        self.metrics = metrics  # name -> {"steps": [...], "values": [...], "timestamps": [...]}
        self.pushed_counts: dict[str, int] = {}  # in memory only: points of each metric already pushed
        self._lock_fh = None

    @property
    def uid(self) -> str:
        return self.doc["meta"]["run_uid"]

    @classmethod
    def create(cls, spool: Path, doc: dict) -> SpoolRun:
        path = Path(spool) / doc["meta"]["run_uid"]
        (path / ARTIFACT_DIR).mkdir(parents=True, exist_ok=True)
        run = cls(path, doc, {"run_id": None, "artifacts": {}, "sources": {}, "metric_ids": {},
                              "synced": False, "pushed_to": None}, {})
        run.write_state()
        run.write_doc()
        return run

    @classmethod
    def load(cls, path: Path) -> SpoolRun:
        path = Path(path)
        doc = _loads((path / RUN_FILE).read_text(encoding="utf-8"))
        try:
            state = _loads((path / STATE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = {"run_id": None, "artifacts": {}, "sources": {}, "metric_ids": {}, "synced": False}
        metrics: dict = {}
        metrics_file = path / METRICS_FILE
        if metrics_file.exists():
            for line in metrics_file.read_text(encoding="utf-8").splitlines():
                try:
                    point = _loads(line)
                except ValueError:  # a half-written last line of a killed process
                    continue
                series = metrics.setdefault(point["name"], {"steps": [], "values": [], "timestamps": []})
                series["steps"].append(point["step"])
                series["values"].append(point["value"])
                series["timestamps"].append(point["timestamp"])
        return cls(path, doc, state, metrics)

    def write_doc(self) -> None:
        _write_atomic(self.path / RUN_FILE, _dumps(self.doc))

    def write_state(self) -> None:
        _write_atomic(self.path / STATE_FILE, _dumps(self.state))

    def append_metrics(self, metrics_by_name: dict) -> None:
        """Append Sacred's linearised metrics ({name: {steps, values, timestamps}}) to the spool."""
        lines = []
        for name, series in metrics_by_name.items():
            mine = self.metrics.setdefault(name, {"steps": [], "values": [], "timestamps": []})
            columns = (series["steps"], series["values"], series["timestamps"])
            for step, value, stamp in zip(*columns, strict=True):
                mine["steps"].append(step)
                mine["values"].append(value)
                mine["timestamps"].append(stamp)
                lines.append(_dumps({"name": name, "step": step, "value": value, "timestamp": stamp}))
        if lines:
            with open(self.path / METRICS_FILE, "a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def add_artifact(self, name: str, filename, metadata=None, content_type=None) -> None:
        dest = self.path / ARTIFACT_DIR / hashlib.sha1(name.encode()).hexdigest()[:16]
        shutil.copyfile(filename, dest)
        self.state["artifacts"][name] = {"file": dest.name, "metadata": metadata,
                                         "content_type": content_type, "file_id": None}
        self.write_state()

    def add_sources(self, ex_info: dict) -> None:
        """Copy the experiment's source files so a later sync uploads what actually ran."""
        (self.path / SOURCE_DIR).mkdir(exist_ok=True)
        for name, md5 in ex_info.get("sources", []):
            src = Path(ex_info.get("base_dir", ".")) / name
            dest = self.path / SOURCE_DIR / f"{md5}"
            with contextlib.suppress(OSError):
                if not dest.exists():
                    shutil.copyfile(src, dest)
                self.state["sources"][name] = {"md5": md5, "abs_path": str(src), "file_id": None}
        self.write_state()

    def lock(self) -> None:
        """Hold the run's lock while its process lives (released by the OS on kill -9)."""
        self._lock_fh = open(self.path / LOCK_FILE, "w")
        fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_fh.write(f"{socket.gethostname()}:{os.getpid()}\n")
        self._lock_fh.flush()

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def is_live(self) -> bool:
        """Whether another process holds this run's lock (the run is still going)."""
        if self._lock_fh is not None:
            return True
        try:
            fh = open(self.path / LOCK_FILE, "a")
        except OSError:
            return False
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False


# --------------------------------------------------------------------------------------------
# push: spool state -> MongoDB, idempotent


_LAST_ID: dict = {}  # (client, collection) -> last _id this process allocated: skips rescans in sync


def _insert_autoinc(runs, doc: dict, wanted_id=None) -> int:
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
    raise TrackingError(f"could not allocate a run _id in {runs.full_name} after 100 attempts")


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
        state["run_id"] = found["_id"] if found else _insert_autoinc(runs, _document(run),
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
             "values": series["values"][:count], "timestamps": series["timestamps"][:count]},
            upsert=True, return_document=ReturnDocument.AFTER, projection={"_id": 1})
        state["metric_ids"][name] = str(res["_id"])
        run.pushed_counts[name] = count

    full = _document(run)
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


def forget_rows(db, run_ids) -> None:
    """Drop the leaderboard's cached rows of these runs: the next load rebuilds them from ``runs``."""
    db[ROW_CACHE].delete_many({"_id": {"$in": list(run_ids)}})


def _document(run: SpoolRun) -> dict:
    """The Sacred-format run document from the spool (file ids filled in where uploaded)."""
    doc = dict(run.doc)
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


# --------------------------------------------------------------------------------------------
# the observer


class _Connection:
    """A lazily created pymongo client with short timeouts; never raises on creation."""

    def __init__(self, url: str | None, store_dir, db_name: str, timeout_s: float):
        self.url, self.store_dir, self.db_name, self.timeout_s = url, store_dir, db_name, timeout_s
        self.resolved: str | None = None
        self._client = None

    def db(self):
        import pymongo

        if self._client is None:
            self.resolved = resolve_url(self.url, self.store_dir)
            ms = int(self.timeout_s * 1000)
            self._client = pymongo.MongoClient(self.resolved, serverSelectionTimeoutMS=ms,
                                               connectTimeoutMS=ms, socketTimeoutMS=max(ms * 10, 30000))
        return self._client[self.db_name]

    def describe(self) -> str:
        return mask_url(self.resolved or self.url) or "the embedded store"

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None


class SpoolingMongoObserver(RunObserver):
    """Sacred observer writing every event to the local spool first, then pushing it to MongoDB.

    Never raises into Sacred while a run is going (Sacred drops an observer after its first error);
    only ``queued_event`` fails loudly, because a queued run that reached no store would be lost.

    url: MongoDB URL (None: ``$HARNESS_MONGO_URL``, then the embedded server in ``store_dir``).
    overwrite_id: _id of an existing (queued) run document this run takes over.
    retry_s: while the store is down, try again at most this often.
    final_attempts: pushes tried (``timeout_s`` each, 1 s apart) when the run ends.
    keep_days: keep the finished run's spool folder this many days (0: remove it once the store
    holds all of it; later ones go at ``sync --prune``).
    """

    priority = 30

    def __init__(self, url: str | None = None, db_name: str = DEFAULT_DB,
                 spool: str | os.PathLike = DEFAULT_SPOOL, store_dir=None,
                 overwrite_id: int | None = None, timeout_s: float = 3.0,
                 retry_s: float = 10.0, final_attempts: int = 3, keep_days: float = 0):
        self.connection = _Connection(url, store_dir, db_name, timeout_s)
        self.spool = Path(spool).expanduser().resolve()
        self.overwrite_id = overwrite_id
        self.retry_s = retry_s
        self.final_attempts = final_attempts
        self.keep_days = float(keep_days or 0)
        self.run: SpoolRun | None = None
        self.online = False
        self._next_try = 0.0
        self._warned = False
        import threading

        self._mutex = threading.RLock()  # Sacred's heartbeat thread and the main thread both call us

    def __repr__(self):
        return f"SpoolingMongoObserver({self.connection.describe()}, spool={self.spool})"

    # -- helpers

    def _push(self, force: bool = False) -> bool:
        """Push the spool state; on failure keep going (warn once per outage). True when pushed."""
        if self.run is None:
            return False
        now = time.monotonic()
        if not force and not self.online and now < self._next_try:
            return False
        try:
            run_id = push_run(self.connection.db(), self.run)
        except Exception as exc:  # pymongo errors, StoreError, OSError: the run must go on
            self._next_try = now + self.retry_s
            # Resolve again next time: a restarted embedded server may listen on another port.
            self.connection.close()
            if self.online or not self._warned:
                self._warn(exc)
            self.online = False
            return False
        if not self.online and self._warned:
            log.warning("store %s answers again: run %s is up to date", self.connection.describe(), run_id)
        self.online = True
        self._warned = False
        return True

    def _warn(self, exc: Exception) -> None:
        self._warned = True
        reason = mask_secrets(f"{type(exc).__name__}: {exc}").splitlines()[0][:200]
        log.warning("store %s unreachable (%s); the run goes on and is kept in %s - "
                    "run `python -m harness sync` to upload it", self.connection.describe(), reason,
                    self.run.path if self.run else self.spool)

    def _new_doc(self, ex_info, command, host_info, config, meta_info, status, **extra) -> dict:
        from sacred.serializer import flatten

        meta = dict(meta_info)
        meta.setdefault("run_uid", uuid.uuid4().hex)
        experiment = {k: v for k, v in dict(ex_info).items() if k != "sources"}
        doc = {"experiment": experiment, "format": FORMAT, "command": command, "host": dict(host_info),
               "config": flatten(config), "meta": flatten(meta), "status": status, **extra}
        return mask_doc(doc)

    # -- Sacred events

    def queued_event(self, ex_info, command, host_info, queue_time, config, meta_info, _id):
        meta = {**meta_info, "run_uid": uuid.uuid4().hex}
        doc = self._new_doc(ex_info, command, host_info, config, meta, "QUEUED")
        doc["experiment"]["sources"] = []
        try:
            db = self.connection.db()
            return _insert_autoinc(db["runs"], doc, _id)
        except Exception as exc:
            raise TrackingError(
                f"cannot queue the run: store {self.connection.describe()} is unreachable "
                f"({type(exc).__name__}). Queued runs live only in the store; start it "
                f"(`python -m harness.store start`) or fix store.url / $HARNESS_MONGO_URL."
            ) from None

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        with self._mutex:
            self.online, self._warned, self._next_try = False, False, 0.0
            meta = {**meta_info, "run_uid": uuid.uuid4().hex}
            doc = self._new_doc(ex_info, command, host_info, config, meta, "RUNNING",
                                start_time=start_time, resources=[], artifacts=[], captured_out="",
                                info={}, heartbeat=None)
            self.spool.mkdir(parents=True, exist_ok=True)
            self.run = SpoolRun.create(self.spool, doc)
            self.run.lock()
            claimed = (meta_info.get("queued") or {}).get("run_id")
            if self.overwrite_id is not None or claimed is not None:
                taken = self.overwrite_id if self.overwrite_id is not None else claimed
                self.run.state["run_id"] = int(taken)
            elif _id is not None:
                self.run.state["wanted_id"] = _id
            self.run.state["db"] = self.connection.db_name
            self.run.state["keep_days"] = self.keep_days  # sync --prune honours the run's own setting
            self.run.add_sources(ex_info)
            self._push(force=True)
            return self.run.state.get("run_id")

    def heartbeat_event(self, info, captured_out, beat_time, result):
        from sacred.serializer import flatten

        with self._mutex:
            if self.run is None:
                return
            self.run.doc.update(mask_doc({"info": flatten(info), "captured_out": captured_out,
                                          "heartbeat": beat_time, "result": flatten(result)}))
            self.run.write_doc()
            self._push()

    def log_metrics(self, metrics_by_name, info):
        with self._mutex:
            if self.run is not None:
                self.run.append_metrics(metrics_by_name)

    def resource_event(self, filename):
        with self._mutex:
            if self.run is None:
                return
            entry = [str(filename), _md5(Path(filename))]
            if entry not in self.run.doc["resources"]:
                self.run.doc["resources"].append(entry)
                self.run.write_doc()

    def artifact_event(self, name, filename, metadata=None, content_type=None):
        with self._mutex:
            if self.run is None:
                return
            self.run.add_artifact(name, filename, metadata, content_type)
            self._push()

    def completed_event(self, stop_time, result):
        from sacred.serializer import flatten

        self._finish({"stop_time": stop_time, "result": mask_doc(flatten(result)), "status": "COMPLETED"})

    def interrupted_event(self, interrupt_time, status):
        self._finish({"stop_time": interrupt_time, "status": status})

    def failed_event(self, fail_time, fail_trace):
        self._finish({"stop_time": fail_time, "status": "FAILED", "fail_trace": mask_doc(fail_trace)})

    def _finish(self, fields: dict) -> None:
        with self._mutex:
            if self.run is None:
                return
            self.run.doc.update(fields)
            self.run.write_doc()
            pushed = False
            for attempt in range(max(1, self.final_attempts)):
                if self._push(force=True):
                    pushed = True
                    break
                if attempt + 1 < self.final_attempts:
                    time.sleep(1.0)
            if pushed:
                self.run.state["synced"] = True
                self.run.write_state()
            else:
                log.warning("run kept in %s; upload it with `python -m harness sync`", self.run.path)
            if pushed and self.keep_days <= 0:
                self._prune()  # still holding the lock: no sync can take the folder meanwhile
            self.run.unlock()

    def _prune(self) -> None:
        """Remove the finished run's spool folder if the store provably holds all of it; else say why not."""
        from harness.spool import prune_run

        try:
            result = prune_run(self.connection.db(), self.run, keep_days=0, holding_lock=True)
        except Exception as exc:  # the run is recorded; only its cleanup failed
            result = None
            reason = f"checking the store failed ({type(exc).__name__})"
        else:
            reason = result.reason
        if result is None or not result.removed:
            log.warning("run kept in %s: %s; `python -m harness sync --prune` uploads what is missing "
                        "and removes it", self.run.path, reason)

    def join(self):
        pass


def make_observer(store_cfg: dict | None = None, url: str | None = None, **kwargs) -> SpoolingMongoObserver:
    """The observer for a run with the given ``store`` config (url, dir, db, spool, spool_keep_days);
    ``url`` wins over it."""
    store_cfg = dict(store_cfg or {})
    kwargs.setdefault("keep_days", store_cfg.get("spool_keep_days") or 0)
    return SpoolingMongoObserver(url=url or store_cfg.get("url"), db_name=store_cfg.get("db") or DEFAULT_DB,
                                 spool=store_cfg.get("spool") or DEFAULT_SPOOL,
                                 store_dir=store_cfg.get("dir"), **kwargs)


# --------------------------------------------------------------------------------------------
# sync


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


def spooled_runs(spool: str | os.PathLike = DEFAULT_SPOOL) -> list[Path]:
    """The spool dirs (one per run) under ``spool``, oldest first (not ``.``-named ones being removed)."""
    root = Path(spool)
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if not p.name.startswith(".") and (p / RUN_FILE).is_file()]
    return sorted(dirs, key=lambda p: (p / RUN_FILE).stat().st_mtime)


def _marked_synced(path: Path) -> bool:
    """Whether the spool dir says its run was fully pushed (reads ``state.json`` alone: cheap)."""
    try:
        return bool(_loads((path / STATE_FILE).read_text(encoding="utf-8")).get("synced"))
    except (OSError, ValueError):
        return False


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
    from harness.spool import finish_interrupted_removals, prepare_reupload, prune_run
    from harness.store import connect

    report = SyncReport()
    if prune:
        report.bytes_freed += finish_interrupted_removals(spool)
    candidates = spooled_runs(spool)
    if not candidates:
        return report
    client = connect(url, store_dir, timeout_s=timeout_s)
    try:
        for path in candidates:
            if not (force or prune) and _marked_synced(path):
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


def main_sync(argv: list[str] | None = None) -> int:
    """``python -m harness sync``: upload spooled runs to the resolved store, remove what it holds."""
    parser = argparse.ArgumentParser(prog="python -m harness sync",
                                     description="Upload runs kept in the local spool to the run store "
                                                 "(idempotent: running it twice uploads nothing twice), "
                                                 "then remove the spool folders the store holds completely.")
    parser.add_argument("--url", default=None, help="MongoDB URL (default: $HARNESS_MONGO_URL, then the "
                                                    "embedded store)")
    parser.add_argument("--spool", default=DEFAULT_SPOOL, help=f"spool dir (default: {DEFAULT_SPOOL})")
    parser.add_argument("--db", default=None, help="database (default: the one each run was meant for)")
    parser.add_argument("--store-dir", default=None, help="embedded store dir (default: $HARNESS_STORE_DIR "
                                                          "or runs/store)")
    parser.add_argument("--force", action="store_true", help="push runs already marked as synced again")
    parser.add_argument("--prune", action="store_true",
                        help="also check runs marked as synced against the store, upload what it lacks "
                             "and remove every finished run's folder the store holds completely")
    parser.add_argument("--keep-days", type=float, default=None, metavar="N",
                        help="keep finished runs' folders N days (default: each run's store.spool_keep_days)")
    args = parser.parse_args(argv)
    try:
        report = sync(args.url, args.spool, args.db, args.store_dir, force=args.force, prune=args.prune,
                      keep_days=args.keep_days)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, reason in report.failed:
        print(f"failed {name}: {reason}", file=sys.stderr)
    for name in report.live:
        print(f"skipped {name}: its run is still going")
    for name, reason in report.kept:
        print(f"kept {name}: {reason}")
    print(f"sync {args.spool}: {report.summary()}; {report.prune_summary()}")
    if report.already and not (args.prune or args.force):
        print(f"{len(report.already)} runs marked as uploaded stay in the spool: "
              f"`python -m harness sync --prune` checks them against the store and removes them")
    return 1 if report.failed else 0
