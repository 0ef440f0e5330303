"""Synthetic stand-ins of the ModelNet40, ShapeNetCore (+ Text2Shape) and Objaverse (+ LVIS, Cap3D)
layouts, written exactly as the real downloads are, quirks included, from the procedural meshes of
:mod:`harness.data.synth_meshes`.

``python -m harness.data.synth --format modelnet40|shapenet|objaverse --preset tiny|small --out DIR``.
Like the Pix3D generator: deterministic from the seed, written in ``<out>.partial`` and renamed into
place only when complete; an existing dataset at ``<out>`` is an error unless ``overwrite``.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from registries import choose

from .captions import synthetic_captions
from .palette import PALETTE
from .synth import SynthError
from .synth_meshes import BUILDERS, ProceduralShape, _fmt, write_obj

# ModelNet class -> builder of synth_meshes; the first five are the tiny preset's
MODELNET_CLASSES = {"bed": "bed", "bookshelf": "bookcase", "chair": "chair", "night_stand": "desk",
                    "table": "table", "desk": "desk", "sofa": "sofa", "wardrobe": "wardrobe"}
# ShapeNet synset -> (taxonomy name or None: left out of taxonomy.json, a real quirk; builder)
SHAPENET_SYNSETS = {"03001627": ("chair", "chair"), "04379243": ("table", "table"),
                    "02871439": ("bookshelf", "bookcase"), "02933112": (None, "wardrobe"),
                    "04256520": ("sofa,couch,lounge", "sofa"), "02818832": ("bed", "bed")}
EXTRA_TAXONOMY = {"02691156": "airplane,aeroplane,plane"}  # listed, with no folder: as in the real file
T2S_CATEGORY = {"03001627": "Chair", "04379243": "Table"}  # Text2Shape covers chairs and tables
# preset -> ModelNet (classes, train, test per class), ShapeNet (synsets, models each), Objaverse (objects)
PRESETS = {
    "tiny": {"modelnet40": (5, 4, 2), "shapenet": (4, 6), "objaverse": 24},
    "small": {"modelnet40": (8, 10, 4), "shapenet": (6, 10), "objaverse": 90},
}
OBJAVERSE_PER_FOLDER = 30


def _rng(seed: int, *parts) -> np.random.Generator:
    return np.random.default_rng([seed, *parts])


def _build(builder: str, rng) -> ProceduralShape:
    return BUILDERS[builder](rng)


# -- ModelNet40 -----------------------------------------------------------------------------------

def write_off(shape: ProceduralShape, path: Path, merged: bool, scale: float, offset) -> None:
    """The shape as a Z-up OFF file at ModelNet's arbitrary scale and offset; ``merged`` writes the
    broken header of some real files (``OFF8 12 0`` on one line)."""
    mesh = shape.mesh()
    v = np.asarray(mesh.vertices, dtype=np.float64)
    v = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1) * scale + offset  # +90 deg about x: y-up -> z-up
    head = f"OFF{len(v)} {len(mesh.faces)} 0" if merged else f"OFF\n{len(v)} {len(mesh.faces)} 0"
    lines = [head] + [f"{_fmt(a)} {_fmt(b)} {_fmt(c)}" for a, b, c in v]
    lines += [f"3 {a} {b} {c}" for a, b, c in np.asarray(mesh.faces)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def write_modelnet(work: Path, preset: str, seed: int) -> int:
    n_classes, n_train, n_test = PRESETS[preset]["modelnet40"]
    count = 0
    for ci, (cls, builder) in enumerate(list(MODELNET_CLASSES.items())[:n_classes]):
        for i in range(n_train + n_test):
            split = "train" if i < n_train else "test"
            rng = _rng(seed, 1, ci, i)
            shape = _build(builder, rng)
            scale, offset = float(rng.uniform(10, 40)), rng.uniform(-5, 5, 3)
            write_off(shape, work / cls / split / f"{cls}_{i + 1:04d}.off", merged=count % 4 == 1,
                      scale=scale, offset=offset)
            count += 1
    return count


# -- ShapeNetCore + Text2Shape ---------------------------------------------------------------------

def _write_textured(shape: ProceduralShape, models: Path, rng) -> None:
    """OBJ with UVs (planar, x-y) and an MTL whose map_Kd is ../images/texture0.png, as ShapeNet's are."""
    mesh = shape.mesh()
    v = np.asarray(mesh.vertices)
    uv = (v[:, :2] - v[:, :2].min(axis=0)) / np.maximum(np.ptp(v[:, :2], axis=0), 1e-9)
    lines = ["mtllib model_normalized.mtl", "usemtl textured"]
    lines += [f"v {_fmt(a)} {_fmt(b)} {_fmt(c)}" for a, b, c in v]
    lines += [f"vt {_fmt(a)} {_fmt(b)}" for a, b in uv]
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in np.asarray(mesh.faces)]
    (models / "model_normalized.obj").write_text("\n".join(lines) + "\n", encoding="ascii")
    (models / "model_normalized.mtl").write_text(
        "newmtl textured\nKa 0 0 0\nKd 1 1 1\nmap_Kd ../images/texture0.png\n", encoding="ascii")
    images = models.parent / "images"
    images.mkdir()
    colours = [np.array(PALETTE[c]) * 255 for c in shape.colours.values()]
    stripes = np.repeat(np.stack(colours[:2] * 4)[:, None, :], 4, axis=0)  # 32 rows of part colours
    Image.fromarray(np.broadcast_to(stripes, (len(stripes), 32, 3)).astype(np.uint8)).save(
        images / "texture0.png")


