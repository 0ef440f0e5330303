"""Where runs live: MongoDB URL resolution, credential masking and the embedded nx-27017 server.

Resolution order: an explicit URL (config ``store.url`` or Sacred's ``-m``) → ``$HARNESS_MONGO_URL``
→ the embedded server, started on demand in the store dir (config ``store.dir`` →
``$HARNESS_STORE_DIR`` → ``./runs/store``). A state file in the store dir records the server's port
and pid so later processes reuse it; a dead server is restarted; concurrent starts are serialised
by a file lock. The embedded server only ever binds 127.0.0.1. It is nx-27017 started through
``runstore.embedded``, which first makes it answer like MongoDB where Sacred tools look (handshake,
sort order, date arithmetic; docs/tracking.md) and refuses nx-27017 versions it was not tested with.

CLI: ``python -m runstore start|stop|status|url [--dir DIR]``.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .embedded import LAUNCHER, UntestedVersionError, check_versions
from .errors import StoreError, StoreUnreachable
from .masking import mask_secrets, mask_url

ENV_URL = "HARNESS_MONGO_URL"
ENV_DIR = "HARNESS_STORE_DIR"
DEFAULT_STORE_DIR = "runs/store"
LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 5.0

def resolve_store_dir(store_dir: str | os.PathLike | None = None) -> Path:
    """The embedded server's directory: argument → ``$HARNESS_STORE_DIR`` → ``./runs/store``."""
    chosen = store_dir or os.environ.get(ENV_DIR) or DEFAULT_STORE_DIR
    return Path(chosen).expanduser().resolve()


def resolve_url(url: str | None = None, store_dir: str | os.PathLike | None = None,
                start: bool = True) -> str:
    """The MongoDB URL to use; starts the embedded server when nothing else is configured.

    start: when False and the embedded server is not running, raise StoreError instead of starting it.
    """
    if url:
        return url
    if os.environ.get(ENV_URL):
        return os.environ[ENV_URL]
    server = EmbeddedServer(store_dir)
    if start:
        return server.start()
    state = server.running()
    if state is None:
        raise StoreError(f"the embedded store in {server.dir} is not running; start it with "
                         f"`python -m runstore start --dir {server.dir}`")
    return server.url_for(state["port"])


def describe(url: str | None = None, store_dir: str | os.PathLike | None = None) -> str:
    """A one-line, masked description of which store a process would use (starts nothing)."""
    if url:
        return f"configured URL {mask_url(url)}"
    if os.environ.get(ENV_URL):
        return f"${ENV_URL} = {mask_url(os.environ[ENV_URL])}"
    return f"embedded nx-27017 server in {resolve_store_dir(store_dir)}"


def connect(url: str | None = None, store_dir: str | os.PathLike | None = None,
            timeout_s: float = CONNECT_TIMEOUT_S):
    """A pymongo client on the resolved store, checked with a ping within ``timeout_s``.

    Raises StoreUnreachable naming the masked URL (pymongo's own default waits 30 s).
    """
    import pymongo
    import pymongo.errors

    resolved = resolve_url(url, store_dir)
    ms = int(timeout_s * 1000)
    try:
        client = pymongo.MongoClient(resolved, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms,
                                     socketTimeoutMS=max(ms * 6, 30000))
        client.admin.command("ping")
    except (pymongo.errors.PyMongoError, ValueError) as exc:
        raise StoreUnreachable(
            f"cannot reach MongoDB at {mask_url(resolved)} within {timeout_s:g} s "
            f"({type(exc).__name__}: {mask_secrets(str(exc)).splitlines()[0][:200]}). "
            f"Check the URL in store.url / ${ENV_URL}, or unset it to use the embedded store "
            f"(`python -m runstore start`)."
        ) from None
    return client


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (our own, not yet reaped) is not a server.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    except OSError:
        pass
    return True


