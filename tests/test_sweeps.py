"""Sweeps: queued runs in the store, claimed atomically by several workers, each run exactly once."""
import importlib
import subprocess
import sys
import uuid

import pymongo
import pytest
from tracking_fixtures import free_port, tiny_env, write_tiny

from harness.sweeps import SweepError, claim, enqueue, job_config, load_experiment, main_worker


@pytest.fixture
def tiny(tmp_path, monkeypatch, store_url):
    """The tiny experiment imported in-process, recording into a fresh database of the session store."""
    write_tiny(tmp_path)
    db_name = f"q{uuid.uuid4().hex[:10]}"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_MONGO_URL", store_url)
    monkeypatch.setenv("TINY_DB", db_name)
    monkeypatch.setenv("TINY_SPOOL", str(tmp_path / "spool"))
    sys.modules.pop("tiny_ex", None)
    module = importlib.import_module("tiny_ex")
    yield module.ex, db_name
    sys.modules.pop("tiny_ex", None)


def test_three_workers_run_nine_queued_jobs_each_exactly_once(tiny, store_url, tmp_path, capsys):
    ex, db_name = tiny
    marker = tmp_path / "executions.txt"
    for i in range(9):
        assert enqueue(["with", f"label=job{i}", f"n={i + 1}", "sleep=0.05", f"marker={marker}",
                        "--capture=sys"], ex=ex) == 0
    assert "queued run 9" in capsys.readouterr().out
    with pymongo.MongoClient(store_url) as client:
        runs = client[db_name].runs
        queued = list(runs.find({"status": "QUEUED"}))
        assert sorted(d["_id"] for d in queued) == list(range(1, 10))
        assert not marker.exists()  # queueing runs nothing

        env = tiny_env(tmp_path, store_url, db_name, tmp_path / "spool")
        workers = [subprocess.Popen([sys.executable, "-m", "harness", "worker", "--experiment", "tiny_ex:ex",
                                     "--db", db_name], cwd=tmp_path, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(3)]
        outputs = [w.communicate(timeout=180)[0].decode() for w in workers]
        assert all(w.returncode == 0 for w in workers), outputs

        lines = marker.read_text().splitlines()
        labels = [line.split()[0] for line in lines]
        assert sorted(labels) == sorted(f"job{i}" for i in range(9))  # nine executions, none twice
        ran = sum(int(out.split("worker ran ")[1].split()[0]) for out in outputs)
        assert ran == 9
        docs = list(runs.find())
        assert len(docs) == 9  # the workers took over the queued documents, added none
        for doc in docs:
            label = doc["config"]["label"]
            i = int(label[3:])
            assert doc["status"] == "COMPLETED", doc.get("fail_trace")
            assert doc["result"] == {"label": label, "n": i + 1}  # the queued overrides reached the run
            assert doc["meta"]["queued"]["run_id"] == doc["_id"] and doc["claimed_by"]
            (loss,) = list(client[db_name].metrics.find({"run_id": doc["_id"], "name": "loss"}))
            assert loss["steps"] == list(range(i + 1))


def test_claim_is_atomic_oldest_first_and_empty_queue_gives_none(store_url):
    with pymongo.MongoClient(store_url) as client:
        db = client[f"c{uuid.uuid4().hex[:10]}"]
        db.runs.insert_many([{"_id": i, "status": "QUEUED"} for i in (3, 1, 2)])
        taken = [claim(db, worker=f"w{k}")["_id"] for k in range(3)]
        assert taken == [1, 2, 3]
        assert claim(db) is None
        assert {d["claimed_by"] for d in db.runs.find()} == {"w0", "w1", "w2"}
        assert db.runs.count_documents({"status": "CLAIMED"}) == 3


def test_job_config_replaces_the_masked_store_url_with_the_workers():
    doc = {"config": {"n": 2, "store": {"url": "mongodb://u:***@h:1", "db": "old", "spool": "s"}}}
    assert job_config(doc, "mongodb://h:2", "new") == {
        "n": 2, "store": {"url": "mongodb://h:2", "db": "new", "spool": "s"}}
    assert job_config({"config": {"n": 1}}, None, "x") == {"n": 1}


def test_queue_with_unreachable_store_fails_with_a_clear_masked_message(tiny, monkeypatch, capsys):
    ex, _ = tiny
    port = free_port()
    ex.observers[0].connection.url = f"mongodb://u:secret99@127.0.0.1:{port}"
    ex.observers[0].connection.timeout_s = 0.3
    assert enqueue(["with", "label=lost"], ex=ex) == 1
    err = capsys.readouterr().err
    assert "cannot queue the run" in err and f"u:***@127.0.0.1:{port}" in err
    assert "secret99" not in err and "Traceback" not in err


def test_worker_rejects_bad_experiment_and_poll(capsys, store_url):
    assert main_worker(["--experiment", "no_colon", "--url", store_url]) == 2
    assert "must look like 'package.module:attribute'" in capsys.readouterr().err
    assert main_worker(["--experiment", "nonexistent_mod_xyz:ex", "--url", store_url]) == 2
    assert "cannot load it" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main_worker(["--poll", "0"])
    assert "--poll must be > 0" in capsys.readouterr().err
    with pytest.raises(SweepError, match="cannot load"):
        load_experiment("harness.sweeps:nothing_here")


def test_worker_marks_a_job_that_cannot_start_failed(tiny, store_url):
    ex, db_name = tiny
    with pymongo.MongoClient(store_url) as client:
        db = client[db_name]
        db.runs.insert_one({"_id": 1, "status": "QUEUED", "command": "no_such_command", "config": {"n": 1}})
        assert main_worker(["--experiment", "tiny_ex:ex", "--db", db_name, "--url", store_url]) == 0
        doc = db.runs.find_one({"_id": 1})
        assert doc["status"] == "FAILED" and "no_such_command" in "".join(doc["fail_trace"])
