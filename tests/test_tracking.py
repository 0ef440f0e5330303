"""Nothing lost: spool when the store is down, retries mid-run, idempotent sync, dead runs, masking."""
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pymongo
import pytest
from sacred import Experiment
from tracking_fixtures import OwnServer, free_port, tiny_env, write_tiny

from harness.tracking import SpoolingMongoObserver, main_sync, make_observer
from runstore import (
    PROBABLY_DEAD,
    ROW_CACHE,
    SpoolRun,
    StoreUnreachable,
    effective_status,
    push_run,
    spooled_runs,
    sync,
)

SECRET = "pa55w0rd-xyz"


def unique_db() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def tiny_experiment(observer, beat=0.2, on_step=None, artifact=None):
    """An in-process tiny experiment logging ``n`` points of ``loss``, calling ``on_step(i)`` each step."""

    class FastBeat(Experiment):
        def _create_run(self, *args, **kwargs):
            run = super()._create_run(*args, **kwargs)
            run.beat_interval = beat
            return run

    ex = FastBeat("tiny", save_git_info=False)
    ex.add_config(n=3, label="x", sleep=0.0, store=dict(url=None, db="tiny", spool="spool"))
    ex.observers.append(observer)

    @ex.main
    def main(_run, n, label, sleep, store):
        print(f"store url is {store['url']}")
        for i in range(n):
            _run.log_scalar("loss", 1.0 / (i + 1), i)
            if on_step:
                on_step(i)
            if sleep:
                time.sleep(sleep)
        if artifact:
            _run.add_artifact(str(artifact), name="notes.txt")
        return {"label": label, "n": n}

    return ex


def all_spool_text(spool: Path) -> str:
    """Every spooled file but the copied source code (this test file itself names the secret)."""
    return "\n".join(p.read_text(errors="replace") for p in Path(spool).rglob("*")
                     if p.is_file() and p.parent.name != "sources")


def test_store_down_at_start_run_completes_in_spool_then_sync_twice_is_once(store_url, tmp_path, caplog):
    down = f"mongodb://user:{SECRET}@127.0.0.1:{free_port()}"
    spool = tmp_path / "spool"
    obs = SpoolingMongoObserver(url=down, db_name="unused", spool=spool, timeout_s=0.5, retry_s=0,
                                final_attempts=1, keep_days=1)  # kept a day: the syncs below see it
    ex = tiny_experiment(obs)
    with caplog.at_level(logging.WARNING, logger="harness.tracking"):
        run = ex.run(config_updates={"n": 7, "label": "offline"}, options={"--capture": "sys"})
    assert run.status == "COMPLETED" and run.result == {"label": "offline", "n": 7}
    warnings = [r.getMessage() for r in caplog.records if r.name == "harness.tracking"]
    assert any("user:***@127.0.0.1" in w and "python -m harness sync" in w and str(spool) in w
               for w in warnings), warnings
    assert all(SECRET not in w for w in warnings)
    (run_dir,) = spooled_runs(spool)
    local = SpoolRun.load(run_dir)
    assert local.doc["status"] == "COMPLETED" and local.state["run_id"] is None
    assert local.metrics["loss"]["steps"] == list(range(7))
    assert SECRET not in all_spool_text(spool)

    db_name = unique_db()
    first = sync(store_url, spool, db=db_name)
    assert first.pushed == [run_dir.name] and not first.failed
    second = sync(store_url, spool, db=db_name)
    assert second.pushed == [] and second.already == [run_dir.name]
    forced = sync(store_url, spool, db=db_name, force=True)  # pushing again changes nothing either
    assert forced.pushed == [run_dir.name] and run_dir.is_dir()
    assert sync(store_url, spool, db=db_name, prune=True, keep_days=0).removed == [run_dir.name]
    with pymongo.MongoClient(store_url) as client:
        db = client[db_name]
        docs = list(db.runs.find())
        assert len(docs) == 1
        doc = docs[0]
        assert doc["_id"] == first.run_ids[run_dir.name] and doc["status"] == "COMPLETED"
        assert doc["config"]["n"] == 7 and doc["result"] == {"label": "offline", "n": 7}
        assert isinstance(doc["start_time"], dt.datetime) and isinstance(doc["heartbeat"], dt.datetime)
        metrics = list(db.metrics.find({"run_id": doc["_id"]}))
        assert len(metrics) == 1 and metrics[0]["values"][:2] == [1.0, 0.5]
        assert metrics[0]["steps"] == list(range(7))
        assert doc["info"]["metrics"] == [{"name": "loss", "id": str(metrics[0]["_id"])}]


