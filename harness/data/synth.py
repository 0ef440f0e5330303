"""Pix3D-format synthetic datasets: procedural meshes, photos at random poses, masks, pix3d.json.

``python -m harness.data.synth --out DIR --preset tiny|small|pix3d --seed N``; ``--format modelnet40 |
shapenet | objaverse`` writes those layouts instead (``harness.data.synth_formats``).

Output is laid out exactly like Pix3D (``model/<cat>/<NAME>/model.obj`` + ``.mtl``, ``img/<cat>/NNNN.png``,
``mask/<cat>/NNNN.png``, ``pix3d.json``); the true attributes of every shape go to a sidecar
``attributes.json`` so captions and tests can use them while pix3d.json stays like the real one.
Generation runs in ``<out>.partial`` (one small entry file per finished shape, so a killed run resumes
where it stopped) and is renamed to ``<out>`` only when complete: a half-written dataset never has
a pix3d.json at ``<out>``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from registries import choose

from .pix3d import SYNTH_SOURCE
from .synth_meshes import ATTRIBUTES_FILE, BUILDERS, CATEGORIES, write_obj

GENERATOR_VERSION = "1"

# Pix3D's shapes per category (they sum to 395), used by the pix3d preset to copy its imbalance.
PIX3D_SHAPES = {"bed": 19, "bookcase": 17, "chair": 221, "desk": 17, "misc": 20, "sofa": 20,
                "table": 63, "tool": 11, "wardrobe": 7}


@dataclass(frozen=True)
class Preset:
    """Sizes of a synthetic dataset: shapes per category, photos per shape, variant folders, image sizes."""

    shapes: dict
    photos: tuple  # (min, max) photos per shape, inclusive
    variants: int  # folders holding a second mesh (model_2.obj)
    sizes: tuple  # (W, H) choices; one Renderer per size per process
    workers: int = 1


PRESETS = {
    "tiny": Preset({c: 3 for c in CATEGORIES}, (2, 2), 1, ((64, 64), (80, 64), (64, 80))),
    "small": Preset({c: 11 for c in CATEGORIES}, (4, 4), 2, ((128, 128), (160, 128), (128, 160))),
    "pix3d": Preset(PIX3D_SHAPES, (20, 31), 4, ((128, 128), (160, 128), (128, 160), (192, 144)), workers=2),
}


class SynthError(RuntimeError):
    """The synthetic generator cannot run (bad preset, output already holds a dataset, ...)."""


def plan(preset: str, seed: int) -> list[dict]:
    """Every shape to build, in order: category, folder, file, photo numbers; pure and deterministic."""
    p = PRESETS[choose("data.synth_preset", preset, PRESETS, SynthError)]
    rng = np.random.default_rng([seed, 7])
    tasks: list[dict] = []
    counters = {c: 0 for c in CATEGORIES}
    for cat in CATEGORIES:
        n = p.shapes[cat]
        # variants are spread over the largest categories; each takes one of the category's slots
        n_var = sum(1 for i in range(p.variants) if CATEGORIES[(2 + i * 4) % len(CATEGORIES)] == cat)
        n_var = min(n_var, n // 2)
        folders = [f"SYN_{cat}_{i:04d}" for i in range(n - n_var)]
        files = [(f, "model.obj") for f in folders] + [(folders[i], "model_2.obj") for i in range(n_var)]
        for folder, fname in files:
            k = int(rng.integers(p.photos[0], p.photos[1] + 1))
            numbers = list(range(counters[cat] + 1, counters[cat] + k + 1))
            counters[cat] += k
            tasks.append({"index": len(tasks), "category": cat, "folder": folder, "file": fname,
                          "key": f"model/{cat}/{folder}/{fname}", "photos": numbers})
    return tasks


_RENDERERS: dict = {}


def _renderer(size):
    # one GL context per image size per process: creating contexts is the expensive part
    if size not in _RENDERERS:
        from renderers import Renderer
        _RENDERERS[size] = Renderer(size=size, background=(0.0, 0.0, 0.0), msaa=4)
    return _RENDERERS[size]


def _rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# Pix3D camera frame is +X left, +Y up, +Z forward: a model seen from its front (+z) maps x -> -X, z -> -Z
_FRONT = np.diag([-1.0, 1.0, -1.0])


def sample_pose(rng, radius: float, size) -> dict:
    """A random Pix3D-style pose (rounded as written to pix3d.json) framing a sphere of ``radius``."""
    w, h = size
    az = rng.uniform(-np.pi, np.pi)
    elev = rng.uniform(np.radians(5), np.radians(35))
    roll = rng.normal(0, np.radians(4))
    focal = float(rng.uniform(28, 60))
    rot = _rot_z(roll) @ _rot_x(-elev) @ _FRONT @ _rot_y(az)
    tan_half = 16.0 / focal * min(1.0, h / w)  # the tighter of the two half-fields of view
    dist = radius / tan_half * rng.uniform(1.05, 1.45)
    off = rng.uniform(-0.12, 0.12, size=2) * dist * tan_half
    trans = np.array([off[0], off[1], dist])
    rot, trans = np.round(rot, 6), np.round(trans, 6)
    return {"rot_mat": rot.tolist(), "trans_mat": trans.tolist(), "focal_length": round(focal, 4),
            "inplane_rotation": round(float(roll), 6),
            "cam_position": np.round(-rot.T @ trans, 6).tolist()}


def _background(rng, w, h) -> np.ndarray:
    kind = int(rng.integers(3))
    c1, c2 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    if kind == 0:  # plain wall
        return np.broadcast_to(c1, (h, w, 3)).copy()
    if kind == 1:  # vertical gradient (wall to floor)
        t = np.linspace(0, 1, h)[:, None, None]
        return np.broadcast_to(c1 * (1 - t) + c2 * t, (h, w, 3)).copy()
    # clutter: a few random rectangles over noise
    bg = np.clip(c1 + rng.normal(0, 0.05, (h, w, 3)), 0, 1)
    for _ in range(4):
        x0, y0 = int(rng.integers(w)), int(rng.integers(h))
        bg[y0:y0 + int(rng.integers(4, h // 2)), x0:x0 + int(rng.integers(4, w // 2))] = rng.uniform(0, 1, 3)
    return bg


def mask_bbox(mask: np.ndarray) -> list[int]:
    """[x0, y0, x1, y1] (inclusive pixel coordinates) of the non-zero pixels of ``mask``."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def _build_shape(task: dict, seed: int):
    rng = np.random.default_rng([seed, task["index"], 1])
    return BUILDERS[task["category"]](rng)


