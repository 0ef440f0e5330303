"""A tiny Sacred experiment for the tracking and sweep tests, plus pure tests of status and masking.

``TINY_SOURCE`` is written as ``tiny_ex.py`` into a temp dir so subprocesses (kill -9, concurrent
runs, workers) can import it; ``make_tiny`` builds the same experiment in-process.
"""
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness.tracking import PROBABLY_DEAD, effective_status, is_dead, mask_doc

TINY_SOURCE = '''
import os, sys, time
from sacred import Experiment
from harness.tracking import make_observer


class FastBeat(Experiment):
    """Beats every BEAT seconds instead of Sacred's 10 so tests see heartbeats quickly."""

    def _create_run(self, *args, **kwargs):
        run = super()._create_run(*args, **kwargs)
        run.beat_interval = float(os.environ.get("TINY_BEAT", "0.3"))
        return run


ex = FastBeat("tiny", save_git_info=False)
ex.add_config(n=3, label="x", sleep=0.0, marker=None,
              store=dict(url=None, dir=None, db=os.environ.get("TINY_DB", "tiny"),
                         spool=os.environ.get("TINY_SPOOL", "spool")))
ex.observers.append(make_observer(dict(db=os.environ.get("TINY_DB", "tiny"),
                                       spool=os.environ.get("TINY_SPOOL", "spool")),
                                  retry_s=0, final_attempts=1, timeout_s=1))


@ex.main
def main(_run, n, label, sleep, marker):
    if marker:
        with open(marker, "a") as fh:  # O_APPEND: one line per execution, from any process
            fh.write(f"{label} {os.getpid()}\\n")
    for i in range(n):
        _run.log_scalar("loss", 1.0 / (i + 1), i)
        _run.log_scalar("label_len", len(label) + i, i)
        if sleep:
            time.sleep(sleep)
    return {"label": label, "n": n}


if __name__ == "__main__":
    ex.run_commandline()
'''


def write_tiny(directory: Path) -> Path:
    path = Path(directory) / "tiny_ex.py"
    path.write_text(TINY_SOURCE)
    return path


def tiny_env(directory: Path, url: str, db: str, spool: Path, **extra) -> dict:
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(directory), str(repo)])
    env["PYTHONWARNINGS"] = "ignore"
    env.update(HARNESS_MONGO_URL=url, TINY_DB=db, TINY_SPOOL=str(spool))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnServer:
    """An nx-27017 server this test may kill -9 and restart on the same port and data dir."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self):
        import pymongo

        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-c", "import sys; from nx_27017.nx_27017 import main; sys.exit(main())",
               "--data-dir", str(self.dir / "data"), "--host", "127.0.0.1", "-p", str(self.port),
               "--pid-file", str(self.dir / "pid"), "--log-file", str(self.dir / "log")]
        self.proc = subprocess.Popen(cmd, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with pymongo.MongoClient(self.url, serverSelectionTimeoutMS=500) as c:
                    c.admin.command("ping")
                return self
            except pymongo.errors.PyMongoError:
                time.sleep(0.1)
        raise RuntimeError(f"nx-27017 did not start on {self.port}")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# ---- pure tests --------------------------------------------------------------------------------

NOW = dt.datetime(2026, 1, 1, 12, 0, 0)


def test_effective_status_running_dead_and_finished():
    running = {"status": "RUNNING", "heartbeat": NOW - dt.timedelta(seconds=30)}
    assert effective_status(running, NOW) == "RUNNING"
    assert not is_dead(running, NOW)
    assert effective_status(running, NOW + dt.timedelta(minutes=2)) == PROBABLY_DEAD
    assert is_dead(running, NOW, threshold_s=10)
    done = {"status": "COMPLETED", "heartbeat": NOW - dt.timedelta(days=1)}
    assert effective_status(done, NOW) == "COMPLETED"
    assert effective_status({"status": "QUEUED"}, NOW) == "QUEUED"
    assert effective_status({}, NOW) == "UNKNOWN"


def test_effective_status_without_heartbeat_uses_start_time_and_reads_text_dates():
    never_beat = {"status": "RUNNING", "heartbeat": None, "start_time": NOW - dt.timedelta(minutes=5)}
    assert effective_status(never_beat, NOW) == PROBABLY_DEAD
    # nx-27017 keeps top-level datetimes written with $set (Sacred's own observer) as text
    as_text = {"status": "RUNNING", "heartbeat": str(NOW - dt.timedelta(minutes=3))}
    assert effective_status(as_text, NOW) == PROBABLY_DEAD
    aware = NOW.replace(tzinfo=dt.timezone.utc) + dt.timedelta(seconds=5)
    assert effective_status({"status": "RUNNING", "heartbeat": NOW}, aware) == "RUNNING"


def test_mask_doc_masks_every_url_password_deeply():
    doc = {"config": {"store": {"url": "mongodb://alice:s3cret@db.example:27017/x"}},
           "meta": {"options": {"--mongo_db": "mongodb+srv://bob:pw@cluster/x"}},
           "captured_out": "connecting to mongodb://alice:s3cret@db.example:27017 ...",
           "list": ["mongodb://u:p@h", 3, None]}
    masked = mask_doc(doc)
    text = repr(masked)
    assert "s3cret" not in text and ":pw@" not in text and ":p@" not in text
    assert masked["config"]["store"]["url"] == "mongodb://alice:***@db.example:27017/x"
    assert masked["list"][1:] == [3, None]
    assert doc["config"]["store"]["url"].endswith("s3cret@db.example:27017/x")  # input untouched
