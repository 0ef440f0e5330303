"""The spool does not grow forever: a finished run's folder goes once the store provably holds all of it."""
import datetime as dt
import logging
import re
import uuid

import gridfs
import pytest
from test_tracking import tiny_experiment, unique_db
from tracking_fixtures import free_port

import harness.tracking
import runstore as tracking
from harness.__main__ import main as harness_main
from harness.tracking import SpoolingMongoObserver, make_observer
from runstore import SpoolRun, push_run, spooled_runs, sync
from runstore.prune import folder_bytes, prune_run

STOP = dt.datetime(2026, 1, 1, 12, 0, 0)


def finished_run(spool, db, tmp_path, *, status="COMPLETED", points=3, keep_days=0, push=True) -> SpoolRun:
    """A spooled run (one metric, one artifact) that finished at STOP, pushed to ``db`` and marked synced."""
    run = SpoolRun.create(spool, {"meta": {"run_uid": uuid.uuid4().hex}, "status": status, "config": {},
                                  "stop_time": STOP, "info": {}, "artifacts": []})
    steps = list(range(points))
    run.append_metrics({"loss": {"steps": steps, "values": [1.0 / (i + 1) for i in steps],
                                 "timestamps": [STOP] * points}})
    notes = tmp_path / f"notes-{run.uid}.txt"
    notes.write_text("hello " * 50)
    run.add_artifact("notes.txt", notes)
    run.state["keep_days"] = keep_days
    run.write_state()
    if push:
        push_run(db, run)
        run.state["synced"] = True
        run.write_state()
    return run


@pytest.fixture
def db(mongo_client):
    name = unique_db()
    yield mongo_client[name]
    mongo_client.drop_database(name)