def _port_answers(port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _ping(port: int, timeout_s: float = 2.0) -> bool:
    import pymongo

    ms = int(timeout_s * 1000)
    try:
        with pymongo.MongoClient(f"mongodb://{LOOPBACK}:{port}", serverSelectionTimeoutMS=ms,
                                 connectTimeoutMS=ms) as client:
            client.admin.command("ping")
        return True
    except Exception:
        return False


class EmbeddedServer:
    """The nx-27017 server (MongoDB wire protocol on SQLite) that keeps runs in a store dir."""

    STATE = "server.json"
    LOCK = "server.lock"

    def __init__(self, store_dir: str | os.PathLike | None = None):
        self.dir = resolve_store_dir(store_dir)

    @property
    def state_file(self) -> Path:
        return self.dir / self.STATE

    @staticmethod
    def url_for(port: int) -> str:
        return f"mongodb://{LOOPBACK}:{port}"

    @contextlib.contextmanager
    def _locked(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / self.LOCK, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def running(self) -> dict | None:
        """The state (port, pid) of a live server of this store dir, or None."""
        state = self._read_state()
        if state and _pid_alive(int(state["pid"])) and _port_answers(int(state["port"])):
            return state
        return None

    def start(self, timeout_s: float = 30.0) -> str:
        """Start the server unless one already serves this dir; return its URL.

        The server is nx-27017 started through ``runstore.embedded``, which fixes the handshake, the
        sort order and date arithmetic first and refuses an nx-27017/neosqlite version it was not
        tested with (StoreError naming the versions).
        """
        with self._locked():
            state = self.running()
            if state is not None:
                if state.get("launcher") != LAUNCHER:
                    print(f"warning: the embedded store in {self.dir} was started without the current "
                          f"MongoDB-compatibility fixes ({LAUNCHER}); restart it to get them: "
                          f"python -m runstore stop --dir {self.dir} && "
                          f"python -m runstore start --dir {self.dir}", file=sys.stderr)
                return self.url_for(state["port"])
            try:
                check_versions()  # an untested nx-27017 fails here, naming the versions
            except UntestedVersionError as exc:
                raise StoreError(str(exc)) from None
            last_error = ""
            for _attempt in range(3):  # a free port can be taken between probing and binding
                port = _free_port()
                proc = self._spawn(port)
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    if proc.poll() is not None:
                        break
                    if _ping(port, timeout_s=1.0):
                        state = {"port": port, "pid": proc.pid, "host": LOOPBACK, "launcher": LAUNCHER,
                                 "data_dir": str(self.dir / "data"), "started": time.time()}
                        tmp = self.state_file.with_suffix(".json.tmp")
                        tmp.write_text(json.dumps(state))
                        os.replace(tmp, self.state_file)
                        return self.url_for(port)
                    time.sleep(0.1)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                last_error = self._log_tail()
            raise StoreError(f"the embedded store (nx-27017) did not start in {self.dir}; "
                             f"its log {self.dir / 'server.log'} ends with:\n{last_error}")

    def _spawn(self, port: int) -> subprocess.Popen:
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "server.log", "ab")
        # nx-27017 through runstore.embedded (its MongoDB-compatibility fixes), from this same checkout
        root = str(Path(__file__).resolve().parents[1])
        launch = (f"import sys; sys.path.insert(0, {root!r}); "
                  "from runstore.embedded import main; sys.exit(main())")
        cmd = [sys.executable, "-c", launch,
               "--data-dir", str(self.dir / "data"), "--host", LOOPBACK, "-p", str(port),
               "--pid-file", str(self.dir / "nx-27017.pid"), "--log-file", str(self.dir / "server.log")]
        # A new session so the server outlives this process and later processes can reuse it.
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join((self.dir / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the server of this dir; True when one was running. Data stays in the dir."""
        with self._locked():
            state = self._read_state()
            stopped = False
            if state and _pid_alive(int(state["pid"])):
                pid = int(state["pid"])
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout_s
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
                stopped = True
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()
            return stopped

    def status(self) -> dict:
        """Whether this dir's server runs and answers, with its port and pid."""
        state = self._read_state()
        alive = bool(state) and _pid_alive(int(state["pid"]))
        answers = alive and _ping(int(state["port"]), timeout_s=CONNECT_TIMEOUT_S)
        return {"dir": str(self.dir), "running": alive, "answers": answers,
                "port": state["port"] if state else None, "pid": state["pid"] if state else None}


def status(url: str | None = None, store_dir: str | os.PathLike | None = None) -> dict:
    """Which store is in use and whether it answers (within 5 s); starts nothing."""
    info = {"store": describe(url, store_dir)}
    if url or os.environ.get(ENV_URL):
        target = url or os.environ[ENV_URL]
        try:
            connect(target).close()
            info.update(url=mask_url(target), answers=True)
        except StoreUnreachable as exc:
            info.update(url=mask_url(target), answers=False, error=str(exc))
    else:
        server = EmbeddedServer(store_dir)
        st = server.status()
        info.update(st, url=server.url_for(st["port"]) if st["port"] else None)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runstore", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status", "url"])
    parser.add_argument("--dir", default=None, help=f"store dir (default: ${ENV_DIR} or {DEFAULT_STORE_DIR})")
    parser.add_argument("--url", default=None,
                        help=f"a MongoDB URL (default: ${ENV_URL} or the embedded store)")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            url = EmbeddedServer(args.dir).start()
            print(f"embedded store running in {resolve_store_dir(args.dir)} at {url}")
        elif args.action == "stop":
            stopped = EmbeddedServer(args.dir).stop()
            where = resolve_store_dir(args.dir)
            print(("stopped" if stopped else "no running") + f" embedded store in {where}")
        elif args.action == "status":
            info = status(args.url, args.dir)
            for key, value in info.items():
                print(f"{key}: {value}")
            return 0 if info.get("answers") else 1
        else:
            print(describe(args.url, args.dir))
            print(mask_url(resolve_url(args.url, args.dir)))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
