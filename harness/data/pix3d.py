"""Pix3D reader: pix3d.json → Shape records (one per model path) and Photo records (one per photo).

Every entry is validated; a bad entry raises one :class:`Pix3DError` naming the entry index, the field
and the value (``strict=True``), or is skipped and counted in ``Dataset.report`` (``strict=False``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .records import PIX3D_CATEGORIES as CATEGORIES
from .records import Dataset, LoadReport, Shape

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tiff", ".tif")
# Masks known to be wrong in the released Pix3D; photos keep loading but carry ``bad_mask=True``.
KNOWN_BAD_MASKS = frozenset({"img/table/1749.jpg", "img/table/0045.png"})
FINGERPRINT_CACHE = ".clip3d_fingerprint.json"
SYNTH_SOURCE = "clip3d-synth"  # img_source of generated photos: the real dataset's bad masks don't apply


class Pix3DError(ValueError):
    """pix3d.json (or a file it names) is unusable; the message names the entry, field and value."""

    def __init__(self, message, index=None, field=None, value=None):
        super().__init__(message)
        self.index, self.field, self.value = index, field, value


@dataclass
class Photo:
    """One photo of a shape with its Pix3D pose; ``model`` is the shape key."""

    img: str
    mask: str | None
    category: str
    model: str
    bbox: tuple
    img_size: tuple
    rot_mat: tuple
    trans_mat: tuple
    focal_length: float
    truncated: bool
    occluded: bool
    slightly_occluded: bool
    bad_mask: bool
    index: int  # entry index in pix3d.json
    img_source: str | None = None
    model_source: str | None = None


def _fail(index, fld, value, problem, fix=""):
    v = repr(value)
    v = v if len(v) <= 80 else v[:77] + "..."
    msg = f"pix3d.json entry {index}: field '{fld}' = {v}: {problem}"
    raise Pix3DError(msg + (f" ({fix})" if fix else ""), index, fld, value)


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _bool(i, e, fld):
    v = e.get(fld, False)
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):  # Pix3D writes some flags as strings
        return v.lower() == "true"
    _fail(i, fld, v, "expected a boolean or the string \"true\"/\"false\"")


def _str(i, e, fld, required=True):
    v = e.get(fld)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v:
        if fld not in e:
            _fail(i, fld, None, "missing", "every entry needs 'img', 'category' and 'model'")
        _fail(i, fld, v, "expected a non-empty path string")
    return v


def _matrix(i, e, fld, shape):
    v = e.get(fld)
    rows = v if shape[0] > 1 else [v]
    ok = isinstance(v, list) and len(rows) == shape[0] and all(
        isinstance(r, list) and len(r) == shape[1] and all(_is_num(x) for x in r) for r in rows)
    if not ok:
        _fail(i, fld, v, f"expected {'x'.join(map(str, shape)) if shape[0] > 1 else shape[1]} numbers")
    return tuple(tuple(float(x) for x in r) for r in v) if shape[0] > 1 else tuple(float(x) for x in v)


def _parse_entry(i: int, e, root: Path) -> Photo:
    """Validate one pix3d.json entry and return its Photo (raises Pix3DError)."""
    if not isinstance(e, dict):
        _fail(i, "<entry>", e, "expected a JSON object")
    img = _str(i, e, "img")
    model = _str(i, e, "model")
    cat = e.get("category")
    if "category" not in e:
        _fail(i, "category", None, "missing", "every entry needs 'img', 'category' and 'model'")
    if cat not in CATEGORIES:
        _fail(i, "category", cat, "unknown category", f"expected one of {', '.join(CATEGORIES)}")
    mask = _str(i, e, "mask", required=False)
    if Path(img).suffix.lower() not in PHOTO_EXTENSIONS:
        _fail(i, "img", img, "not a photo file", f"expected one of {', '.join(PHOTO_EXTENSIONS)}")
    if e.get("model_raw") is not None and not isinstance(e["model_raw"], str):
        _fail(i, "model_raw", e["model_raw"], "expected a path string or null")
    size = e.get("img_size")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_num(x) and x > 0 for x in size)):
        _fail(i, "img_size", size, "expected [W, H], two positive numbers")
    w, h = int(size[0]), int(size[1])
    bbox = e.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_num(x) for x in bbox)):
        _fail(i, "bbox", bbox, "expected [x0, y0, x1, y1], four numbers")
    x0, y0, x1, y1 = bbox
    if not (0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h):
        _fail(i, "bbox", bbox, f"outside the image of size {w}x{h} (or x1 < x0 / y1 < y0)")
    rot = _matrix(i, e, "rot_mat", (3, 3))
    trans = _matrix(i, e, "trans_mat", (1, 3))
    f = e.get("focal_length")
    if not (_is_num(f) and f > 0):
        _fail(i, "focal_length", f, "expected a positive number (mm, 32 mm sensor width)")
    flags = {k: _bool(i, e, k) for k in ("truncated", "occluded", "slightly_occluded")}
    for fld, rel in (("model", model), ("img", img), ("mask", mask)):
        if rel is not None and not (root / rel).is_file():
            _fail(i, fld, rel, f"file not found under {root}", "check the dataset root and the download")
    return Photo(img=img, mask=mask, category=cat, model=model, bbox=(x0, y0, x1, y1), img_size=(w, h),
                 rot_mat=rot, trans_mat=trans, focal_length=float(f),
                 bad_mask=img in KNOWN_BAD_MASKS and e.get("img_source") != SYNTH_SOURCE,
                 index=i, img_source=e.get("img_source"), model_source=e.get("model_source"), **flags)


def read_entries(root) -> list:
    """The raw top-level list of ``<root>/pix3d.json`` (raises Pix3DError for invalid JSON / not a list)."""
    path = Path(root) / "pix3d.json"
    if not path.is_file():
        raise Pix3DError(f"{path} not found: the dataset root must hold pix3d.json (set data.root, or set "
                         "data.synth_preset to generate a synthetic dataset there)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise Pix3DError(f"{path} is not valid JSON: {err.msg} at line {err.lineno} "
                         f"column {err.colno}") from err
    if not isinstance(data, list):
        raise Pix3DError(f"{path}: top level is a {type(data).__name__}, expected a list of photo entries")
    return data


def fingerprint(root, model_keys) -> tuple[str, dict[str, str]]:
    """Content hash of pix3d.json and every mesh (+ its .mtl) named in ``model_keys`` (16 hex digits),
    and each mesh's own content hash (its bytes, materials and textures: what a cached render of it
    is checked against; see ``renderers.mesh_content_hash``).

    File hashes are cached in ``<root>/.clip3d_fingerprint.json`` keyed by size and mtime (best effort),
    so a warm load only stats the files.
    """
    from renderers.content import file_sha256, load_cache, mesh_content_hash, save_cache

    root = Path(root)
    cache = load_cache(root / FINGERPRINT_CACHE)
    h = hashlib.sha256()
    h.update(file_sha256(root / "pix3d.json", cache).encode())
    shape_hashes = {}
    for key in sorted(set(model_keys)):
        h.update(key.encode() + b"\0" + file_sha256(root / key, cache).encode())
        mtl = (root / key).with_suffix(".mtl")
        if mtl.is_file():
            h.update(file_sha256(mtl, cache).encode())
        shape_hashes[key] = mesh_content_hash(root / key, cache)
    save_cache(root / FINGERPRINT_CACHE, cache)
    return h.hexdigest()[:16], shape_hashes


def load_pix3d(root, strict: bool = True, exclude_truncated: bool = False,
               exclude_occluded: bool = False) -> Dataset:
    """Load a Pix3D-format dataset.

    strict: raise Pix3DError on the first bad entry (False: skip it and count it in ``report.skipped``).
    exclude_truncated / exclude_occluded: drop those photos (counted in the report); shapes left with
    no photo are kept (a shape is a mesh, photos are optional).
    """
    root = Path(root).resolve()
    raw = read_entries(root)
    report = LoadReport(entries=len(raw))
    photos: list[Photo] = []
    seen: set[str] = set()
    all_models: set[str] = set()
    for i, e in enumerate(raw):
        try:
            p = _parse_entry(i, e, root)
            if p.img in seen:
                _fail(i, "img", p.img, "duplicate photo path (already in an earlier entry)")
        except Pix3DError as err:
            if strict:
                raise
            report.skipped.append({"index": err.index, "field": err.field, "value": repr(err.value)[:80],
                                   "reason": str(err)})
            continue
        seen.add(p.img)
        all_models.add(p.model)
        if exclude_truncated and p.truncated:
            report.excluded_truncated += 1
            continue
        if exclude_occluded and p.occluded:
            report.excluded_occluded += 1
            continue
        if p.bad_mask:
            report.bad_masks.append(p.img)
        photos.append(p)
    report.loaded = len(photos)
    shapes: dict[str, Shape] = {}
    for key in sorted(all_models):
        rel = Path(key)
        cat = rel.parts[1] if len(rel.parts) >= 3 and rel.parts[0] == "model" else None
        shapes[key] = Shape(key=key, category=cat, name=rel.parent.name, variant=rel.stem,
                            mesh_path=root / key)
    for p in photos:
        s = shapes[p.model]
        s.category = s.category if s.category in CATEGORIES else p.category
        s.source = s.source or p.model_source
        s.photos.append(p)
    ordered = sorted(shapes.values(), key=lambda s: (CATEGORIES.index(s.category), s.key))
    dataset_hash, shape_hashes = fingerprint(root, all_models)
    for s in ordered:
        s.content_hash = shape_hashes[s.key]
    return Dataset(root=root, shapes=ordered, photos=photos, fingerprint=dataset_hash, report=report)

