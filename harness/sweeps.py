"""Sweeps: queue runs in the store (Sacred's ``--queue``) and let workers on any machine run them.

``python -m harness queue [COMMAND] with k=v ...`` stores a QUEUED run document (config resolved,
overrides applied) and exits. ``python -m harness worker`` claims queued runs one at a time with an
atomic ``find_one_and_update`` (QUEUED → CLAIMED, oldest first), so several workers on several
machines sharing one MongoDB never run a job twice, and runs each with the queued config and
command; the run's observer takes over the queued document (same ``_id``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import logging
import os
import socket
import sys
import time
import traceback

from runstore import StoreError, connect, mask_secrets

log = logging.getLogger("harness.sweeps")

DEFAULT_EXPERIMENT = "harness.commands:ex"


class SweepError(RuntimeError):
    """A queue or worker request cannot be carried out as given."""


def load_experiment(spec: str = DEFAULT_EXPERIMENT):
    """The Sacred Experiment named ``module:attribute`` (default: the harness's one experiment)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SweepError(f"--experiment {spec!r} must look like 'package.module:attribute', "
                         f"e.g. {DEFAULT_EXPERIMENT!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SweepError(f"--experiment {spec!r}: cannot load it ({exc})") from None


def enqueue(argv: list[str], ex=None) -> int:
    """``python -m harness queue [COMMAND] [with k=v ...]``: store the run as QUEUED for the workers.

    argv: the usual Sacred command line without the program name. Returns an exit status.
    """
    ex = ex if ex is not None else load_experiment()
    args = list(argv)
    if "-q" not in args and "--queue" not in args:
        args.append("--queue")
    try:
        run = ex.run_commandline(["harness", *args])
    except SystemExit as exc:  # Sacred printed why (bad command, unreachable store)
        return exc.code if isinstance(exc.code, int) else 1
    if run is None or run.status != "QUEUED":
        return 1
    print(f"queued run {run._id}")
    return 0


def claim(db, worker: str | None = None, collection: str = "runs") -> dict | None:
    """Atomically take the oldest QUEUED run (QUEUED → CLAIMED); None when the queue is empty."""
    from pymongo import ReturnDocument

    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    return db[collection].find_one_and_update(
        {"status": "QUEUED"},
        {"$set": {"status": "CLAIMED", "claimed_by": worker,
                  "claim_time": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)}},
        sort=[("_id", 1)], return_document=ReturnDocument.AFTER)


def job_config(doc: dict, url: str | None, db_name: str) -> dict:
    """Config updates that rerun a queued document: its config, with this worker's store.

    The queued config holds store.url with its password masked, so the worker's own URL replaces it.
    """
    config = {k: v for k, v in (doc.get("config") or {}).items()}
    if isinstance(config.get("store"), dict):
        config["store"] = {**config["store"], "url": url, "db": db_name}
    return config


def run_job(ex, doc: dict, url: str | None, db, worker: str):
    """Run one claimed document with ``ex``; a job that cannot start is marked FAILED, not left CLAIMED."""
    meta = {"queued": {"run_id": doc["_id"], "claimed_by": worker,
                       "queue_time": (doc.get("meta") or {}).get("queue_time")}}
    try:
        return ex.run(command_name=doc.get("command"), config_updates=job_config(doc, url, db.name),
                      meta_info=meta)
    except Exception:
        trace = mask_secrets(traceback.format_exc())
        current = db["runs"].find_one({"_id": doc["_id"]}, {"status": 1})
        if current and current.get("status") == "CLAIMED":  # failed before the observer took over
            db["runs"].update_one({"_id": doc["_id"]}, {"$set": {"status": "FAILED",
                                                                 "fail_trace": trace.splitlines(True)}})
        log.error("job %s failed:\n%s", doc["_id"], trace)
        return None


def work(ex, url: str | None = None, db_name: str = "clip3d", store_dir=None, forever: bool = False,
         poll_s: float = 5.0, max_jobs: int | None = None) -> list[int]:
    """Claim and run queued jobs until the queue is empty (or forever); return the ids run here."""
    client = connect(url, store_dir)
    db = client[db_name]
    worker = f"{socket.gethostname()}:{os.getpid()}"
    done: list[int] = []
    try:
        while max_jobs is None or len(done) < max_jobs:
            doc = claim(db, worker)
            if doc is None:
                if not forever:
                    break
                time.sleep(poll_s)
                continue
            log.warning("worker %s runs queued job %s (%s)", worker, doc["_id"], doc.get("command"))
            run_job(ex, doc, url, db, worker)
            done.append(doc["_id"])
    finally:
        client.close()
    return done


def main_worker(argv: list[str] | None = None) -> int:
    """``python -m harness worker``: run queued jobs from the store until none is left."""
    parser = argparse.ArgumentParser(prog="python -m harness worker",
                                     description="Claim queued runs from the store and run them "
                                                 "(safe with many workers on many machines).")
    parser.add_argument("--url", default=None, help="MongoDB URL (default: $HARNESS_MONGO_URL, then the "
                                                    "embedded store)")
    parser.add_argument("--db", default="clip3d", help="database holding the queue (default: clip3d)")
    parser.add_argument("--store-dir", default=None, help="embedded store dir")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT,
                        help=f"Sacred experiment as module:attribute (default: {DEFAULT_EXPERIMENT})")
    parser.add_argument("--forever", action="store_true", help="keep polling when the queue is empty")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between polls with --forever")
    parser.add_argument("--max-jobs", type=int, default=None, help="stop after this many jobs")
    args = parser.parse_args(argv)
    if args.poll <= 0:
        parser.error(f"--poll must be > 0 seconds, got {args.poll}")
    try:
        ex = load_experiment(args.experiment)
        done = work(ex, args.url, args.db, args.store_dir, args.forever, args.poll, args.max_jobs)
    except (StoreError, SweepError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"worker ran {len(done)} job(s): {', '.join(map(str, done)) or '-'}")
    return 0
