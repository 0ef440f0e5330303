"""Fixtures of the interop suite (``tox -e interop``): a store with a real harness run and 12 seeded
runs, Omniboard 2.16.1 installed from npm into a cache folder and started against it.

Environment: ``INTEROP_NODE_DIR`` (where npm installs Omniboard; default ``.tox/interop-node``),
``INTEROP_ARTIFACTS`` (where the screenshot goes; default a pytest temp dir).
"""
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import PYTHON, python_env

REPO = Path(__file__).resolve().parents[2]
OMNIBOARD_VERSION = "2.16.1"
DB = "interop"
N_SEEDED = 12
DEAD = 7  # the seeded run left RUNNING with an old heartbeat: Omniboard calls it PROBABLY_DEAD
T0 = dt.datetime(2026, 1, 1, 12, 0, 0)
# Loopback only: Omniboard's Express app listens on every interface and has no option to choose.
LOOPBACK_JS = """
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\\d+$/.test(args[0]))) {
    const cb = args.find(a => typeof a === 'function');
    return listen.call(this, Number(args[0]), '127.0.0.1', cb);
  }
  return listen.apply(this, args);
};
require(process.env.OMNIBOARD_START);
"""


def seeded_duration_ms(run_id: int) -> int:
    return (60 * run_id + 5) * 1000  # run i lasted i minutes and 5 seconds


def seeded_runs() -> list[dict]:
    runs = []
    for i in range(1, N_SEEDED + 1):
        start = T0 + dt.timedelta(hours=i)
        beat = start + dt.timedelta(milliseconds=seeded_duration_ms(i))
        runs.append({
            "_id": i, "format": "MongoObserver-0.7.0", "command": "main",
            "status": "RUNNING" if i == DEAD else "COMPLETED",
            "experiment": {"name": "seeded", "base_dir": "/seed", "sources": [], "dependencies": [],
                           "repositories": [], "mainfile": "seed.py"},
            "host": {"hostname": "seed-host", "os": ["Linux", "Linux"], "python_version": "3.11", "cpu": "x"},
            "start_time": start, "heartbeat": beat, "stop_time": None if i == DEAD else beat,
            "config": {"seed": i, "lr": 0.001 * i}, "meta": {"command": "main", "options": {}},
            "resources": [], "artifacts": [], "captured_out": f"seeded run {i}\n", "info": {}, "result": i,
        })
    random.Random(0).shuffle(runs)  # insertion order must not decide the order anyone sees
    return runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory) -> Path:
    chosen = os.environ.get("INTEROP_ARTIFACTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("interop-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def interop_db(mongo_client_session, store_dir, tmp_path_factory):
    """Database ``interop``: seeded runs 1..12, then one real ``python -m harness with tiny`` run (id 13)."""
    client = mongo_client_session
    client.drop_database(DB)
    db = client[DB]
    for run in seeded_runs():
        db.runs.insert_one(run)
    work = tmp_path_factory.mktemp("harness-run")
    cmd = [PYTHON, "-m", "harness", "with", "tiny", f"data.root={work / 'data'}",
           f"render.out={work / 'renders'}", f"train.out={work / 'ck'}",
           f"train.features_dir={work / 'feat'}", f"store.spool={work / 'spool'}", f"store.db={DB}",
           "eval.bootstrap=50"]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1200,
                         env=python_env(HARNESS_STORE_DIR=store_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    real = db.runs.find_one({"experiment.name": "clip3d"})
    assert real is not None and real["status"] == "COMPLETED"
    yield db, real["_id"]
    client.drop_database(DB)


@pytest.fixture(scope="session")
def mongo_client_session(store_url):
    import pymongo

    client = pymongo.MongoClient(store_url, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture(scope="session")
def omniboard_js() -> Path:
    """Omniboard's start script, installed from npm into ``INTEROP_NODE_DIR`` on first use."""
    node_dir = Path(os.environ.get("INTEROP_NODE_DIR") or REPO / ".tox" / "interop-node")
    package = node_dir / "node_modules" / "omniboard" / "package.json"
    installed = json.loads(package.read_text()).get("version") if package.exists() else None
    if installed != OMNIBOARD_VERSION:
        npm = shutil.which("npm")
        if not npm or not shutil.which("node"):
            pytest.fail("the interop suite needs Node.js and npm on PATH (to install Omniboard)")
        node_dir.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([npm, "install", "--prefix", str(node_dir), "--no-audit", "--no-fund",
                              "--no-save", "--loglevel=error", f"omniboard@{OMNIBOARD_VERSION}"],
                             capture_output=True, text=True, timeout=1200)
        assert out.returncode == 0, f"npm install omniboard@{OMNIBOARD_VERSION} failed:\n{out.stderr[-3000:]}"
    return node_dir / "node_modules" / "omniboard" / "dist" / "start.js"


@pytest.fixture(scope="session")
def omniboard(omniboard_js, interop_db, store_url, tmp_path_factory):
    """Base URL of an Omniboard serving the ``interop`` database of the embedded store."""
    host_port = store_url.split("://", 1)[1].rstrip("/")
    work = tmp_path_factory.mktemp("omniboard")
    (work / "loopback.js").write_text(LOOPBACK_JS)
    port = free_port()
    log_path = work / "omniboard.log"
    log = open(log_path, "w")
    env = dict(os.environ, PORT=str(port), OMNIBOARD_START=str(omniboard_js))
    proc = subprocess.Popen(["node", str(work / "loopback.js"), "-m", f"{host_port}:{DB}"], cwd=work, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/sacred"
    try:
        deadline = time.monotonic() + 120
        while True:
            text = log_path.read_text(errors="replace")
            if "established successfully" in text:
                try:
                    with urllib.request.urlopen(f"{base}/api/v1/Version", timeout=5):
                        break
                except OSError:
                    pass
            if proc.poll() is not None or time.monotonic() > deadline or "Failed to establish" in text:
                pytest.fail(f"Omniboard did not connect to {store_url}:\n{text[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.copy(log_path, tmp_path_factory.getbasetemp() / "omniboard.log")


def get_json(url: str):
    """A JSON answer of Omniboard's REST API."""
    with urllib.request.urlopen(url, timeout=60) as reply:
        return json.loads(reply.read())
