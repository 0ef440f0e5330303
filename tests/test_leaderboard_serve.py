"""Serving the leaderboard: loopback by default, sharing on request, and who may edit tags and notes.

- ``python -m leaderboard`` and ``streamlit run leaderboard/app.py`` (the repo's .streamlit/config.toml)
  listen on 127.0.0.1 (checked in /proc/net/tcp of a real Streamlit server);
- ``--host 0.0.0.0`` prints what it exposes;
- served beyond loopback, an edit needs ``LEADERBOARD_EDIT_TOKEN`` (a forged click on the disabled
  button is refused too), and every edit is recorded with who and when (``leaderboard_edits``).
"""
import datetime as dt
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import PYTHON, python_env
from leaderboard import __main__ as cli
from leaderboard import access, demo
from leaderboard import queries as q
from runstore import FINAL_STATUSES, ROW_CACHE

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "leaderboard" / "app.py")
DB = "lb_serve"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (IPv4 and IPv6), from /proc/net/tcp*."""
    found = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) != port or fields[3] != "0A":  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if v6:  # four little-endian 32-bit words
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, raw))
            else:
                found.add(socket.inet_ntoa(raw[::-1]))
    return found


def serve(cmd, port, cwd, tmp_path):
    """Start a Streamlit server, wait for its health check, return (process, listening addresses)."""
    log = open(tmp_path / f"streamlit-{port}.log", "w")
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            env=python_env(LEADERBOARD_DB=DB, HARNESS_MONGO_URL="mongodb://127.0.0.1:1"))
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (tmp_path / f"streamlit-{port}.log").read_text()[-3000:]
                pytest.fail(f"streamlit did not start:\n{tail}")
            time.sleep(0.3)
        return listening_addresses(port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# ---- where it listens --------------------------------------------------------------------------


def test_python_m_leaderboard_defaults_to_loopback():
    command, _, args = cli.build([])
    assert command[command.index("--server.address") + 1] == "127.0.0.1" and args.host == "127.0.0.1"
    command, _, _ = cli.build(["--host", "0.0.0.0", "--port", "8600"])
    assert command[command.index("--server.address") + 1] == "0.0.0.0"
    assert command[command.index("--server.port") + 1] == "8600"
    with pytest.raises(SystemExit):
        cli.build(["--server.address", "0.0.0.0"])  # the address goes through --host only


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_servers_listen_on_loopback_only(tmp_path):
    port = free_port()
    addresses = serve([PYTHON, "-m", "leaderboard", "--port", str(port), "--server.headless", "true"],
                      port, tmp_path, tmp_path)  # any working directory
    assert addresses == {"127.0.0.1"}, addresses
    port = free_port()
    addresses = serve([PYTHON, "-m", "streamlit", "run", APP, "--server.port", str(port), "--server.headless",
                       "true"], port, REPO, tmp_path)  # the repo's .streamlit/config.toml
    assert addresses == {"127.0.0.1"}, addresses


def test_sharing_prints_what_it_exposes(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command, env: calls.append((command, env)) or 0)
    monkeypatch.delenv(access.ENV_TOKEN, raising=False)
    monkeypatch.delenv("LEADERBOARD_READ_ONLY", raising=False)
    url = "mongodb://ann:pw123@db.example:27017"
    assert cli.main(["--host", "0.0.0.0", "--port", "8600", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "every interface of this machine, port 8600" in out
    assert "mongodb://ann:***@db.example:27017" in out and "pw123" not in out
    assert "editing is off" in out and access.ENV_TOKEN in out
    assert calls[0][0][calls[0][0].index("--server.address") + 1] == "0.0.0.0"

    monkeypatch.setenv(access.ENV_TOKEN, "alice:s3cret,bob:0ther")
    cli.main(["--host", "0.0.0.0"])
    out = capsys.readouterr().out
    assert "editable by holders of LEADERBOARD_EDIT_TOKEN (alice, bob)" in out and "s3cret" not in out
    assert "leaderboard_edits" in out

    cli.main([])  # loopback: nothing to announce
    assert capsys.readouterr().out == ""


# ---- the edit policy ---------------------------------------------------------------------------


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), (None, False), ("192.168.1.5", False),
    ("myhost.example", False)])
def test_loopback_addresses(address, loopback):
    assert access.is_loopback(address) is loopback


def test_tokens_and_authorization(monkeypatch):
    tokens = access.parse_tokens("alice:s3cret, bob:a:b ,,lonely")
    assert tokens == {"alice": "s3cret", "bob": "a:b", "token": "lonely"}
    local = access.EditPolicy("127.0.0.1")
    assert local.enabled and not local.needs_token and local.authorize(None).startswith("local:")
    shared = access.EditPolicy("0.0.0.0")
    assert not shared.enabled and shared.authorize("anything") is None
    assert "no LEADERBOARD_EDIT_TOKEN is set" in shared.why_disabled()
    assert access.EditPolicy("127.0.0.1", read_only=True).authorize(None) is None

    compared = []
    real = access.hmac.compare_digest
    monkeypatch.setattr(access.hmac, "compare_digest", lambda a, b: compared.append(b) or real(a, b))
    tokens = access.parse_tokens("alice:s3cret,bob:0ther")
    for address in ("0.0.0.0", "127.0.0.1"):  # a configured token is needed wherever the app listens
        policy = access.EditPolicy(address, tokens=tokens)
        assert policy.enabled and policy.needs_token
        assert policy.authorize("s3cret") == "alice" and policy.authorize("0ther") == "bob"
        assert [policy.authorize(t) for t in ("s3cre", "", None)] == [None, None, None]
    assert len(compared) == 2 * 5 * 2  # every secret compared on every attempt, in constant time


def test_save_records_who_and_when_and_drops_the_cached_row(mongo_client):
    mongo_client.drop_database(DB)
    db = mongo_client[DB]
    runs = demo.populate(db, 6, seed=2, artifact_every=0)
    q.load_runs(db)
    done = next(r["_id"] for r in runs if r["status"] in FINAL_STATUSES)
    assert db[ROW_CACHE].find_one({"_id": done}) is not None
    old = db.runs.find_one({"_id": done})["omniboard"]
    before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=1)
    changes = access.save_tags_and_notes(db, done, " good,, checked ", "looks right", who="alice")
    assert changes == {"omniboard.tags": ["good", "checked"], "omniboard.notes": "looks right"}
    assert db[ROW_CACHE].find_one({"_id": done}) is None  # the leaderboard rebuilds this row
    (edit,) = db[access.EDITS].find({"run_id": done})
    assert edit["who"] == "alice" and before <= edit["when"] <= before + dt.timedelta(minutes=1)
    assert edit["changes"] == changes
    assert edit["before"] == {"omniboard.tags": old["tags"], "omniboard.notes": old["notes"]}
    assert q.load_runs(db).set_index("run_id").loc[done, "tags"] == "good, checked"
    # saving the same again changes and records nothing
    assert access.save_tags_and_notes(db, done, "good, checked", "looks right", who="bob") == {}
    assert db[access.EDITS].count_documents({"run_id": done}) == 1
    mongo_client.drop_database(DB)


# ---- the app (AppTest) -------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch, mongo_client, store_url):
    """An AppTest of the app as if served on ``address``, with an optional edit token."""
    from streamlit import config as st_config
    from streamlit.testing.v1 import AppTest

    mongo_client.drop_database(DB)
    runs = demo.populate(mongo_client[DB], 6, seed=2, artifact_every=0)
    previous = st_config.get_option("server.address")

    def make(address, token=None):
        st_config.set_option("server.address", address)
        monkeypatch.setenv("HARNESS_MONGO_URL", store_url)
        monkeypatch.setenv("LEADERBOARD_DB", DB)
        monkeypatch.setenv("LEADERBOARD_READ_ONLY", "0")
        if token is None:
            monkeypatch.delenv(access.ENV_TOKEN, raising=False)
        else:
            monkeypatch.setenv(access.ENV_TOKEN, token)
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.sidebar.radio(key="view").set_value("Run detail").run()
        return at

    done = next(r["_id"] for r in runs if r["status"] in FINAL_STATUSES)
    yield make, mongo_client[DB], done
    st_config.set_option("server.address", previous)
    mongo_client.drop_database(DB)


def no_exceptions(at):
    assert not at.exception, [e.value for e in at.exception]


def forged(widget):
    """The widget as a client that ignores ``disabled`` sends it (AppTest refuses, a websocket does not).

    Streamlit 1.67 drops such values itself; older ones (setup.py allows >= 1.35) do not, so the app
    checks the token again when saving.
    """
    widget.proto.disabled = False
    return widget


def open_run(at, run_id):
    at.selectbox(key="detail_run").set_value(run_id).run()
    no_exceptions(at)


def test_shared_without_token_refuses_edits(served):
    make, db, run_id = served
    old = db.runs.find_one({"_id": run_id})["omniboard"]
    at = make("0.0.0.0")
    open_run(at, run_id)
    assert at.button(key="save_meta").disabled
    assert not [t for t in at.sidebar.text_input if t.key == "edit_token"]
    assert any("Editing is off" in c.value for c in at.caption)
    forged(at.text_input(key=f"tags_{run_id}")).set_value("forged")
    forged(at.button(key="save_meta")).click().run()  # a client that sends the click anyway
    no_exceptions(at)
    assert "Saved." not in [s.value for s in at.success]
    assert db.runs.find_one({"_id": run_id})["omniboard"] == old
    assert db[access.EDITS].count_documents({}) == 0


def test_shared_with_token_accepts_edits_and_records_them(served):
    make, db, run_id = served
    old = db.runs.find_one({"_id": run_id})["omniboard"]
    at = make("0.0.0.0", token="alice:s3cret")
    open_run(at, run_id)
    assert at.button(key="save_meta").disabled  # no token typed yet
    at.sidebar.text_input(key="edit_token").set_value("wrong").run()
    assert at.button(key="save_meta").disabled
    forged(at.text_input(key=f"tags_{run_id}")).set_value("forged")
    forged(at.button(key="save_meta")).click().run()
    assert "Saved." not in [s.value for s in at.success]
    assert db.runs.find_one({"_id": run_id})["omniboard"] == old

    at.sidebar.text_input(key="edit_token").set_value("s3cret").run()
    assert not at.button(key="save_meta").disabled
    assert any("recorded as **alice**" in c.value for c in at.caption)
    at.text_input(key=f"tags_{run_id}").set_value("good, checked")
    at.text_area(key=f"notes_{run_id}").set_value("looks right")
    at.button(key="save_meta").click().run()
    no_exceptions(at)
    assert "Saved." in [s.value for s in at.success]
    saved = db.runs.find_one({"_id": run_id})["omniboard"]
    assert saved == {"tags": ["good", "checked"], "notes": "looks right"}
    assert db[ROW_CACHE].find_one({"_id": run_id}) is None
    (edit,) = db[access.EDITS].find({})
    assert edit["run_id"] == run_id and edit["who"] == "alice" and isinstance(edit["when"], dt.datetime)


def test_loopback_without_token_edits_as_the_local_user(served):
    make, db, run_id = served
    at = make("127.0.0.1")
    open_run(at, run_id)
    assert not at.button(key="save_meta").disabled
    at.text_area(key=f"notes_{run_id}").set_value("local note")
    at.button(key="save_meta").click().run()
    no_exceptions(at)
    assert db.runs.find_one({"_id": run_id})["omniboard"]["notes"] == "local note"
    (edit,) = db[access.EDITS].find({})
    assert edit["who"].startswith("local:") and edit["changes"] == {"omniboard.notes": "local note"}


def test_streamlit_run_without_an_address_counts_as_shared(served):
    make, db, run_id = served
    at = make("")  # Streamlit's default: every interface
    open_run(at, run_id)
    assert at.button(key="save_meta").disabled
