"""Recording runs: the idempotent spool push (``harness.tracking.push_run``, what ``sync`` and the
observer use) against plain pymongo ``insert_many`` of the same documents (the floor: one batched,
non-idempotent write, no spool, no id allocation).

1,000 run records, each with one 100-point metric, into the embedded nx-27017 store.
"""
import copy
import datetime as dt
import time
import uuid

import pymongo

from harness.tracking import SpoolRun, push_run

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
