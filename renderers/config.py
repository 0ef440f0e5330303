"""Render config identity: every knob that changes pixels hashes into a short id."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from registries import as_dict

from .cameras import RIGS
from .gl import RENDERER_VERSION, Lighting


@dataclass(frozen=True)
class RenderConfig:
    """The ``render`` config section as the render stage reads it (every default: the harness's
    config scope, which builds it with ``registries.section``). ``render_batch`` and
    :func:`pixel_config` also take a plain mapping of some pixel knobs (the rest defaulted below)."""

    out: str
    rig: str
    size: int | None
    background: tuple
    msaa: int
    shard: str
    workers: int | None
    scheduler: str | None
    max_faces: int | None


def knobs(cfg: RenderConfig | Mapping | None) -> dict:
    """The render config as a plain dict (a RenderConfig or a mapping of some knobs)."""
    return as_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg or {})


# Knobs that change pixels, with the defaults used when the config leaves them out. Keys that only
# change where/how fast rendering happens (out, shard, workers, scheduler) are not part of the id.
PIXEL_KNOBS = {"rig": "ring12", "size": 224, "background": [1.0, 1.0, 1.0], "msaa": 4,
               "rig_options": {}, "lighting": {}, "max_faces": None}


def pixel_config(cfg: RenderConfig | Mapping) -> dict:
    """The canonical pixel-changing part of a render config (defaults filled in, types normalised)."""
    cfg = knobs(cfg)
    out = {k: cfg.get(k, v) if cfg.get(k) is not None else v for k, v in PIXEL_KNOBS.items()}
    RIGS.lookup(out["rig"])
    size = out["size"]
    out["size"] = [int(size), int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]
    out["background"] = [round(float(c), 6) for c in out["background"]][:3]
    out["msaa"] = int(out["msaa"])
    lighting = {**Lighting().__dict__, **(out["lighting"] or {})}
    out["lighting"] = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(lighting.items())}
    out["rig_options"] = dict(sorted((out["rig_options"] or {}).items()))
    out.pop("max_faces")  # decides failures, not pixels of rendered shapes
    if cfg.get("rotation"):  # "<kind>:<seed>" of rotated test renders; absent otherwise (ids unchanged)
        out["rotation"] = str(cfg["rotation"])
    out["renderer_version"] = RENDERER_VERSION
    return out


def render_config_id(cfg: RenderConfig | Mapping) -> str:
    """Short readable id ``<rig>-<W>x<H>-<hash10>`` of every pixel-changing knob in ``cfg``."""
    canon = pixel_config(cfg)
    digest = hashlib.sha1(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:10]
    w, h = canon["size"]
    return f"{canon['rig']}-{w}x{h}-{digest}"
