"""The Sacred observer that loses nothing: every event goes to the local spool first, then to the
store through ``runstore`` (idempotent push; ``python -m harness sync`` uploads what never made it).

The spool, push, sync, pruning and masking live in ``runstore``; this module is the Sacred side:
``SpoolingMongoObserver`` / ``make_observer`` and the ``sync`` command line. The documents are
Sacred's MongoObserver format, so Omniboard and our leaderboard read them. When the store is
unreachable the run goes on (one warning with the masked URL and the spool dir); each later event
retries. A finished run's folder is removed once the store provably holds all of it
(``store.spool_keep_days`` keeps it longer, ``sync --prune`` cleans an old spool).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sacred.observers.base import RunObserver
from sacred.utils import SacredError

from registries import as_dict
from runstore import (
    DEFAULT_DB,
    DEFAULT_SPOOL,
    SpoolRun,
    StoreError,
    mask_doc,
    mask_secrets,
    mask_url,
    push_run,
    resolve_url,
    sync,
)
from runstore.push import insert_autoinc
from runstore.spool import md5

log = logging.getLogger("harness.tracking")

FORMAT = "MongoObserver-0.7.0"  # Sacred's document format, so Omniboard reads our runs


class TrackingError(SacredError):
    """A run cannot be recorded as asked (e.g. queueing while the store is unreachable).

    A SacredError so Sacred's command line prints the message alone, not a stack trace.
    """

    def __init__(self, message: str):
        super().__init__(message, print_traceback=False)


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
            return insert_autoinc(db["runs"], doc, _id)
        except Exception as exc:
            raise TrackingError(
                f"cannot queue the run: store {self.connection.describe()} is unreachable "
                f"({type(exc).__name__}). Queued runs live only in the store; start it "
                f"(`python -m runstore start`) or fix store.url / $HARNESS_MONGO_URL."
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
            entry = [str(filename), md5(Path(filename))]
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
        from runstore.prune import prune_run

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


@dataclass(frozen=True)
class StoreConfig:
    """The ``store`` config section (every default: harness/experiment.py)."""

    url: str | None
    dir: str | None
    db: str
    spool: str
    spool_keep_days: float
    upload_checkpoint: bool


def make_observer(store_cfg: StoreConfig | Mapping | None = None, url: str | None = None,
                  **kwargs) -> SpoolingMongoObserver:
    """The observer for a run with the given ``store`` config (url, dir, db, spool, spool_keep_days);
    ``url`` wins over it. A mapping may hold some keys only (other experiments: benchmarks, tests)."""
    store_cfg = as_dict(store_cfg) if isinstance(store_cfg, StoreConfig) else dict(store_cfg or {})
    kwargs.setdefault("keep_days", store_cfg.get("spool_keep_days") or 0)
    return SpoolingMongoObserver(url=url or store_cfg.get("url"), db_name=store_cfg.get("db") or DEFAULT_DB,
                                 spool=store_cfg.get("spool") or DEFAULT_SPOOL,
                                 store_dir=store_cfg.get("dir"), **kwargs)




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
