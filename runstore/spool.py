"""The local spool: one folder per run holding its Sacred document, every metric point, artifacts
and sources, written before anything goes to the store (the store's "failure dir")."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
from pathlib import Path

from bson import json_util

DEFAULT_SPOOL = "runs/spool"
RUN_FILE = "run.json"
STATE_FILE = "state.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = "lock"
ARTIFACT_DIR = "artifacts"
SOURCE_DIR = "sources"
_JSON = json_util.JSONOptions(json_mode=json_util.JSONMode.RELAXED, tz_aware=False)


def dumps(obj) -> str:
    return json_util.dumps(obj, json_options=_JSON, default=str)


def loads(text: str):
    return json_util.loads(text, json_options=_JSON)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SpoolRun:
    """One run's spool dir: ``run.json`` (the document), ``state.json`` (what reached which store),
    ``metrics.jsonl`` (every point, appended), ``artifacts/``, ``sources/`` and a ``lock`` file
    that is flock'ed while the run's process lives."""

    def __init__(self, path: Path, doc: dict, state: dict, metrics: dict):
        self.path = Path(path)
        self.doc = doc
        self.state = state
        self.metrics = metrics  # name -> {"steps": [...], "values": [...], "timestamps": [...]}
        self.pushed_counts: dict[str, int] = {}  # in memory only: points of each metric already pushed
        self._lock_fh = None

    @property
    def uid(self) -> str:
        return self.doc["meta"]["run_uid"]

    @classmethod
    def create(cls, spool: Path, doc: dict) -> SpoolRun:
        path = Path(spool) / doc["meta"]["run_uid"]
        (path / ARTIFACT_DIR).mkdir(parents=True, exist_ok=True)
        run = cls(path, doc, {"run_id": None, "artifacts": {}, "sources": {}, "metric_ids": {},
                              "synced": False, "pushed_to": None}, {})
        run.write_state()
        run.write_doc()
        return run

    @classmethod
    def load(cls, path: Path) -> SpoolRun:
        path = Path(path)
        doc = loads((path / RUN_FILE).read_text(encoding="utf-8"))
        try:
            state = loads((path / STATE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = {"run_id": None, "artifacts": {}, "sources": {}, "metric_ids": {}, "synced": False}
        metrics: dict = {}
        metrics_file = path / METRICS_FILE
        if metrics_file.exists():
            for line in metrics_file.read_text(encoding="utf-8").splitlines():
                try:
                    point = loads(line)
                except ValueError:  # a half-written last line of a killed process
                    continue
                series = metrics.setdefault(point["name"], {"steps": [], "values": [], "timestamps": []})
                series["steps"].append(point["step"])
                series["values"].append(point["value"])
                series["timestamps"].append(point["timestamp"])
        return cls(path, doc, state, metrics)

    def write_doc(self) -> None:
        _write_atomic(self.path / RUN_FILE, dumps(self.doc))

    def write_state(self) -> None:
        _write_atomic(self.path / STATE_FILE, dumps(self.state))

    def append_metrics(self, metrics_by_name: dict) -> None:
        """Append Sacred's linearised metrics ({name: {steps, values, timestamps}}) to the spool."""
        lines = []
        for name, series in metrics_by_name.items():
            mine = self.metrics.setdefault(name, {"steps": [], "values": [], "timestamps": []})
            columns = (series["steps"], series["values"], series["timestamps"])
            for step, value, stamp in zip(*columns, strict=True):
                mine["steps"].append(step)
                mine["values"].append(value)
                mine["timestamps"].append(stamp)
                lines.append(dumps({"name": name, "step": step, "value": value, "timestamp": stamp}))
        if lines:
            with open(self.path / METRICS_FILE, "a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def add_artifact(self, name: str, filename, metadata=None, content_type=None) -> None:
        dest = self.path / ARTIFACT_DIR / hashlib.sha1(name.encode()).hexdigest()[:16]
        shutil.copyfile(filename, dest)
        self.state["artifacts"][name] = {"file": dest.name, "metadata": metadata,
                                         "content_type": content_type, "file_id": None}
        self.write_state()

    def add_sources(self, ex_info: dict) -> None:
        """Copy the experiment's source files so a later sync uploads what actually ran."""
        (self.path / SOURCE_DIR).mkdir(exist_ok=True)
        for name, md5 in ex_info.get("sources", []):
            src = Path(ex_info.get("base_dir", ".")) / name
            dest = self.path / SOURCE_DIR / f"{md5}"
            with contextlib.suppress(OSError):
                if not dest.exists():
                    shutil.copyfile(src, dest)
                self.state["sources"][name] = {"md5": md5, "abs_path": str(src), "file_id": None}
        self.write_state()

    def lock(self) -> None:
        """Hold the run's lock while its process lives (released by the OS on kill -9)."""
        self._lock_fh = open(self.path / LOCK_FILE, "w")
        fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_fh.write(f"{socket.gethostname()}:{os.getpid()}\n")
        self._lock_fh.flush()

    def unlock(self) -> None:
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def is_live(self) -> bool:
        """Whether another process holds this run's lock (the run is still going)."""
        if self._lock_fh is not None:
            return True
        try:
            fh = open(self.path / LOCK_FILE, "a")
        except OSError:
            return False
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def spooled_runs(spool: str | os.PathLike = DEFAULT_SPOOL) -> list[Path]:
    """The spool dirs (one per run) under ``spool``, oldest first (not ``.``-named ones being removed)."""
    root = Path(spool)
    if not root.is_dir():
        return []
    dirs = [p for p in root.iterdir() if not p.name.startswith(".") and (p / RUN_FILE).is_file()]
    return sorted(dirs, key=lambda p: (p / RUN_FILE).stat().st_mtime)


def marked_synced(path: Path) -> bool:
    """Whether the spool dir says its run was fully pushed (reads ``state.json`` alone: cheap)."""
    try:
        return bool(loads((path / STATE_FILE).read_text(encoding="utf-8")).get("synced"))
    except (OSError, ValueError):
        return False
