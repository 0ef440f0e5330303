"""Recording runs: the idempotent spool push (``runstore.push_run``, what ``sync`` and the
observer use) against plain pymongo ``insert_many`` of the same documents (the floor: one batched,
non-idempotent write, no spool, no id allocation).

1,000 run records, each with one 100-point metric, into the embedded nx-27017 store.

And the spool's walk: ``sync`` of a few new runs over a spool that still holds 5,000 runs already in
the store (what it held before finished runs were pruned) against the same sync over a pruned spool,
plus the one-off ``sync --prune`` of those 5,000 (``runstore.prune``).
"""
import copy
import datetime as dt
import time
import uuid

import pymongo

from runstore import SpoolRun, push_run

POINTS = 100


def _doc(i: int) -> dict:
    now = dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i)
    return {"experiment": {"name": "bench", "base_dir": "/x", "dependencies": [], "mainfile": "b.py"},
            "format": "MongoObserver-0.7.0", "command": "main", "host": {"hostname": "h"},
            "start_time": now, "heartbeat": now, "stop_time": now, "status": "COMPLETED",
            "config": {"seed": i, "model": {"name": "clip3d-tiny"}, "train": {"lr": 1e-3, "mode": "full"}},
            "meta": {"run_uid": uuid.uuid4().hex, "command": "main", "options": {}},
            "resources": [], "artifacts": [], "captured_out": "x" * 200, "info": {},
            "result": {"metrics": {"i2t_R@1": 0.1 + i * 1e-4, "t2i_R@1": 0.2}}}


def _series(i: int) -> dict:
    stamp = dt.datetime(2026, 1, 1)
    return {"steps": list(range(POINTS)), "values": [1.0 / (s + 1 + i) for s in range(POINTS)],
            "timestamps": [stamp] * POINTS}


def test_push_runs_vs_insert_many(benchmark, store_url, tmp_path):
    n = 20 if benchmark.disabled else 1000
    docs = [_doc(i) for i in range(n)]
    spooled = []
    for i, doc in enumerate(docs):
        run = SpoolRun.create(tmp_path / "spool", copy.deepcopy(doc))
        run.metrics = {"loss": _series(i)}
        spooled.append(run)
    client = pymongo.MongoClient(store_url)

    # reference: one insert_many of the run documents and one of the metric documents
    ref_db = client[f"ref{uuid.uuid4().hex[:8]}"]
    t0 = time.perf_counter()
    ref_db.runs.insert_many([{**copy.deepcopy(d), "_id": k + 1} for k, d in enumerate(docs)])
    ref_db.metrics.insert_many([{"run_id": k + 1, "name": "loss", **_series(k)} for k in range(n)])
    ref_s = time.perf_counter() - t0

    def setup():
        for run in spooled:  # a fresh store and never-pushed spool state each round
            run.state.update(run_id=None, metric_ids={}, synced=False)
            run.pushed_counts.clear()
        return (client[f"push{uuid.uuid4().hex[:8]}"],), {}

    def push_all(db):
        for run in spooled:
            push_run(db, run)
        return db

    db = benchmark.pedantic(push_all, setup=setup, rounds=1 if benchmark.disabled else 2, iterations=1)
    assert db.runs.count_documents({}) == n and db.metrics.count_documents({}) == n
    assert sorted(d["_id"] for d in db.runs.find({}, {"_id": 1})) == list(range(1, n + 1))
    push_all(db)  # idempotent: a second push adds nothing
    assert db.runs.count_documents({}) == n and db.metrics.count_documents({}) == n

    push_s = benchmark.stats.stats.min if not benchmark.disabled else None
    if push_s is None:
        t0 = time.perf_counter()
        push_all(db)
        push_s = time.perf_counter() - t0
    benchmark.extra_info.update(
        runs=n, push_runs_per_s=n / push_s, insert_many_runs_per_s=n / ref_s,
        slowdown_vs_insert_many=push_s / ref_s)
    client.close()


# --------------------------------------------------------------------------------------------
# the spool's walk: what every `sync` pays for the folders it leaves behind