def _normalize(shape: ProceduralShape) -> ProceduralShape:
    """ShapeNet v2's normalisation: bounding-box diagonal 1, centred (model_normalized)."""
    verts = np.concatenate([p.mesh.vertices for p in shape.parts])
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    for p in shape.parts:
        p.mesh.apply_translation(-(lo + hi) / 2)
        p.mesh.apply_scale(1.0 / np.linalg.norm(hi - lo))
    return shape


def write_shapenet(work: Path, preset: str, seed: int) -> int:
    n_synsets, per = PRESETS[preset]["shapenet"]
    synsets = list(SHAPENET_SYNSETS.items())[:n_synsets]
    taxonomy = [{"synsetId": s, "name": name, "children": [], "numInstances": per}
                for s, (name, _) in synsets if name is not None]
    taxonomy += [{"synsetId": s, "name": n, "children": [], "numInstances": 0}
                 for s, n in EXTRA_TAXONOMY.items()]
    (work / "taxonomy.json").write_text(json.dumps(taxonomy, indent=1) + "\n")
    rows, count = [], 0
    for si, (synset, (_, builder)) in enumerate(synsets):
        for i in range(per):
            rng = _rng(seed, 2, si, i)
            model_id = rng.bytes(16).hex()
            shape = _normalize(_build(builder, rng))
            models = work / synset / model_id / "models"
            models.mkdir(parents=True)
            if i % 3 == 2:
                _write_textured(shape, models, rng)
            else:
                write_obj(shape, models / "model_normalized.obj")
            v = np.concatenate([p.mesh.vertices for p in shape.parts])
            (models / "model_normalized.json").write_text(json.dumps(
                {"id": model_id, "min": v.min(0).round(5).tolist(), "max": v.max(0).round(5).tolist(),
                 "centroid": v.mean(0).round(5).tolist(), "numVertices": len(v)}))
            count += 1
            if synset in T2S_CATEGORY:
                caps = synthetic_captions(shape.category, shape.attributes, shape.colours, shape.material)
                rows += [(model_id, c, T2S_CATEGORY[synset], synset) for c in caps[:3]]
        (work / synset / rng.bytes(16).hex()).mkdir()  # a model folder whose files are missing
    ghost = _rng(seed, 3).bytes(16).hex()  # captions of a model that is not on disk
    rows += [(ghost, "a wooden chair with a curved back", "Chair", "03001627"),
             (ghost, "a chair, brown and sturdy", "Chair", "03001627")]
    rows.insert(1, (rows[0][0], "", rows[0][2], rows[0][3]))  # an empty description
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "modelId", "description", "category", "topLevelSynsetId", "subSynsetId"])
    w.writerows((n + 1, m, d, c, s, s) for n, (m, d, c, s) in enumerate(rows))
    (work / "captions.tablechair.csv").write_text(buf.getvalue(), encoding="utf-8")
    return count


# -- Objaverse + LVIS + Cap3D ----------------------------------------------------------------------

