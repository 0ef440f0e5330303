"""Batch rendering of many shapes to PNG files with a manifest: resumable, shardable, parallel.

Layout: ``<out_dir>/<config_id>/<category>/<shape>/view_XX.png``, ``<out_dir>/<config_id>/manifest.jsonl``
(one JSON line per attempted shape; the last line of a key wins) and ``config.json`` (the pixel config).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from .config import RenderConfig, knobs, pixel_config, render_config_id
from .errors import EGLUnavailableError

MANIFEST = "manifest.jsonl"
MESH_HASH_CACHE = ".mesh_hashes.json"  # (size, mtime) -> hash, for jobs that come without a content hash


@dataclass(frozen=True)
class RenderJob:
    """One shape to render: ``key`` = model path relative to the dataset root (the shape's identity).

    ``content_hash``: the mesh's :func:`~renderers.content.mesh_content_hash` when the caller knows it
    (the dataset layer does, from its hash cache); computed here when None. ``orientation``: a
    rotation (9 floats, row-major; :mod:`renderers.orientation`) applied before the mesh is framed,
    None to draw it as the file has it. The caller folds what decides it into the content hash or
    the render config id, so renders of another orientation are never reused.
    """

    key: str
    category: str
    path: str
    content_hash: str | None = None
    orientation: tuple | None = None


@dataclass
class RenderSummary:
    """Outcome of ``render_batch`` (counts cover this shard)."""

    render_dir: str
    config_id: str
    total: int = 0
    rendered: int = 0
    skipped: int = 0
    failed: int = 0
    views: int = 0
    seconds: float = 0.0
    failures: dict = field(default_factory=dict)  # key -> reason
    warnings: int = 0

    @property
    def views_per_s(self) -> float:
        return self.views / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        """Plain-Python summary (JSON/MongoDB safe)."""
        out = asdict(self)
        out["views_per_s"] = float(self.views_per_s)
        return out


def shape_dir(key: str, category: str) -> str:
    """Folder of a shape below ``<category>/``, derived from its key so variants stay distinct.

    ``model/chair/IKEA_X/model.obj`` → ``IKEA_X``; ``model/chair/IKEA_X/model_2.obj`` →
    ``IKEA_X__model_2``; deeper folders are joined with ``__``; a file directly in the category
    folder gives its stem.
    """
    parts = list(PurePosixPath(key.replace("\\", "/")).parts)
    if parts and parts[0] == "model":
        parts = parts[1:]
    if parts and parts[0] == category:
        parts = parts[1:]
    if not parts:
        raise ValueError(f"render job key {key!r} names no file")
    *folders, filename = parts
    stem = PurePosixPath(filename).stem
    name = "__".join(folders)
    if stem != "model" or not folders:
        name = f"{name}__{stem}" if name else stem
    return name


def parse_shard(shard) -> tuple[int, int]:
    """``(i, n)`` or ``"i/n"`` → (i, n), validated."""
    if isinstance(shard, str):
        try:
            i, n = (int(v) for v in shard.split("/"))
        except ValueError as exc:
            raise ValueError(f"render.shard={shard!r} must look like 'i/n', e.g. '0/4'") from exc
    else:
        i, n = (int(v) for v in shard)
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"render.shard={i}/{n}: need n >= 1 and 0 <= i < n")
    return i, n


def shard_jobs(jobs, shard=(0, 1)) -> list[RenderJob]:
    """This shard's jobs, sorted by key; a key's shard depends only on the key (stable hash)."""
    i, n = parse_shard(shard)
    pick = [j for j in jobs if int(hashlib.sha1(j.key.encode()).hexdigest(), 16) % n == i]
    return sorted(pick, key=lambda j: j.key)


def read_manifest(render_dir) -> dict:
    """``{key: entry}`` from ``<render_dir>/manifest.jsonl`` (last line per key wins; {} if none)."""
    path = Path(render_dir) / MANIFEST
    entries = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a torn last line from a killed run: ignore it
                    continue
                entries[entry["key"]] = entry
    return entries


def view_paths(render_dir, key: str, manifest: dict | None = None) -> list[Path]:
    """Absolute paths of a rendered shape's views (empty if it is not rendered or failed)."""
    entry = (manifest if manifest is not None else read_manifest(render_dir)).get(key)
    if not entry or entry.get("status") != "ok":
        return []
    return [Path(render_dir) / v for v in entry["views"]]


def _is_done(render_dir: Path, entry: dict, job: RenderJob) -> bool:
    """Reusable: rendered from the same mesh content (same pixel config: the folder) and all views there."""
    return (entry.get("status") == "ok" and entry.get("content_hash") == job.content_hash
            and all((render_dir / v).is_file() for v in entry["views"]))


def with_content_hashes(jobs: list[RenderJob], cache_file, progress: bool = False) -> list[RenderJob]:
    """``jobs`` with every missing ``content_hash`` filled in (hashes cached in ``cache_file``)."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    from .content import load_cache, mesh_content_hash, save_cache

    if all(j.content_hash for j in jobs):
        return jobs
    cache = load_cache(cache_file)
    out = [j if j.content_hash else replace(j, content_hash=mesh_content_hash(j.path, cache))
           for j in tqdm(jobs, desc="hash meshes", unit="mesh", disable=not progress, leave=False)]
    save_cache(cache_file, cache)
    return out


def _atomic_write_png(image: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(image).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def _renderer_for(pixel_cfg: dict):
    from .gl import Lighting, get_renderer

    light = {k: tuple(v) if isinstance(v, list) else v for k, v in pixel_cfg["lighting"].items()}
    return get_renderer(tuple(pixel_cfg["size"]), tuple(pixel_cfg["background"]), pixel_cfg["msaa"],
                        lighting=Lighting(**light), max_faces=pixel_cfg["max_faces"])


_WRITERS: ThreadPoolExecutor | None = None


def render_chunk(pixel_cfg: dict, render_dir: str, jobs: list) -> list[dict]:
    """Render a few shapes in this process (its own cached GL context); PNGs are encoded on writer
    threads while the next shape renders. Returns one manifest entry per job."""
    global _WRITERS
    if _WRITERS is None:
        _WRITERS = ThreadPoolExecutor(2, thread_name_prefix="png")
    render_dir = Path(render_dir)
    renderer = None
    pending, entries = [], []
    for job in jobs:
        job = RenderJob(*job) if not isinstance(job, RenderJob) else job
        t0 = time.perf_counter()
        entry = {"key": job.key, "category": job.category,
                 "shape": f"{job.category}/{shape_dir(job.key, job.category)}",
                 "content_hash": job.content_hash, "status": "ok", "reason": None, "views": [],
                 "warnings": []}
        try:
            renderer = renderer or _renderer_for(pixel_cfg)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                mesh = job.path
                if job.orientation is not None:
                    from .mesh import load_mesh
                    from .orientation import oriented

                    mesh = oriented(load_mesh(job.path, normalize=False, max_faces=renderer.max_faces),
                                    job.orientation)
                images = renderer.render(mesh, pixel_cfg["rig"], **pixel_cfg["rig_options"])
            entry["warnings"] = sorted({str(w.message) for w in caught})
            folder = render_dir / entry["shape"]
            folder.mkdir(parents=True, exist_ok=True)
            futures = []
            for v, image in enumerate(images):
                rel = f"{entry['shape']}/view_{v:02d}.png"
                entry["views"].append(rel)
                futures.append(_WRITERS.submit(_atomic_write_png, image, render_dir / rel))
            pending.append((entry, futures, t0))
        except EGLUnavailableError:
            raise  # no shape can render here: stop with the one clear message
        except Exception as exc:  # noqa: BLE001 - one bad shape must not stop the batch; reason recorded
            entry.update(status="failed", reason=f"{type(exc).__name__}: {exc}",
                         seconds=round(time.perf_counter() - t0, 4))
            entries.append(entry)
    for entry, futures, t0 in pending:
        try:
            for f in futures:
                f.result()
        except OSError as exc:
            entry.update(status="failed", reason=f"writing PNGs failed: {exc}", views=[])
        entry["seconds"] = round(time.perf_counter() - t0, 4)
        entries.append(entry)
    return entries


def _chunk_entries(fut, chunk) -> list[dict]:
    """A finished chunk's entries; a crashed worker (segfault, killed, lost Dask worker) fails its shapes."""
    try:
        return fut.result()
    except EGLUnavailableError:
        raise
    except Exception as exc:  # noqa: BLE001 - the batch goes on; resume retries these shapes
        return [{"key": j.key, "category": j.category,
                 "shape": f"{j.category}/{shape_dir(j.key, j.category)}",
                 "content_hash": j.content_hash, "status": "failed",
                 "reason": f"worker failed: {type(exc).__name__}: {exc}", "views": [],
                 "warnings": [], "seconds": 0.0} for j in chunk]


def _write_config(render_dir: Path, pixel_cfg: dict, config_id: str) -> None:
    path = render_dir / "config.json"
    if not path.exists():
        tmp = path.with_name(f".config.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"config_id": config_id, **pixel_cfg}, indent=2, sort_keys=True))
        os.replace(tmp, path)


def _executor(scheduler, workers, n_chunks):
    """(submit, as_completed, close) for the chosen backend: in-process, local processes or Dask."""
    if scheduler is not None:
        from distributed import Client
        from distributed import as_completed as dask_completed

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        close = (lambda: None) if client is scheduler else client.close
        return (lambda *a: client.submit(render_chunk, *a, pure=False)), dask_completed, close
    if workers <= 1 or n_chunks <= 1:
        class _Lazy:  # in-process: render when the result is asked for, so progress and manifest advance
            def __init__(self, *args):
                self._args = args

            def result(self):
                return render_chunk(*self._args)
        return _Lazy, (lambda fs: fs), (lambda: None)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: each worker makes its own EGL context; never inherit a parent's GL state through fork.
    pool = ProcessPoolExecutor(min(workers, n_chunks), mp_context=multiprocessing.get_context("spawn"))
    return ((lambda *a: pool.submit(render_chunk, *a)), as_completed,
            lambda: pool.shutdown(wait=True, cancel_futures=True))


def render_batch(jobs, out_dir, cfg: RenderConfig | dict, shard=(0, 1), scheduler=None, workers=None,
                 progress=True, chunk_size: int = 4) -> RenderSummary:
    """Render ``jobs`` (``RenderJob``s) with render config ``cfg`` into ``<out_dir>/<config_id>/``.

    Shapes already in the manifest as ``ok``, rendered from the same mesh content (``content_hash``:
    mesh, materials, textures) and with all their views on disk are skipped (resume); a shape whose
    files changed is rendered again in place.
    ``workers``: local process pool size (None: CPU count; <= 1: in this process); ``scheduler``:
    a Dask scheduler address or ``distributed.Client`` to render on instead. A shape that cannot be
    rendered gets a ``failed`` manifest line with the reason; the batch goes on.
    """
    from tqdm.auto import tqdm

    pixel_cfg = pixel_config(cfg)
    pixel_cfg["max_faces"] = knobs(cfg).get("max_faces") or _default_max_faces()
    config_id = render_config_id(cfg)
    render_dir = Path(out_dir) / config_id
    render_dir.mkdir(parents=True, exist_ok=True)
    _write_config(render_dir, {k: v for k, v in pixel_cfg.items() if k != "max_faces"}, config_id)
    jobs = [j if isinstance(j, RenderJob) else RenderJob(*j) for j in jobs]
    folders = {}
    for j in jobs:
        folder = f"{j.category}/{shape_dir(j.key, j.category)}"
        if folders.setdefault(folder, j.key) != j.key:
            raise ValueError(f"render jobs {folders[folder]!r} and {j.key!r} map to the same "
                             f"folder {folder!r}")
    mine = with_content_hashes(shard_jobs(jobs, shard), Path(out_dir) / MESH_HASH_CACHE, progress)
    manifest = read_manifest(render_dir)
    todo = [j for j in mine if not (j.key in manifest and _is_done(render_dir, manifest[j.key], j))]
    summary = RenderSummary(str(render_dir), config_id, total=len(mine), skipped=len(mine) - len(todo))
    workers = os.cpu_count() or 1 if workers is None else int(workers)
    chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
    t0 = time.perf_counter()
    submit, completed, close = _executor(scheduler, workers, len(chunks))
    try:
        futures = {submit(pixel_cfg, str(render_dir), [tuple(asdict(j).values()) for j in c]): c
                   for c in chunks}
        bar = tqdm(total=len(todo), desc=f"render {config_id}", unit="shape", disable=not progress)
        with open(render_dir / MANIFEST, "a", encoding="utf-8") as manifest_file:
            for fut in completed(list(futures)):
                for entry in _chunk_entries(fut, futures[fut]):
                    # one write() per line: appends from concurrent shards stay whole lines
                    manifest_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
                    manifest_file.flush()
                    if entry["status"] == "ok":
                        summary.rendered += 1
                        summary.views += len(entry["views"])
                    else:
                        summary.failed += 1
                        summary.failures[entry["key"]] = entry["reason"]
                    summary.warnings += len(entry.get("warnings", ()))
                    bar.update(1)
        bar.close()
    finally:
        close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _default_max_faces() -> int:
    from .mesh import DEFAULT_MAX_FACES

    return DEFAULT_MAX_FACES
