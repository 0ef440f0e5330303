"""The ``render`` command and stage: every shape of the dataset → multi-view PNGs + manifest."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from harness.experiment import ex

MAX_FAILURES_IN_INFO = 100  # run.info stays small on a badly broken dataset; the manifest has them all


class RenderStage(NamedTuple):
    """Where the renders of this config live, its id, and the batch summary (plain dict)."""

    render_dir: str
    config_id: str
    summary: dict


def render_jobs(prepared) -> list:
    """One ``RenderJob`` per shape of ``prepared.dataset`` (key = model path rel. to the dataset root)."""
    from renderers import RenderJob

    root = Path(getattr(prepared, "root", "."))
    jobs = []
    for shape in prepared.dataset.shapes:
        path = Path(shape.mesh_path)
        jobs.append(RenderJob(shape.key, shape.category, str(path if path.is_absolute() else root / path)))
    return jobs


def _sheet_views(n_views: int, n: int = 4) -> list[int]:
    return sorted({round(i * n_views / n) % n_views for i in range(n)}) if n_views else []


def render_stage(cfg: dict, run=None, prepared=None) -> RenderStage:
    """Render the dataset's shapes with ``cfg["render"]`` (resumable); with a Sacred ``run``, log
    ``render.views_per_s``, put the summary in ``run.info["render"]`` and attach a contact sheet."""
    from harness.config import validate_render
    from renderers import contact_sheet, read_manifest, render_batch

    render_cfg = dict(cfg["render"])
    validate_render(render_cfg)
    if prepared is None:
        from harness.data import prepare

        prepared = prepare(cfg["data"], cfg["seed"])
    jobs = render_jobs(prepared)
    summary = render_batch(jobs, render_cfg["out"], render_cfg, shard=render_cfg.get("shard", "0/1"),
                           scheduler=render_cfg.get("scheduler"), workers=render_cfg.get("workers"),
                           progress=True)
    info = summary.as_dict()
    if run is not None:
        run.log_scalar("render.views_per_s", float(summary.views_per_s))
        failures = dict(list(info["failures"].items())[:MAX_FAILURES_IN_INFO])
        run.info["render"] = {**info, "failures": failures}
        manifest = read_manifest(summary.render_dir)
        ok = [j.key for j in jobs if manifest.get(j.key, {}).get("status") == "ok"][:8]
        if ok:
            n_views = len(manifest[ok[0]]["views"])
            shard = str(render_cfg.get("shard", "0/1")).replace("/", "of")
            path = Path(summary.render_dir) / f"contact_sheet_{shard}.png"
            contact_sheet(summary.render_dir, ok, views=_sheet_views(n_views), size=128).save(path)
            run.add_artifact(str(path), name="render_contact_sheet.png")
    return RenderStage(summary.render_dir, summary.config_id, info)


@ex.command
def render(_config, _run):
    """Render every shape of the dataset into multi-view PNGs (resumable; failures are counted, not fatal)."""
    return render_stage(dict(_config), _run).summary
