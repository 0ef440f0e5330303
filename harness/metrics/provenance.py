"""Provenance helpers: package versions, git commit, file hashes — plain types only."""
from __future__ import annotations

import hashlib
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

TRACKED_PACKAGES = ("torch", "open_clip_torch", "numpy", "pycocoevalcap", "sacred")


def package_versions(names=TRACKED_PACKAGES) -> dict:
    """``{name_with_underscores: version or None}`` of the packages a result depends on."""
    out = {}
    for name in names:
        try:
            out[name.replace(".", "_").replace("-", "_")] = version(name)
        except PackageNotFoundError:
            out[name.replace(".", "_").replace("-", "_")] = None
    return out


def git_commit(cwd=None) -> str | None:
    """HEAD commit of the git checkout at ``cwd`` (``-dirty`` appended with local changes), else None."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def file_sha256(path) -> str | None:
    """sha256 of a file (streamed), or None when the path does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def metric_impl() -> dict:
    """What computed the metrics: retrieval conventions and the caption-metric implementation."""
    from .captioning import metric_impl as caption_impl
    return {"retrieval": "harness.metrics.retrieval (multi-positive, blockwise; ties: negatives first)",
            "bootstrap": "percentile, resampling test shapes", **caption_impl()}


def plain(obj):
    """Recursively cast numpy scalars/arrays and tuples to plain Python types for MongoDB."""
    import numpy as np
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