def _make_shape(task: dict, seed: int, preset: str, work: Path) -> dict:
    """Write one shape's mesh, photos and masks under ``work``; return its pix3d.json entries + attributes."""
    shape = _build_shape(task, seed)
    obj = work / task["key"]
    obj.parent.mkdir(parents=True, exist_ok=True)
    write_obj(shape, obj)
    from renderers import load_mesh
    # parsed once per shape from the written files, so photos show exactly what pix3d.json points to
    mesh = load_mesh(str(obj), normalize=False)
    radius = float(np.linalg.norm(mesh.vertices, axis=1).max())
    rng = np.random.default_rng([seed, task["index"], 2])
    sizes = PRESETS[preset].sizes
    cat = task["category"]
    (work / "img" / cat).mkdir(parents=True, exist_ok=True)
    (work / "mask" / cat).mkdir(parents=True, exist_ok=True)
    entries = []
    for number in task["photos"]:
        size = tuple(sizes[int(rng.integers(len(sizes)))])
        r = _renderer(size)
        for _ in range(10):  # a pose that shows the object (offsets rarely push it out of frame)
            pose = sample_pose(rng, radius, size)
            ambient, key = float(rng.uniform(0.2, 0.45)), float(rng.uniform(0.35, 0.7))
            rgba = r.render(mesh, rig="pose", rot_mat=pose["rot_mat"], trans_mat=pose["trans_mat"],
                            focal_length=pose["focal_length"], img_size=size, rgba=True,
                            ambient=ambient, key_light=key)[0]
            mask = rgba[..., 3] >= 128
            if mask.sum() >= 16:
                break
        alpha = rgba[..., 3:4].astype(np.float64) / 255.0
        bg = _background(rng, *size)
        photo = np.clip(rgba[..., :3] / 255.0 + (1 - alpha) * bg, 0, 1)  # render is premultiplied on black
        name = f"{number:04d}.png"
        Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(work / "img" / cat / name)
        Image.fromarray(mask.astype(np.uint8) * 255).save(work / "mask" / cat / name)
        w, h = size
        bbox = mask_bbox(mask)
        entries.append({
            "img": f"img/{cat}/{name}", "category": cat, "img_size": [w, h], "2d_keypoints": [],
            "mask": f"mask/{cat}/{name}", "img_source": SYNTH_SOURCE, "model": task["key"],
            "model_raw": None, "model_source": SYNTH_SOURCE, "3d_keypoints": None, "voxel": None,
            "rot_mat": pose["rot_mat"], "trans_mat": pose["trans_mat"], "focal_length": pose["focal_length"],
            "cam_position": pose["cam_position"], "inplane_rotation": pose["inplane_rotation"],
            "truncated": bool(bbox[0] == 0 or bbox[1] == 0 or bbox[2] == w - 1 or bbox[3] == h - 1),
            "occluded": False, "slightly_occluded": False, "bbox": bbox,
        })
    used = {p.role for p in shape.parts}  # e.g. a desk without drawers has no handles to name
    record = {"category": cat, "attributes": shape.attributes,
              "colours": {r: c for r, c in shape.colours.items() if r in used},
              "material": shape.material, **shape.extra}
    return {"index": task["index"], "key": task["key"], "entries": entries, "attributes": record}


