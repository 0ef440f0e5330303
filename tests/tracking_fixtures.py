"""A tiny Sacred experiment for the tracking, spool and sweep tests (a fixture module, no tests).

``TINY_SOURCE`` is written as ``tiny_ex.py`` into a temp dir so subprocesses (kill -9, concurrent
runs, workers) can import it; ``make_tiny`` builds the same experiment in-process.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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
                if self.proc.poll() is not None:  # another server answered on our port: not ours to kill
                    raise RuntimeError(f"nx-27017 exited at start: port {self.port} is taken")
                return self
            except pymongo.errors.PyMongoError:
                time.sleep(0.1)
        raise RuntimeError(f"nx-27017 did not start on {self.port}")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# ---- pure tests --------------------------------------------------------------------------------