def write_glb(shape: ProceduralShape, path: Path, materials: bool = True) -> None:
    """The shape as a binary glTF 2.0 (one primitive per part; ``materials=False``: none at all)."""
    blob, views, accessors, prims, mats = bytearray(), [], [], [], {}
    for p in shape.parts:
        v = np.asarray(p.mesh.vertices, dtype="<f4")
        f = np.asarray(p.mesh.faces, dtype="<u4").ravel()
        ids = []
        for data, target, comp, kind in ((v, 34962, 5126, "VEC3"), (f, 34963, 5125, "SCALAR")):
            blob += b"\0" * (-len(blob) % 4)
            views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": data.nbytes, "target": target})
            blob += data.tobytes()
            acc = {"bufferView": len(views) - 1, "componentType": comp, "count": len(data), "type": kind}
            if kind == "VEC3":
                acc.update(min=v.min(axis=0).tolist(), max=v.max(axis=0).tolist())
            accessors.append(acc)
            ids.append(len(accessors) - 1)
        prim = {"attributes": {"POSITION": ids[0]}, "indices": ids[1], "mode": 4}
        if materials:
            colour = shape.colours[p.role]
            mats.setdefault(colour, len(mats))
            prim["material"] = mats[colour]
        prims.append(prim)
    doc = {"asset": {"version": "2.0", "generator": "clip3d-bench synth"}, "scene": 0,
           "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}], "meshes": [{"primitives": prims}],
           "accessors": accessors, "bufferViews": views, "buffers": [{"byteLength": len(blob)}]}
    if mats:
        doc["materials"] = [{"name": c, "pbrMetallicRoughness": {
            "baseColorFactor": [*PALETTE[c], 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.8}}
            for c in mats]
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    out = struct.pack("<4sII", b"glTF", 2, 28 + len(js) + len(blob))
    out += struct.pack("<I4s", len(js), b"JSON") + js + struct.pack("<I4s", len(blob), b"BIN\0") + bytes(blob)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out)


def _lvis_name(shape: ProceduralShape) -> str:
    return shape.attributes.get("kind", shape.category)  # misc / tool: lamp, vase, hammer, ...


def write_objaverse(work: Path, preset: str, seed: int) -> int:
    n = PRESETS[preset]["objaverse"]
    lvis: dict[str, list] = {}
    cap3d = []
    builders = sorted(BUILDERS)
    for i in range(n):
        rng = _rng(seed, 4, i)
        uid = rng.bytes(16).hex()
        shape = _build(builders[i % len(builders)], rng)
        write_glb(shape, work / "glbs" / f"000-{i // OBJAVERSE_PER_FOLDER:03d}" / f"{uid}.glb",
                  materials=i != 1)  # one GLB without any material
        if i == 2:
            continue  # a GLB with neither a category nor a caption
        if i % 3 != 0:
            lvis.setdefault(_lvis_name(shape), []).append(uid)
        if i % 6 != 5:
            caps = synthetic_captions(shape.category, shape.attributes, shape.colours, shape.material)
            cap3d.append((uid, caps[i % len(caps)]))
    ghosts = [_rng(seed, 5, j).bytes(16).hex() for j in range(3)]  # listed, never downloaded
    cap3d += [(g, "a 3D model of a lamp") for g in ghosts]
    lvis.setdefault("lamp", []).extend(ghosts[:2])
    text = json.dumps(lvis, indent=1, sort_keys=True)
    if preset == "tiny":
        (work / "lvis-annotations.json").write_text(text)
    else:  # the real file is gzipped
        (work / "lvis-annotations.json.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(cap3d)  # no header, as Cap3D's
    (work / "Cap3D_automated_Objaverse.csv").write_text(buf.getvalue(), encoding="utf-8")
    return n


WRITERS = {"modelnet40": write_modelnet, "shapenet": write_shapenet, "objaverse": write_objaverse}


def generate_layout(fmt: str, out, preset: str = "tiny", seed: int = 0, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Write the synthetic ``fmt`` dataset ``preset`` into ``out`` (atomic); return ``out``.

    progress: accepted for the generators' common signature (these presets take seconds).
    """
    writer = WRITERS[choose("--format", fmt, WRITERS, SynthError)]
    choose("data.synth_preset", preset, PRESETS, SynthError)
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SynthError(f"{out} exists and is not empty; choose another --out or pass overwrite=True / "
                             "--overwrite")
        shutil.rmtree(out)
    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)  # these presets take seconds: start over rather than resume
    work.mkdir(parents=True)
    writer(work, preset, int(seed))
    (work / "synth.json").write_text(json.dumps({"generator": "clip3d-bench synth", "format": fmt,
                                                 "preset": preset, "seed": int(seed)}) + "\n")
    if out.exists():
        out.rmdir()
    os.replace(work, out)
    return out
