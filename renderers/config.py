"""Render config identity: every knob that changes pixels hashes into a short id."""
from __future__ import annotations

import hashlib
import json

from .cameras import RIGS
from .gl import RENDERER_VERSION, Lighting

# Knobs that change pixels, with the defaults used when the config leaves them out. Keys that only
# change where/how fast rendering happens (out, shard, workers, scheduler) are not part of the id.
PIXEL_KNOBS = {"rig": "ring12", "size": 224, "background": [1.0, 1.0, 1.0], "msaa": 4,
               "rig_options": {}, "lighting": {}, "max_faces": None}


def pixel_config(cfg: dict) -> dict:
    """The canonical pixel-changing part of a render config (defaults filled in, types normalised)."""
    cfg = dict(cfg or {})
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
    out["renderer_version"] = RENDERER_VERSION
    return out


def render_config_id(cfg: dict) -> str:
    """Short readable id ``<rig>-<W>x<H>-<hash10>`` of every pixel-changing knob in ``cfg``."""
    canon = pixel_config(cfg)
    digest = hashlib.sha1(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:10]
    w, h = canon["size"]
    return f"{canon['rig']}-{w}x{h}-{digest}"
