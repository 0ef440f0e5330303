"""The embedded store: sharing, persistence, isolation, resolution, masking, fast failures."""
import subprocess
import time

import pymongo
import pytest

import runstore as store
from conftest import PYTHON, python_env
from runstore import EmbeddedServer, StoreUnreachable, mask_secrets, mask_url


def _url_from_cli(store_dir, **env):
    out = subprocess.run([PYTHON, "-m", "runstore", "url", "--dir", str(store_dir)],
                         capture_output=True, text=True, env=python_env(**env), timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_two_processes_share_one_server(tmp_path):
    server = EmbeddedServer(tmp_path / "s")
    try:
        first = _url_from_cli(tmp_path / "s")
        pid = server.running()["pid"]
        second = _url_from_cli(tmp_path / "s")
        assert first == second
        assert server.running()["pid"] == pid
        with pymongo.MongoClient(first, serverSelectionTimeoutMS=5000) as c:
            c.t.docs.insert_one({"from": "first"})
        with pymongo.MongoClient(second, serverSelectionTimeoutMS=5000) as c:
            assert c.t.docs.count_documents({"from": "first"}) == 1
    finally:
        server.stop()


def test_concurrent_starts_make_one_server(tmp_path):
    procs = [subprocess.Popen([PYTHON, "-m", "runstore", "url", "--dir", str(tmp_path / "race")],
                              stdout=subprocess.PIPE, text=True, env=python_env()) for _ in range(3)]
    urls = {p.communicate(timeout=90)[0].strip().splitlines()[-1] for p in procs}
    try:
        assert len(urls) == 1
    finally:
        EmbeddedServer(tmp_path / "race").stop()


def test_stop_then_start_keeps_data(tmp_path):
    server = EmbeddedServer(tmp_path)
    url = server.start()
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as c:
        c.clip3d.runs.insert_one({"_id": 1, "status": "COMPLETED"})
    assert server.stop() is True
    assert server.running() is None
    url2 = server.start()
    try:
        with pymongo.MongoClient(url2, serverSelectionTimeoutMS=5000) as c:
            assert c.clip3d.runs.find_one({"_id": 1})["status"] == "COMPLETED"
    finally:
        server.stop()


def test_dead_server_is_restarted(tmp_path):
    import os
    import signal

    server = EmbeddedServer(tmp_path)
    server.start()
    pid = server.running()["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.running() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        url = server.start()
        assert server.running()["pid"] != pid
        with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as c:
            assert c.admin.command("ping")["ok"]
    finally:
        server.stop()


def test_two_store_dirs_side_by_side(tmp_path):
    a, b = EmbeddedServer(tmp_path / "a"), EmbeddedServer(tmp_path / "b")
    try:
        ua, ub = a.start(), b.start()
        assert ua != ub
        with pymongo.MongoClient(ua, serverSelectionTimeoutMS=5000) as c:
            c.clip3d.runs.insert_one({"where": "a"})
        with pymongo.MongoClient(ub, serverSelectionTimeoutMS=5000) as c:
            assert c.clip3d.runs.count_documents({}) == 0
    finally:
        a.stop()
        b.stop()


def test_server_binds_loopback_only(store_dir):
    state = EmbeddedServer(store_dir).running()
    assert state["host"] == "127.0.0.1"
    with open(f"/proc/{state['pid']}/cmdline", "rb") as fh:
        args = fh.read().split(b"\0")
    assert args[args.index(b"--host") + 1] == b"127.0.0.1"


def test_resolution_order(clean_env, tmp_path, store_url):
    assert store.resolve_url("mongodb://explicit:1") == "mongodb://explicit:1"
    clean_env.setenv("HARNESS_MONGO_URL", "mongodb://from-env:2")
    assert store.resolve_url() == "mongodb://from-env:2"
    assert store.resolve_url("mongodb://explicit:1") == "mongodb://explicit:1"
    clean_env.delenv("HARNESS_MONGO_URL")
    clean_env.setenv("HARNESS_STORE_DIR", str(tmp_path / "envdir"))
    assert store.resolve_store_dir() == (tmp_path / "envdir").resolve()
    with pytest.raises(store.StoreError, match="not running"):
        store.resolve_url(start=False)


def test_unreachable_url_fails_fast_with_masked_url(clean_env):
    url = "mongodb://alice:s3cret@127.0.0.1:1/clip3d"
    t0 = time.monotonic()
    with pytest.raises(StoreUnreachable) as err:
        store.connect(url, timeout_s=2)
    assert time.monotonic() - t0 < 5
    assert "alice:***@127.0.0.1:1" in str(err.value)
    assert "s3cret" not in str(err.value)


def test_status_cli_unreachable_env_url_is_fast_and_masked(tmp_path):
    t0 = time.monotonic()
    out = subprocess.run([PYTHON, "-m", "runstore", "status"], capture_output=True, text=True,
                         env=python_env(HARNESS_MONGO_URL="mongodb://bob:hunter2@127.0.0.1:1"), timeout=60)
    assert time.monotonic() - t0 < 15  # interpreter start + at most the 5 s limit
    assert out.returncode == 1
    assert "hunter2" not in out.stdout + out.stderr
    assert "bob:***@127.0.0.1:1" in out.stdout
    assert "answers: False" in out.stdout


def test_mask_secrets_covers_urls_in_text():
    text = "connect mongodb://u:p%40ss@h1:27017,h2/db?x=1 and mongodb+srv://me:pw@cluster.example/db"
    masked = mask_secrets(text)
    assert "p%40ss" not in masked and ":pw@" not in masked
    assert "mongodb://u:***@h1:27017,h2/db?x=1" in masked
    assert "mongodb+srv://me:***@cluster.example/db" in masked
    assert mask_url("mongodb://h:1") == "mongodb://h:1"
    assert mask_url(None) is None