class _Collect(logging.Handler):
    """WARNING records of one logger, kept whatever other code did to the root logger (Sacred
    replaces its handlers and sets its level from ``--loglevel``)."""

    def __init__(self, name):
        super().__init__(logging.WARNING)
        self.logger, self.records = logging.getLogger(name), []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        # an earlier Sacred run's --loglevel leaves the root logger at ERROR: set ours explicitly
        self.level_before = self.logger.level
        self.logger.setLevel(logging.WARNING)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level_before)


def test_store_killed_and_restarted_mid_run_loses_no_metric_point(tmp_path):
    server = OwnServer(tmp_path / "server").start()
    try:
        def chaos(step):
            if step == 6:
                server.kill()
            if step == 16:
                server.start()

        obs = SpoolingMongoObserver(url=server.url, db_name="chaos", spool=tmp_path / "spool",
                                    timeout_s=0.5, retry_s=0, final_attempts=5)
        ex = tiny_experiment(obs, beat=0.2, on_step=chaos)
        with _Collect("harness.tracking") as seen:  # warnings come from Sacred's heartbeat thread
            run = ex.run(config_updates={"n": 24, "sleep": 0.05}, options={"--capture": "sys"})
        assert run.status == "COMPLETED" and run._id == 1
        messages = " ".join(r.getMessage() for r in seen.records)
        assert "unreachable" in messages and "answers again" in messages
        with pymongo.MongoClient(server.url) as client:
            db = client["chaos"]
            doc = db.runs.find_one({"_id": 1})
            assert doc["status"] == "COMPLETED"
            (metric,) = list(db.metrics.find({"run_id": 1}))
            assert metric["steps"] == list(range(24))
            assert metric["values"] == [1.0 / (i + 1) for i in range(24)]
        assert spooled_runs(tmp_path / "spool") == []  # pushed completely at the end: its folder went
    finally:
        server.kill()


