"""The ``render`` command and stage: every shape of the dataset → multi-view PNGs + manifest."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from harness.experiment import ex

if TYPE_CHECKING:
    from harness.config import Config

MAX_FAILURES_IN_INFO = 100  # run.info stays small on a badly broken dataset; the manifest has them all


class RenderStage(NamedTuple):
    """Where the renders of this config live, its id, the batch summary (plain dict) and the
    fingerprint of what was rendered (two runs saw the same images only when it is the same)."""

    render_dir: str
    config_id: str
    summary: dict
    fingerprint: str | None = None


def _mesh_file(prepared, shape) -> str:
    path = Path(shape.mesh_path)
    return str(path if path.is_absolute() else Path(getattr(prepared, "root", ".")) / path)


def content_hashes(prepared) -> dict[str, str]:
    """``{shape key: render identity}``: the mesh content hash (the data layer's cached one, computed
    for datasets that come without it), with the up axis appended when the file is not Y-up, so
    renders made for another ``data.up_axis`` are never reused."""
    shapes = prepared.dataset.shapes
    if any(getattr(s, "content_hash", None) is None for s in shapes):
        _hash_meshes(prepared)
    out = {}
    for s in shapes:
        up = _up_axis(s)
        out[s.key] = s.content_hash if up == "y" else f"{s.content_hash}+up-{up}"
    return out


def _hash_meshes(prepared) -> None:
    """Fill in the content hash of shapes that came without one, once per process (kept on the Shape):
    a stamp of the file's (size, mtime) where the dataset's files are immutable (``stamp_identity``,
    Objaverse: a uid is one object; 800k GLBs are not read at render time), else a hash of the mesh's
    bytes (every format's reader hashes its meshes itself: this serves hand-built datasets)."""
    from renderers import mesh_content_hash

    stamps = getattr(prepared.dataset, "stamp_identity", False)
    for s in prepared.dataset.shapes:
        if getattr(s, "content_hash", None) is not None:
            continue
        path = _mesh_file(prepared, s)
        if not stamps:
            s.content_hash = mesh_content_hash(path)
            continue
        try:
            st = os.stat(path)
            s.content_hash = f"stamp-{st.st_size}-{st.st_mtime_ns}"
        except OSError:
            s.content_hash = "missing"  # the render fails and says why; nothing is reused


def _up_axis(shape) -> str:
    return str(getattr(shape, "up_axis", None) or "y").lower()


def render_jobs(prepared, keys=None, rotation: tuple[str, int] | None = None) -> list:
    """One ``RenderJob`` per shape of ``prepared.dataset`` (or of ``keys``; key = model path rel. to
    the dataset root), turned upright from its file's up axis and then by ``rotation`` = (kind, seed)
    (``renderers.random_rotation``) when given."""
    from renderers import RenderJob, as_orientation, random_rotation, up_axis_matrix

    hashes = content_hashes(prepared)
    wanted = None if keys is None else set(keys)
    jobs = []
    for s in prepared.dataset.shapes:
        if wanted is not None and s.key not in wanted:
            continue
        turn = up_axis_matrix(_up_axis(s))
        if rotation is not None:
            turn = random_rotation(rotation[0], rotation[1], s.key) @ turn
        jobs.append(RenderJob(s.key, s.category, _mesh_file(prepared, s), hashes[s.key],
                              as_orientation(turn)))
    return jobs


def usable_views(prepared, render_dir) -> dict[str, list[str]]:
    """``{shape key: view files}`` of the shapes whose renders in ``render_dir`` came from the mesh
    content this dataset has now (a stale entry, e.g. from a shard rendered for another dataset with
    the same paths, is not usable). The one place that decides which cached images a run sees."""
    from renderers import read_manifest

    manifest = read_manifest(render_dir)
    out = {}
    for key, content_hash in content_hashes(prepared).items():
        entry = manifest.get(key) or {}
        if entry.get("status") == "ok" and entry.get("content_hash") == content_hash:
            out[key] = [str(Path(render_dir) / v) for v in entry.get("views", [])]
    return out


def shape_items(prepared, render_dir: str, keys) -> list:
    """ShapeItems of ``keys`` with usable renders (failed, missing or stale renders are skipped): what
    the train and evaluate stages see of the renders."""
    from models import make_items

    categories = {s.key: s.category for s in prepared.dataset.shapes}
    return make_items(list(keys), usable_views(prepared, render_dir), prepared.captions, categories)


def renders_fingerprint(config_id: str, prepared, usable: dict) -> str:
    """16 hex digits over the render config id and the (shape key, mesh content hash) pairs of the
    usable renders: two runs saw the same images only when their fingerprints agree."""
    h = hashlib.sha256(config_id.encode())
    hashes = content_hashes(prepared)
    for key in sorted(usable):
        h.update(f"\0{key}\0{hashes[key]}".encode())
    return h.hexdigest()[:16]


def render_stage(cfg: Config | Mapping, run=None, *, prepared) -> RenderStage:
    """Render the dataset's shapes with ``cfg.render`` (resumable); with a Sacred ``run``, log
    ``render.views_per_s`` (only when this run rendered something: a cache hit is not a speed), put
    the summary in ``run.info["render"]`` and attach a contact sheet.

    cfg: the Config (a mapping is converted once, keys and render section checked).
    """
    from harness.config import load_config
    from renderers import contact_sheet, read_manifest, render_batch, spread_views

    cfg = load_config(cfg, check=False)
    render = cfg.render
    jobs = render_jobs(prepared)
    summary = render_batch(jobs, render.out, render, shard=render.shard, scheduler=render.scheduler,
                           workers=render.workers, progress=True)
    info = summary.as_dict()
    if not summary.views:
        del info["views_per_s"]  # nothing rendered: no figure rather than a false 0
    manifest = read_manifest(summary.render_dir)
    fingerprint = renders_fingerprint(summary.config_id, prepared, usable_views(prepared, summary.render_dir))
    if run is not None:
        if summary.views:
            run.log_scalar("render.views_per_s", float(summary.views_per_s))
        failures = dict(list(info["failures"].items())[:MAX_FAILURES_IN_INFO])
        run.info["render"] = {**info, "failures": failures, "fingerprint": fingerprint}
        ok = [j.key for j in jobs if manifest.get(j.key, {}).get("status") == "ok"][:8]
        if ok:
            n_views = len(manifest[ok[0]]["views"])
            shard = str(render.shard).replace("/", "of")
            path = Path(summary.render_dir) / f"contact_sheet_{shard}.png"
            contact_sheet(summary.render_dir, ok, views=spread_views(n_views, 4), size=128).save(path)
            run.add_artifact(str(path), name="render_contact_sheet.png")
    return RenderStage(summary.render_dir, summary.config_id, info, fingerprint)


def rotated_renders(cfg: Config, prepared, keys, kind: str, seed: int) -> RenderStage:
    """Renders of the shapes ``keys``, each turned by its seeded rotation of ``kind`` (``z`` | ``so3``):
    the rotation-robustness evaluation's images. They are cached like any other renders, in their own
    folder (the render config id carries ``<kind>:<seed>``), so evaluating again renders nothing."""
    from registries import as_dict
    from renderers import render_batch

    render = cfg.render
    rotated = {**as_dict(render), "rotation": f"{kind}:{int(seed)}"}
    summary = render_batch(render_jobs(prepared, keys, rotation=(kind, int(seed))), render.out, rotated,
                           scheduler=render.scheduler, workers=render.workers, progress=True)
    info = summary.as_dict()
    fingerprint = renders_fingerprint(summary.config_id, prepared, usable_views(prepared, summary.render_dir))
    return RenderStage(summary.render_dir, summary.config_id, info, fingerprint)


@ex.command
def render(_config, _run):
    """Render every shape of the dataset into multi-view PNGs (resumable; failures are counted, not fatal)."""
    from harness.config import load_config
    from harness.data import prepare

    cfg = load_config(dict(_config), check=False)
    return render_stage(cfg, _run, prepared=prepare(cfg.data, cfg.seed)).summary