def test_a_run_pushed_to_the_store_leaves_no_spool_folder(store_url, db, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    spool = tmp_path / "spool"
    run = tiny_experiment(SpoolingMongoObserver(url=store_url, db_name=db.name, spool=spool),
                          artifact=notes).run(options={"--capture": "sys"})
    assert run.status == "COMPLETED"
    assert list(spool.iterdir()) == []  # nothing left behind, not even a half-removed folder
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and [a["name"] for a in doc["artifacts"]] == ["notes.txt"]
    assert db.metrics.find_one({"run_id": run._id})["steps"] == [0, 1, 2]


def test_a_run_whose_push_failed_keeps_its_folder_then_sync_uploads_and_removes_it(store_url, db, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    spool = tmp_path / "spool"
    down = SpoolingMongoObserver(url=f"mongodb://127.0.0.1:{free_port()}", db_name=db.name, spool=spool,
                                 timeout_s=0.3, retry_s=0, final_attempts=1)
    run = tiny_experiment(down, artifact=notes).run(options={"--capture": "sys"})
    assert run.status == "COMPLETED"
    (run_dir,) = spooled_runs(spool)
    size = folder_bytes(run_dir)

    report = sync(store_url, spool)
    assert report.pushed == [run_dir.name] and report.removed == [run_dir.name] and not report.failed
    assert report.bytes_freed >= size > 0  # the push adds the store ids to state.json
    assert not run_dir.exists() and list(spool.iterdir()) == []
    run_id = report.run_ids[run_dir.name]
    assert db.runs.find_one({"_id": run_id})["status"] == "COMPLETED"
    assert db.metrics.find_one({"run_id": run_id})["values"] == [1.0, 0.5, 1 / 3]
    assert len(list(db["fs.files"].find({"filename": f"artifact://runs/{run_id}/notes.txt"}))) == 1

    again = sync(store_url, spool, prune=True)  # twice = once
    assert again == tracking.SyncReport()
    assert db.runs.count_documents({}) == 1


def _drop_metric_point(db, run_id):
    metric = db.metrics.find_one({"run_id": run_id, "name": "loss"})
    db.metrics.replace_one({"_id": metric["_id"]}, {**metric, "steps": metric["steps"][:-1],
                                                    "values": metric["values"][:-1]})


def _drop_artifact(db, run_id):
    gridfs.GridFS(db).delete(db["fs.files"].find_one({"filename": f"artifact://runs/{run_id}/notes.txt"})["_id"])


def _shorten_artifact(db, run_id):
    name = f"artifact://runs/{run_id}/notes.txt"
    _drop_artifact(db, run_id)
    gridfs.GridFS(db).put(b"hel", filename=name)


TAMPER = {
    "a metric point": (_drop_metric_point, "metric 'loss': 2 of 3 points in the store"),
    "a metric": (lambda db, i: db.metrics.delete_many({"run_id": i}), "metric 'loss': 0 of 3 points"),
    "an artifact": (_drop_artifact, "artifact 'notes.txt': not in GridFS"),
    "artifact bytes": (_shorten_artifact, "artifact 'notes.txt': 3 bytes in GridFS, 300 in the spool"),
    "the finished status": (lambda db, i: db.runs.update_one({"_id": i}, {"$set": {"status": "RUNNING"}}),
                            "status in the store is RUNNING, in the spool COMPLETED"),
    "the document": (lambda db, i: db.runs.delete_one({"_id": i}), "no run document _id=1"),
}


@pytest.mark.parametrize("lost", list(TAMPER))
def test_a_folder_the_store_does_not_completely_hold_is_not_removed(lost, db, store_url, tmp_path):
    tamper, reason = TAMPER[lost]
    spool = tmp_path / "spool"
    run = finished_run(spool, db, tmp_path)
    run_id = run.state["run_id"]
    tamper(db, run_id)

    result = prune_run(db, SpoolRun.load(run.path))
    assert not result.removed and reason in result.reason
    assert run.path.is_dir()
    plain = sync(store_url, spool, db=db.name)  # plain sync trusts the synced mark: it removes nothing
    assert plain.already == [run.path.name] and plain.removed == [] and run.path.is_dir()

    # sync --prune uploads what the store lacks, checks again, then removes the folder
    report = sync(store_url, spool, db=db.name, prune=True)
    assert report.pushed == [run.path.name] and report.removed == [run.path.name], report
    assert not run.path.exists()
    run_id = report.run_ids[run.path.name]
    assert db.runs.find_one({"_id": run_id})["status"] == "COMPLETED"
    assert db.metrics.find_one({"run_id": run_id})["steps"] == [0, 1, 2]
    assert gridfs.GridFS(db).find_one({"filename": f"artifact://runs/{run_id}/notes.txt"}).length == 300
    assert db.runs.count_documents({}) == 1


def test_the_end_of_run_check_keeps_the_folder_when_the_store_lost_a_point(store_url, db, tmp_path,
                                                                           monkeypatch, caplog):
    real_push = tracking.push_run

    def lossy_push(database, run, **kw):  # a store that acknowledges the final push but loses a point
        run_id = real_push(database, run, **kw)
        if run.doc.get("status") == "COMPLETED":
            _drop_metric_point(database, run_id)
        return run_id

    monkeypatch.setattr(harness.tracking, "push_run", lossy_push)  # where the observer looks it up
    spool = tmp_path / "spool"
    with caplog.at_level(logging.WARNING, logger="harness.tracking"):
        run = tiny_experiment(SpoolingMongoObserver(url=store_url, db_name=db.name, spool=spool)).run(
            options={"--capture": "sys"})
    assert run.status == "COMPLETED"
    (run_dir,) = spooled_runs(spool)
    assert "metric 'loss': 2 of 3 points in the store" in caplog.text and "sync --prune" in caplog.text
    monkeypatch.undo()
    report = sync(store_url, spool, prune=True)
    assert report.removed == [run_dir.name] and not run_dir.exists()
    assert db.metrics.find_one({"run_id": run._id})["steps"] == [0, 1, 2]


def test_running_and_unfinished_runs_are_never_removed(store_url, db, tmp_path):
    spool = tmp_path / "spool"
    live = finished_run(spool, db, tmp_path)  # finished status, but a process still holds its lock
    dead = finished_run(spool, db, tmp_path, status="RUNNING")  # killed: its record never finished
    live.lock()
    try:
        assert prune_run(db, SpoolRun.load(live.path)).reason == "still running (its lock is held)"
        report = sync(store_url, spool, db=db.name, prune=True)
        assert report.live == [live.path.name]
        assert report.kept == [(dead.path.name, "not finished (status RUNNING)")] and report.removed == []
        assert live.path.is_dir() and dead.path.is_dir()
    finally:
        live.unlock()
    assert sync(store_url, spool, db=db.name, prune=True).removed == [live.path.name]
    assert dead.path.is_dir()


def test_keep_days_keeps_finished_folders_until_they_are_old_enough(store_url, db, tmp_path):
    spool = tmp_path / "spool"
    obs = make_observer({"url": store_url, "db": db.name, "spool": str(spool), "spool_keep_days": 2})
    run = tiny_experiment(obs).run(options={"--capture": "sys"})
    assert run.status == "COMPLETED" and db.runs.find_one({"_id": run._id})["status"] == "COMPLETED"
    (run_dir,) = spooled_runs(spool)
    state = SpoolRun.load(run_dir).state
    assert state["keep_days"] == 2 and state["synced"] is True

    stop = SpoolRun.load(run_dir).doc["stop_time"]
    day1 = sync(store_url, spool, prune=True, now=stop + dt.timedelta(days=1))
    assert day1.removed == [] and day1.kept[0][1].startswith("kept until ") and run_dir.is_dir()
    assert "store.spool_keep_days=2" in day1.kept[0][1]
    day3 = sync(store_url, spool, prune=True, now=stop + dt.timedelta(days=3))
    assert day3.removed == [run_dir.name] and not run_dir.exists()


def test_sync_prune_cli_prints_what_it_removed_and_kept_and_twice_changes_nothing(store_url, db, tmp_path,
                                                                                  capsys):
    spool = tmp_path / "spool"
    legacy = [finished_run(spool, db, tmp_path) for _ in range(2)]  # what today's spool holds
    unsent = finished_run(spool, db, tmp_path, push=False)
    dead = finished_run(spool, db, tmp_path, status="RUNNING")
    kept = finished_run(spool, db, tmp_path, keep_days=100_000)
    args = ["sync", "--url", store_url, "--spool", str(spool), "--db", db.name]

    assert harness_main(args) == 0
    out = capsys.readouterr().out
    assert f"sync {spool}: 1 pushed, 4 already in the store" in out
    assert re.search(r"; 1 removed from the spool \(\d\.\d kB freed\), 0 kept", out), out
    assert "4 runs marked as uploaded stay in the spool: `python -m harness sync --prune`" in out
    assert not unsent.path.exists()

    freed = sum(folder_bytes(r.path) for r in legacy)
    assert harness_main([*args, "--prune"]) == 0
    out = capsys.readouterr().out
    assert f"2 removed from the spool ({tracking.format_bytes(freed)} freed), 2 kept" in out
    assert f"kept {dead.path.name}: not finished (status RUNNING)" in out
    assert f"kept {kept.path.name}: kept until " in out
    assert "sync --prune` checks" not in out
    assert not any(r.path.exists() for r in legacy) and dead.path.is_dir() and kept.path.is_dir()

    listing = sorted(p.name for p in spool.iterdir())
    assert harness_main([*args, "--prune"]) == 0  # twice = once
    out = capsys.readouterr().out
    assert "0 pushed, 2 already in the store" in out and "0 removed from the spool (0 B freed), 2 kept" in out
    assert sorted(p.name for p in spool.iterdir()) == listing
    assert db.runs.count_documents({}) == 5

    assert harness_main([*args, "--prune", "--keep-days", "0"]) == 0  # the command line overrides the run's
    assert "1 removed from the spool" in capsys.readouterr().out and not kept.path.exists()


def test_prune_uploads_under_a_new_id_rather_than_overwrite_another_runs_document(store_url, mongo_client,
                                                                                  db, tmp_path):
    spool = tmp_path / "spool"
    run = finished_run(spool, db, tmp_path)  # pushed to db as _id 1, then the spool is synced elsewhere
    other = mongo_client[unique_db()]
    try:
        other.runs.insert_one({"_id": 1, "status": "COMPLETED", "meta": {"run_uid": "someone-else"}})
        report = sync(store_url, spool, db=other.name, prune=True)
        assert report.removed == [run.path.name] and report.run_ids[run.path.name] == 2
        assert other.runs.find_one({"_id": 1})["meta"]["run_uid"] == "someone-else"
        assert other.runs.find_one({"_id": 2})["meta"]["run_uid"] == run.uid
    finally:
        mongo_client.drop_database(other.name)


def test_an_interrupted_removal_is_finished_by_the_next_prune(store_url, db, tmp_path):
    spool = tmp_path / "spool"
    run = finished_run(spool, db, tmp_path)
    half = run.path.rename(spool / f".{run.path.name}.removing")  # renamed only after the store check
    assert spooled_runs(spool) == []  # never pushed again
    size = folder_bytes(half)
    report = sync(store_url, spool, prune=True)
    assert report.bytes_freed == size and not half.exists()