def test_kill_9_run_is_reported_dead_and_sync_uploads_it(store_url, tmp_path):
    write_tiny(tmp_path)
    db_name, spool = unique_db(), tmp_path / "spool"
    env = tiny_env(tmp_path, store_url, db_name, spool, TINY_BEAT=0.2)
    proc = subprocess.Popen([sys.executable, "tiny_ex.py", "with", "n=100000", "sleep=0.01", "label=doomed"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with pymongo.MongoClient(store_url) as client:
            runs = client[db_name].runs
            deadline = time.monotonic() + 60
            doc = None
            while time.monotonic() < deadline:
                doc = runs.find_one({"config.label": "doomed"})
                if doc and doc.get("heartbeat") and client[db_name].metrics.find_one({"run_id": doc["_id"]}):
                    break
                time.sleep(0.2)
            assert doc and doc["status"] == "RUNNING", doc
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            (run_dir,) = spooled_runs(spool)
            assert not SpoolRun.load(run_dir).is_live()  # the OS released the dead run's lock
            report = sync(store_url, spool, db=db_name)
            assert report.pushed == [run_dir.name] and report.run_ids[run_dir.name] == doc["_id"]
            doc = runs.find_one({"_id": doc["_id"]})
            assert runs.count_documents({"config.label": "doomed"}) == 1
            beat = doc["heartbeat"]
            assert doc["status"] == "RUNNING" and isinstance(beat, dt.datetime)
            assert effective_status(doc, beat + dt.timedelta(seconds=20)) == "RUNNING"
            assert effective_status(doc, beat + dt.timedelta(seconds=121)) == PROBABLY_DEAD
            from leaderboard.queries import effective_status as board_status
            assert board_status(doc, beat + dt.timedelta(minutes=3)) == PROBABLY_DEAD
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_eight_concurrent_runs_get_unique_ids_and_their_own_documents(store_url, tmp_path):
    write_tiny(tmp_path)
    db_name, spool = unique_db(), tmp_path / "spool"
    env = tiny_env(tmp_path, store_url, db_name, spool)
    procs = [subprocess.Popen([sys.executable, "tiny_ex.py", "with", f"label=run{i}", f"n={i + 2}"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for i in range(8)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    with pymongo.MongoClient(store_url) as client:
        db = client[db_name]
        docs = list(db.runs.find())
        assert len(docs) == 8
        assert sorted(d["_id"] for d in docs) == list(range(1, 9))
        assert len({d["meta"]["run_uid"] for d in docs}) == 8
        for doc in docs:
            i = int(doc["config"]["label"][3:])
            assert doc["status"] == "COMPLETED" and doc["result"] == {"label": f"run{i}", "n": i + 2}
            by_name = {m["name"]: m for m in db.metrics.find({"run_id": doc["_id"]})}
            assert set(by_name) == {"loss", "label_len"}
            assert by_name["loss"]["steps"] == list(range(i + 2))
            assert by_name["label_len"]["values"] == [len(f"run{i}") + s for s in range(i + 2)]
        assert db.metrics.count_documents({}) == 16


def test_command_line_overrides_reach_the_run_record(store_url, tmp_path):
    db_name = unique_db()
    obs = SpoolingMongoObserver(url=store_url, db_name=db_name, spool=tmp_path / "spool")
    ex = tiny_experiment(obs)
    run = ex.run_commandline(["tiny", "with", "n=4", "label=from-cli", "--capture=sys"])
    assert run.status == "COMPLETED"
    with pymongo.MongoClient(store_url) as client:
        doc = client[db_name].runs.find_one({"_id": run._id})
    assert doc["config"]["n"] == 4 and doc["config"]["label"] == "from-cli"
    assert doc["meta"]["config_updates"] == {"n": 4, "label": "from-cli"}
    assert doc["result"] == {"label": "from-cli", "n": 4}


def test_passwords_masked_in_config_meta_options_output_and_logs(tmp_path, monkeypatch, caplog):
    port = free_port()
    monkeypatch.setenv("HARNESS_MONGO_URL", f"mongodb://env:{SECRET}@127.0.0.1:{port}")
    spool = tmp_path / "spool"
    obs = make_observer({"spool": str(spool), "db": "x"}, timeout_s=0.3, retry_s=0, final_attempts=1)
    ex = tiny_experiment(obs)
    with caplog.at_level(logging.WARNING):
        run = ex.run_commandline(["tiny", "with", f"store.url=mongodb://cfg:{SECRET}@127.0.0.1:{port}",
                                  "--capture=sys"])
    assert run.status == "COMPLETED"
    assert f"cfg:{SECRET}" in run.captured_out  # Sacred's own copy; ours is masked:
    (run_dir,) = spooled_runs(spool)
    doc = SpoolRun.load(run_dir).doc
    assert doc["config"]["store"]["url"] == f"mongodb://cfg:***@127.0.0.1:{port}"
    assert doc["meta"]["config_updates"]["store"]["url"] == f"mongodb://cfg:***@127.0.0.1:{port}"
    assert "store url is mongodb://cfg:***@" in doc["captured_out"]
    assert SECRET not in all_spool_text(spool)
    assert "env:***@" in caplog.text and SECRET not in caplog.text

    # Sacred keeps the command-line options (-m / --mongo_db) in meta.options
    obs2 = SpoolingMongoObserver(url=f"mongodb://m:{SECRET}@127.0.0.1:{port}", spool=tmp_path / "spool2",
                                 timeout_s=0.3, final_attempts=1)
    obs2.started_event({"name": "e", "base_dir": str(tmp_path), "sources": []}, "main", {}, dt.datetime.now(),
                       {"seed": 1}, {"options": {"--mongo_db": f"mongodb://m:{SECRET}@h:1/db"}}, None)
    obs2.failed_event(dt.datetime.now(), [f"Traceback: mongodb://m:{SECRET}@h:1\n"])
    (run_dir2,) = spooled_runs(tmp_path / "spool2")
    doc2 = SpoolRun.load(run_dir2).doc
    assert doc2["meta"]["options"]["--mongo_db"] == "mongodb://m:***@h:1/db"
    assert doc2["status"] == "FAILED" and doc2["fail_trace"] == ["Traceback: mongodb://m:***@h:1\n"]
    assert SECRET not in all_spool_text(tmp_path / "spool2")


def test_artifacts_are_uploaded_once_however_often_synced(store_url, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    db_name, spool = unique_db(), tmp_path / "spool"
    obs = SpoolingMongoObserver(url=store_url, db_name=db_name, spool=spool, keep_days=1)  # keep it to sync
    ex = tiny_experiment(obs, artifact=notes)
    run = ex.run(options={"--capture": "sys"})
    for _ in range(2):
        sync(store_url, spool, db=db_name, force=True)
    with pymongo.MongoClient(store_url) as client:
        db = client[db_name]
        doc = db.runs.find_one({"_id": run._id})
        assert [a["name"] for a in doc["artifacts"]] == ["notes.txt"]
        files = list(db["fs.files"].find({"filename": f"artifact://runs/{run._id}/notes.txt"}))
        assert len(files) == 1 and files[0]["_id"] == doc["artifacts"][0]["file_id"]
        import gridfs
        assert gridfs.GridFS(db).get(files[0]["_id"]).read() == b"hello"
        assert db.runs.count_documents({}) == 1


def test_sync_skips_live_runs_and_reports_unreachable_store_masked(store_url, tmp_path, capsys):
    spool = tmp_path / "spool"
    live = SpoolRun.create(spool, {"meta": {"run_uid": "live1"}, "status": "RUNNING", "config": {}})
    live.lock()
    try:
        report = sync(store_url, spool, db=unique_db())
        assert report.live == ["live1"] and report.pushed == []
    finally:
        live.unlock()
    down = f"mongodb://u:{SECRET}@127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnreachable, match=r"u:\*\*\*@127\.0\.0\.1"):
        sync(down, spool, timeout_s=0.3)
    assert main_sync(["--url", down, "--spool", str(spool)]) == 2
    err = capsys.readouterr().err
    assert "cannot reach MongoDB" in err and SECRET not in err
    assert main_sync(["--url", store_url, "--spool", str(spool), "--db", unique_db()]) == 0
    assert "1 pushed" in capsys.readouterr().out
    assert main_sync(["--url", store_url, "--spool", str(tmp_path / "empty")]) == 0


def test_a_reused_run_id_drops_the_deleted_runs_leaderboard_row(store_url):
    from runstore.push import insert_autoinc as _insert_autoinc

    db_name = unique_db()
    with pymongo.MongoClient(store_url) as client:
        db = client[db_name]
        db.runs.insert_many([{"_id": 1, "status": "COMPLETED"}, {"_id": 2, "status": "COMPLETED"}])
        db[ROW_CACHE].insert_many([{"_id": 1, "v": 1, "skip": "x"}, {"_id": 2, "v": 1, "skip": "x"}])
        db.runs.delete_one({"_id": 2})  # the newest run deleted: its id is allocated again
        assert _insert_autoinc(db.runs, {"status": "QUEUED"}) == 2
        assert [e["_id"] for e in db[ROW_CACHE].find({})] == [1]
        client.drop_database(db_name)


def test_run_ids_keep_counting_past_ten_although_nx_27017_sorts_ids_as_text(store_url, tmp_path):
    db_name = unique_db()
    with pymongo.MongoClient(store_url) as client:
        client[db_name].runs.insert_many([{"_id": i, "status": "COMPLETED"} for i in range(1, 12)])
        run = SpoolRun.create(tmp_path / "spool", {"meta": {"run_uid": "eleventh"}, "status": "COMPLETED"})
        assert push_run(client[db_name], run) == 12
        client[db_name][ROW_CACHE].insert_one({"_id": 12, "v": 1, "skip": "stale"})
        assert push_run(client[db_name], run) == 12  # idempotent
        assert client[db_name].runs.count_documents({}) == 12
        assert client[db_name][ROW_CACHE].count_documents({}) == 0  # its leaderboard row is rebuilt
