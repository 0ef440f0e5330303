"""The spool's lifecycle: a run's folder goes once the store provably holds all of it.

A spooled run (``runstore.spool.SpoolRun``) is removed when

1. it is finished (status COMPLETED, FAILED, INTERRUPTED or TIMEOUT) and no process holds its lock,
2. it finished at least ``keep_days`` ago (``store.spool_keep_days``, recorded in its ``state.json``;
   0 = remove as soon as it is safely stored), and
3. the store holds every part of it, checked against the store itself, not against ``state.json``:
   the run document (same ``meta.run_uid``, same finished status), every metric point (point counts
   per metric name), every artifact and source file in GridFS (present, same size).

The observer calls :func:`prune_run` right after the final push of a run; ``sync`` calls it after each
push, and ``sync --prune`` for every spooled run (see ``runstore.push.sync``). A folder is renamed
to ``.<name>.removing`` before it is deleted, so an interrupted delete never leaves a half-deleted
run that ``sync`` would push again; the next prune finishes it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import os
import shutil
from pathlib import Path

from .spool import ARTIFACT_DIR, RUN_FILE, SOURCE_DIR
from .status import FINAL_STATUSES, naive_utc

REMOVING_SUFFIX = ".removing"


@dataclasses.dataclass
class PruneResult:
    """What happened to one spool folder: removed (``bytes`` freed) or kept (``reason``, and the
    ``gaps`` when it was kept because the store lacks part of it)."""

    name: str
    removed: bool
    bytes: int = 0
    reason: str | None = None
    gaps: list = dataclasses.field(default_factory=list)


def folder_bytes(path: Path) -> int:
    """Total size of the files under ``path`` (0 when it is gone)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # a concurrent prune got there first
                pass
    return total


def finished_at(run) -> dt.datetime:
    """When the run finished, naive UTC: its ``stop_time``, else the last write of ``run.json``."""

    stop = naive_utc(run.doc.get("stop_time"))
    if isinstance(stop, dt.datetime):
        return stop
    mtime = (run.path / RUN_FILE).stat().st_mtime
    return dt.datetime.fromtimestamp(mtime, dt.timezone.utc).replace(tzinfo=None)


@dataclasses.dataclass(frozen=True)
class Gap:
    """One part of a spooled run the store lacks.

    kind: run | other-run (our _id holds another run) | status | metric | artifact | source.
    stale_id: the GridFS id of this run's artifact file whose size differs from the spool's copy.
    """

    kind: str
    name: str
    text: str
    stale_id: object = None

    def __str__(self) -> str:
        return self.text


def missing_in_store(db, run, *, collection_prefix: str = "") -> list[Gap]:
    """What of the spooled ``run`` the store lacks; empty when the store holds all of it.

    Reads the store (3 queries and one per artifact), never the spool's own idea of what was
    uploaded, so a wiped or different store, a lost metric point or a deleted GridFS file all show.
    """

    run_id = run.state.get("run_id")
    if run_id is None:
        return [Gap("run", "", "no _id yet: the run was never uploaded")]
    doc = db[f"{collection_prefix}runs"].find_one({"_id": run_id})
    if doc is None:
        return [Gap("run", "", f"no run document _id={run_id}")]
    uid = (doc.get("meta") or {}).get("run_uid")
    if uid != run.uid:
        return [Gap("other-run", "", f"run document _id={run_id} belongs to another run (run_uid {uid})")]
    gaps = []
    if doc.get("status") != run.doc.get("status"):
        gaps.append(Gap("status", "", f"status in the store is {doc.get('status')}, "
                                      f"in the spool {run.doc.get('status')}"))

    stored = {m["name"]: m for m in db[f"{collection_prefix}metrics"].find(
        {"run_id": run_id}, {"name": 1, "steps": 1, "values": 1})}
    for name, series in run.metrics.items():
        want = len(series["steps"])
        have = stored.get(name)
        got = 0 if have is None else min(len(have.get("steps") or []), len(have.get("values") or []))
        if got < want:
            gaps.append(Gap("metric", name, f"metric {name!r}: {got} of {want} points in the store"))

    # GridFS writes a file's document after all its chunks, so a files document of the right length
    # means the whole content is there.
    files = db["fs.files"]
    artifacts = run.state.get("artifacts") or {}
    listed = {a.get("name") for a in doc.get("artifacts") or []}
    names = {f"artifact://{collection_prefix}runs/{run_id}/{name}": name for name in artifacts}
    # One query per artifact: nx-27017 answers ``$in`` on fs.files' filename with nothing.
    found = {}
    for filename in names:
        for f in files.find({"filename": filename}, {"length": 1}).limit(1):
            found[filename] = f
    for filename, name in names.items():
        size = _size(run.path / ARTIFACT_DIR / artifacts[name]["file"])
        if filename not in found:
            gaps.append(Gap("artifact", name, f"artifact {name!r}: not in GridFS"))
        elif size is not None and found[filename].get("length") != size:
            gaps.append(Gap("artifact", name, f"artifact {name!r}: {found[filename].get('length')} bytes in "
                                              f"GridFS, {size} in the spool", found[filename]["_id"]))
        elif name not in listed:
            gaps.append(Gap("artifact", name, f"artifact {name!r}: not listed in the run document"))

    sources = run.state.get("sources") or {}
    ids = [s["file_id"] for s in sources.values() if s.get("file_id") is not None]
    lengths = {}
    if ids:
        lengths = {f["_id"]: f.get("length") for f in files.find({"_id": {"$in": ids}}, {"length": 1})}
    listed = {entry[0] for entry in (doc.get("experiment") or {}).get("sources") or []}
    for name, src in sources.items():
        size = _size(run.path / SOURCE_DIR / src["md5"])
        if src.get("file_id") not in lengths:
            gaps.append(Gap("source", name, f"source {name!r}: not in GridFS"))
        elif size is not None and lengths[src["file_id"]] != size:
            gaps.append(Gap("source", name, f"source {name!r}: {lengths[src['file_id']]} bytes in GridFS, "
                                            f"{size} in the spool"))
        elif name not in listed:
            gaps.append(Gap("source", name, f"source {name!r}: not listed in the run document"))
    return gaps