def _run_task(args):
    task, seed, preset, work = args
    done = Path(work) / ".progress" / f"{task['index']:05d}.json"
    if done.exists():  # resumed run: this shape was finished before the kill
        return json.loads(done.read_text())
    out = _make_shape(task, seed, preset, Path(work))
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, done)  # the marker appears only once every file of the shape is written
    return out


def generate(out, preset: str = "tiny", seed: int = 0, progress: bool = True, workers: int | None = None,
             overwrite: bool = False) -> Path:
    """Generate the synthetic dataset ``preset`` into ``out`` (atomic, resumable); return ``out``.

    workers: process pool size (None: the preset's default, 2 for pix3d; 1 renders in this process).
    overwrite: replace an existing dataset at ``out`` instead of failing.
    """
    out = Path(out).resolve()
    tasks = plan(preset, seed)
    if (out / "pix3d.json").exists():
        if not overwrite:
            raise SynthError(f"{out} already holds a dataset (pix3d.json); choose another --out or pass "
                             "overwrite=True / --overwrite")
        shutil.rmtree(out)
    if out.exists() and any(out.iterdir()):
        raise SynthError(f"{out} exists and is not empty; generate into a new or empty directory")
    work = out.with_name(out.name + ".partial")
    stamp = {"preset": preset, "seed": seed, "version": GENERATOR_VERSION}
    stamp_file = work / ".progress" / "stamp.json"
    if work.exists() and (not stamp_file.exists() or json.loads(stamp_file.read_text()) != stamp):
        shutil.rmtree(work)  # a leftover of another preset/seed: never mix the two
    (work / ".progress").mkdir(parents=True, exist_ok=True)
    stamp_file.write_text(json.dumps(stamp))
    workers = PRESETS[preset].workers if workers is None else workers
    workers = max(1, min(workers, os.cpu_count() or 1))
    args = [(t, seed, preset, str(work)) for t in tasks]
    bar = _progress(len(tasks), f"synth {preset}", progress)
    results = []
    if workers == 1:
        for a in args:
            results.append(_run_task(a))
            bar.update(1)
    else:
        import multiprocessing as mp
        # spawn: a forked child must not inherit a parent's GL context
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            for res in pool.map(_run_task, args, chunksize=4):
                results.append(res)
                bar.update(1)
    bar.close()
    results.sort(key=lambda r: r["index"])
    entries = [e for r in results for e in r["entries"]]
    attrs = {"generator": "clip3d-bench synth", "version": GENERATOR_VERSION, "preset": preset, "seed": seed,
             "shapes": {r["key"]: r["attributes"] for r in results}}
    (work / ATTRIBUTES_FILE).write_text(json.dumps(attrs, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(work / ".progress")
    # pix3d.json is written last, then the whole tree is renamed into place in one step
    (work / "pix3d.json").write_text(json.dumps(entries, indent=1) + "\n")
    if out.exists():
        out.rmdir()
    os.replace(work, out)
    return out


def _progress(total, desc, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="shape", disable=not enabled, file=sys.stderr)


def main(argv=None) -> int:
    """CLI: ``python -m harness.data.synth --out DIR [--format F] --preset P --seed N``."""
    ap = argparse.ArgumentParser(prog="python -m harness.data.synth", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="dataset root to create")
    ap.add_argument("--format", default="pix3d",
                    help="layout: pix3d (default) | modelnet40 | shapenet | objaverse (docs/data.md)")
    ap.add_argument("--preset", default="tiny",
                    help=f"pix3d: {' | '.join(sorted(PRESETS))}; the other formats: tiny | small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="process pool size (default: preset's)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    from .formats import FORMATS, DatasetError
    # run as __main__, this module's SynthError is not the one harness.data.synth_formats raises
    errors = (SynthError, DatasetError, importlib.import_module("harness.data.synth").SynthError)
    try:
        if a.format == "pix3d":
            root = generate(a.out, a.preset, a.seed, progress=not a.quiet, workers=a.workers,
                            overwrite=a.overwrite)
        else:
            fmt = FORMATS.lookup(a.format)
            root = fmt.generate(a.out, a.preset, a.seed, progress=not a.quiet, overwrite=a.overwrite)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.format == "pix3d":
        n = len(json.loads((root / "pix3d.json").read_text()))
        print(f"wrote {a.preset} dataset to {root}: {len(plan(a.preset, a.seed))} shapes, {n} photos")
    else:
        print(f"wrote {a.preset} {a.format} dataset to {root} (synthetic stand-in; docs/data.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
