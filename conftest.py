"""Shared test fixtures and the benchmark-session summary.

Fixtures: an embedded store (a real nx-27017 server) on a temporary dir and a free port.
After a *timed* benchmark session (``tox -e bench``), one summary run (Sacred experiment
``benchmarks``) goes into the store with every benchmark's timings and the throughput figures and
ratios each suite put in ``benchmark.extra_info``, so the leaderboard shows speed next to quality.
Nothing is recorded under ``--benchmark-disable`` (the plain test run).
"""
import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory):
    """A temporary store dir whose embedded server runs for the whole test session."""
    from runstore import EmbeddedServer

    path = tmp_path_factory.mktemp("store")
    server = EmbeddedServer(path)
    server.start()
    yield path
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _runs_go_to_the_test_store(store_dir):
    """Any run a test records without naming a store lands in the test store, never in ./runs/store."""
    previous = os.environ.get("HARNESS_STORE_DIR")
    os.environ["HARNESS_STORE_DIR"] = str(store_dir)
    yield
    if previous is None:
        os.environ.pop("HARNESS_STORE_DIR", None)
    else:
        os.environ["HARNESS_STORE_DIR"] = previous


@pytest.fixture(scope="session")
def store_url(store_dir):
    """The mongodb:// URL of the session's embedded server."""
    from runstore import EmbeddedServer

    return EmbeddedServer(store_dir).start()


@pytest.fixture
def mongo_client(store_url):
    import pymongo

    client = pymongo.MongoClient(store_url, serverSelectionTimeoutMS=5000)
    yield client
    client.close()


@pytest.fixture
def clean_env(monkeypatch):
    """No store configuration leaks in from the developer's shell."""
    monkeypatch.delenv("HARNESS_MONGO_URL", raising=False)
    monkeypatch.delenv("HARNESS_STORE_DIR", raising=False)
    return monkeypatch


def python_env(**extra):
    """Environment for a subprocess running this checkout's code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("HARNESS_MONGO_URL", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


PYTHON = sys.executable



def _key(name: str) -> str:
    """Run-record keys allow letters, digits, _, @ and - only (dots break MongoDB paths)."""
    return re.sub(r"[^A-Za-z0-9_@-]+", "_", name).strip("_")


def _plain(value):
    if isinstance(value, dict):
        return {_key(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def summarize(benchmarks) -> dict:
    """Plain result dict of a finished benchmark session (one entry per benchmark)."""
    entries, throughput = {}, {}
    for bench in benchmarks:
        if not bench or not getattr(bench, "stats", None):
            continue
        name = _key(bench.name)
        stats = bench.stats
        extra = _plain(dict(bench.extra_info))
        entries[name] = {"min_s": float(stats.min), "median_s": float(stats.median),
                         "mean_s": float(stats.mean), "rounds": int(stats.rounds), "extra_info": extra}
        for key, value in extra.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                throughput[f"{name}__{key}"] = float(value)
    return {"benchmarks": entries, "throughput": throughput}


def record_summary(summary: dict, machine: dict) -> None:
    """Write the summary as one run of the Sacred experiment ``benchmarks`` via the store observer."""
    from sacred import Experiment

    from harness.tracking import make_observer

    ex = Experiment("benchmarks", save_git_info=False)
    ex.add_config(store=dict(url=None, dir=None, db="clip3d", spool="runs/spool", upload_checkpoint=False))

    @ex.main
    def record(_run):
        _run.info["machine"] = _plain(machine)
        return summary

    ex.observers.append(make_observer(dict(ex.configurations[0]()["store"])))
    ex.run(options={"--loglevel": "WARNING"})


def pytest_sessionfinish(session, exitstatus):
    bs = getattr(session.config, "_benchmarksession", None)
    if bs is None or bs.disabled or not bs.benchmarks or exitstatus != 0:
        return
    summary = summarize(bs.benchmarks)
    if not summary["benchmarks"]:
        return
    try:
        record_summary(summary, bs.get_machine_info())
    except Exception as exc:  # the benchmark results themselves are saved by pytest-benchmark
        print(f"\nbenchmark summary run not recorded: {exc}", file=sys.stderr)