def prepare_reupload(db, run, gaps: list[Gap]) -> None:
    """Make the next ``push_run`` upload again what ``missing_in_store`` found missing.

    A push rewrites the document and (from a freshly loaded spool) every metric anyway; files marked
    as uploaded are skipped, so their marks go, and the whole run's when its document is missing.
    An artifact file of the wrong size is deleted (its name is this run's alone; the spool keeps the
    right copy), else the push would keep it. A source of the wrong size stays: other runs share it.
    """
    import gridfs

    for gap in gaps:
        if gap.stale_id is not None:
            gridfs.GridFS(db).delete(gap.stale_id)
    state = run.state
    if any(gap.kind in ("run", "other-run") for gap in gaps):
        # A document of another run under our _id (a different store): upload under a new _id
        # rather than overwrite that run.
        state["run_id"] = None
        state.pop("wanted_id", None)
        state["metric_ids"] = {}
        for entry in [*(state.get("artifacts") or {}).values(), *(state.get("sources") or {}).values()]:
            entry["file_id"] = None
    for gap in gaps:
        if gap.kind in ("artifact", "source"):
            entry = (state.get(f"{gap.kind}s") or {}).get(gap.name)
            if entry is not None:
                entry["file_id"] = None
    run.pushed_counts.clear()


def describe(gaps: list[Gap], at_most: int = 3) -> str:
    """The first few gaps on one line."""
    more = f" (+{len(gaps) - at_most} more)" if len(gaps) > at_most else ""
    return "; ".join(map(str, gaps[:at_most])) + more


def prune_run(db, run, *, keep_days: float | None = None, now: dt.datetime | None = None,
              collection_prefix: str = "", holding_lock: bool = False) -> PruneResult:
    """Remove ``run``'s spool folder if it is finished, old enough and completely in the store.

    keep_days: None = the run's own setting (``state.json``, recorded from ``store.spool_keep_days``).
    now: naive UTC (default: the current time). Never removes a folder whose lock another process
    holds; the lock is held from the store check until the folder is gone.
    holding_lock: the caller (the run's own observer) holds the lock already.
    """

    name = run.path.name
    status = run.doc.get("status")
    if status not in FINAL_STATUSES:
        return PruneResult(name, False, reason=f"not finished (status {status})")
    if keep_days is None:
        keep_days = float(run.state.get("keep_days") or 0)
    if keep_days > 0:
        now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        until = finished_at(run) + dt.timedelta(days=keep_days)
        if now < until:
            return PruneResult(name, False, reason=f"kept until {until:%Y-%m-%d %H:%M} UTC "
                                                   f"(store.spool_keep_days={keep_days:g})")
    with contextlib.ExitStack() as stack:
        if not holding_lock:
            try:
                lock = stack.enter_context(open(run.path / "lock", "a"))
            except FileNotFoundError:
                return PruneResult(name, False, reason="already removed")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return PruneResult(name, False, reason="still running (its lock is held)")
        gaps = missing_in_store(db, run, collection_prefix=collection_prefix)
        if gaps:
            return PruneResult(name, False, reason=f"not completely in the store: {describe(gaps)}",
                               gaps=gaps)
        size = folder_bytes(run.path)
        doomed = run.path.with_name(f".{name}{REMOVING_SUFFIX}")
        try:
            os.rename(run.path, doomed)
        except FileNotFoundError:
            return PruneResult(name, False, reason="already removed")
        remove_tree(doomed)
    return PruneResult(name, True, bytes=size)


def remove_tree(path: Path) -> None:
    """Delete ``path``; files a concurrent prune already deleted are no error."""
    def ignore_gone(_func, _path, exc_info):
        if not isinstance(exc_info[1], FileNotFoundError):
            raise exc_info[1]

    shutil.rmtree(path, onerror=ignore_gone)


def finish_interrupted_removals(spool) -> int:
    """Delete the ``.<name>.removing`` folders an interrupted prune left; return the bytes freed.

    Safe: a folder is renamed so only after the store check passed.
    """
    root = Path(spool)
    if not root.is_dir():
        return 0
    freed = 0
    for path in root.iterdir():
        if path.name.startswith(".") and path.name.endswith(REMOVING_SUFFIX) and path.is_dir():
            freed += folder_bytes(path)
            remove_tree(path)
    return freed


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # nothing local to compare with: presence in GridFS has to do
        return None
