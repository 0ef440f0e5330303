"""Shared fixtures: an embedded store (real nx-27017 server) on a temporary dir and a free port."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory):
    """A temporary store dir whose embedded server runs for the whole test session."""
    from harness.store import EmbeddedServer

    path = tmp_path_factory.mktemp("store")
    server = EmbeddedServer(path)
    server.start()
    yield path
    server.stop()


@pytest.fixture(scope="session")
def store_url(store_dir):
    """The mongodb:// URL of the session's embedded server."""
    from harness.store import EmbeddedServer

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