def _stored_runs(spool, db, n: int, points: int = 20) -> None:
    """``n`` finished runs spooled *and* already in ``db`` (what the spool held before pruning existed).

    Files are written in the spool's format directly and the store records with ``insert_many``:
    pushing 5,000 runs one by one would take minutes of setup.
    """
    from bson import Binary, ObjectId

    from runstore.spool import ARTIFACT_DIR, METRICS_FILE, RUN_FILE, STATE_FILE
    from runstore.spool import dumps as _dumps

    stamp = dt.datetime(2026, 1, 1)
    content = b"artifact " * 100
    runs, metrics, files, chunks = [], [], [], []
    for i in range(n):
        run_id, file_id, metric_id = i + 1, ObjectId(), ObjectId()
        doc = {**_doc(i), "artifacts": [{"name": "notes.txt", "file_id": file_id}],
               "info": {"metrics": [{"name": "loss", "id": str(metric_id)}]}}
        path = spool / doc["meta"]["run_uid"]
        (path / ARTIFACT_DIR).mkdir(parents=True)
        (path / RUN_FILE).write_text(_dumps(doc))
        (path / STATE_FILE).write_text(_dumps({
            "run_id": run_id, "synced": True, "db": db.name, "keep_days": 0, "sources": {},
            "metric_ids": {"loss": str(metric_id)},
            "artifacts": {"notes.txt": {"file": "a1", "metadata": None, "content_type": None,
                                        "file_id": file_id}}}))
        (path / ARTIFACT_DIR / "a1").write_bytes(content)
        (path / METRICS_FILE).write_text("".join(
            _dumps({"name": "loss", "step": s, "value": 1.0 / (s + 1), "timestamp": stamp}) + "\n"
            for s in range(points)))
        (path / "lock").write_text("")
        runs.append({**doc, "_id": run_id})
        metrics.append({"_id": metric_id, "run_id": run_id, "name": "loss", "steps": list(range(points)),
                        "values": [1.0 / (s + 1) for s in range(points)], "timestamps": [stamp] * points})
        files.append({"_id": file_id, "filename": f"artifact://runs/{run_id}/notes.txt",
                      "length": len(content), "chunkSize": 261120, "uploadDate": stamp, "metadata": None})
        chunks.append({"files_id": file_id, "n": 0, "data": Binary(content)})
    for name, docs in (("runs", runs), ("metrics", metrics), ("fs.files", files), ("fs.chunks", chunks)):
        db[name].insert_many(docs)


def _new_runs(spool, k: int, tmp_path) -> None:
    """``k`` finished runs the store has not seen (store down when they ended), through the spool API."""
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"artifact " * 100)
    for i in range(k):
        run = SpoolRun.create(spool, _doc(10_000 + i))
        run.append_metrics({"loss": _series(i)})
        run.add_artifact("notes.txt", notes)


def test_sync_over_a_pruned_spool_vs_5000_stored_runs(benchmark, store_url, tmp_path):
    """`sync` with nothing to upload: over a spool still holding 5,000 stored runs vs over the pruned spool.

    References measured here: that walk before pruning (reading each ``state.json``), the walk the
    previous `sync` made (loading every folder), and a sync that pushes ``new`` runs before/after.
    """
    from runstore import spooled_runs, sync
    from runstore.prune import folder_bytes

    n, new = (50, 2) if benchmark.disabled else (5000, 10)
    client = pymongo.MongoClient(store_url)
    db = client[f"spool{uuid.uuid4().hex[:8]}"]
    spool = tmp_path / "spool"
    _stored_runs(spool, db, n)
    spool_bytes = folder_bytes(spool)

    # references: the walk before pruning, as sync does it now and as it did before (whole folders)
    t0 = time.perf_counter()
    assert len([SpoolRun.load(p) for p in spooled_runs(spool)]) == n
    full_load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    walk = sync(store_url, spool, db=db.name)
    before_s = time.perf_counter() - t0
    assert len(walk.already) == n and not walk.pushed and not walk.removed
    _new_runs(spool, new, tmp_path)
    t0 = time.perf_counter()
    pushing = sync(store_url, spool, db=db.name)
    new_before_s = time.perf_counter() - t0
    assert len(pushing.pushed) == new and len(pushing.removed) == new and len(pushing.already) == n

    # the one-off clean-up of the existing spool
    t0 = time.perf_counter()
    pruned = sync(store_url, spool, db=db.name, prune=True)
    prune_s = time.perf_counter() - t0
    assert len(pruned.removed) == n and not pruned.kept and not pruned.pushed and not pruned.failed
    assert sync(store_url, spool, db=db.name, prune=True) == type(pruned)()  # twice = once
    assert spooled_runs(spool) == [] and db.runs.count_documents({}) == n + new
    _new_runs(spool, new, tmp_path)
    t0 = time.perf_counter()
    pushing = sync(store_url, spool, db=db.name)
    new_after_s = time.perf_counter() - t0
    assert len(pushing.pushed) == new and len(pushing.removed) == new and not pushing.already

    def sync_all():
        return sync(store_url, spool, db=db.name)

    after = benchmark.pedantic(sync_all, rounds=1 if benchmark.disabled else 5, iterations=1)
    assert after == type(after)()
    if benchmark.disabled:
        t0 = time.perf_counter()
        sync_all()
        after_s = time.perf_counter() - t0
    else:
        after_s = benchmark.stats.stats.min
    benchmark.extra_info.update(
        stored_runs=n, spool_mb=spool_bytes / 1e6, kb_per_run=spool_bytes / n / 1e3,
        sync_before_prune_s=before_s, sync_after_prune_s=after_s, speedup_after_prune=before_s / after_s,
        walk_ms_per_stored_run=before_s / n * 1e3, walk_full_load_s=full_load_s,
        walk_full_load_ms_per_run=full_load_s / n * 1e3, prune_s=prune_s, prune_runs_per_s=n / prune_s,
        freed_mb=pruned.bytes_freed / 1e6, new_runs=new, sync_new_runs_before_prune_s=new_before_s,
        sync_new_runs_after_prune_s=new_after_s)
    client.drop_database(db.name)
    client.close()
