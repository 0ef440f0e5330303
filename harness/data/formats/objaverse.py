"""Objaverse 1.0 (+ LVIS categories, Cap3D captions): ``<root>/glbs/<000-XXX>/<uid>.glb``, Y-up.

Built for 800k objects: loading lists the glbs folders (names only: no stat, no mesh opened) and reads
the two index files. The fingerprint covers every ``folder/uid`` on disk and the index files' bytes,
not the meshes' (a uid names one immutable object; a copied dataset keeps its split); shapes have no
``content_hash`` (hashing 800k GLBs at load time is too costly: the render stage hashes what it
renders, and reuses renders only on a content match). Uids in an index file without a GLB on disk
are counted, never fatal; a GLB with neither a category nor a caption is left out (counted): there is
nothing to train or evaluate it on.
"""
from __future__ import annotations

import csv
import gc
import gzip
import hashlib
import json
import os
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

from ..pix3d import FINGERPRINT_CACHE
from ..records import NO_PHOTOS, QUIRK_EXAMPLES, Dataset, LoadReport, Shape
from .base import (
    DatasetError,
    Format,
    fingerprint_of,
    register,
    resolve_up_axis,
    sorted_dirs,
    synthetic_layout,
)

FORMAT = "objaverse"
GLBS = "glbs"
LVIS_FILES = ("lvis-annotations.json", "lvis-annotations.json.gz")
CAP3D_GLOB = "Cap3D*.csv"
UNCATEGORIZED = "uncategorized"  # a GLB with a caption but no LVIS category


def detect(root: Path) -> bool:
    """An Objaverse root has glbs/<folder>/ holding .glb files (the first folder decides)."""
    for d in sorted_dirs(Path(root) / GLBS):
        with os.scandir(d.path) as it:
            return any(e.name.endswith(".glb") for e in it)
    return False


def _list_glbs(root: Path, report: LoadReport):
    """([(folder, sorted uids)], {uid: folder}, sha256 over every ``folder/uid``): names only, no stat
    (a stat per file doubles the listing time of a million files)."""
    h = hashlib.sha256()
    listing, folder_of = [], {}
    for d in sorted_dirs(root / GLBS):
        folder = d.name
        uids = sorted(name[:-4] for name in os.listdir(d.path) if name.endswith(".glb"))
        h.update(f"{folder}\0{chr(10).join(uids)}\0".encode())
        before = len(folder_of)
        folder_of.update(dict.fromkeys(uids, folder))
        if len(folder_of) - before != len(uids):  # a uid already listed in an earlier folder
            seen = set()
            for uid in uids:
                if folder_of[uid] != folder or uid in seen:
                    report.quirk("uid in several glbs folders", f"{folder}/{uid}.glb")
                seen.add(uid)
            uids = [u for u in uids if folder_of[u] == folder]
        listing.append((folder, uids))
    return listing, folder_of, h.hexdigest()


def _lvis_file(root: Path) -> Path | None:
    return next((root / n for n in LVIS_FILES if (root / n).is_file()), None)


def read_lvis(path: Path, report: LoadReport) -> dict[str, str]:
    """{uid: category} from lvis-annotations.json[.gz] ({category: [uid, ...]}); a uid in several
    categories keeps the first (sorted) and is counted. Every uid listed, on disk or not: ``_load``
    matches them against the listing."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, OSError, EOFError) as err:
        raise DatasetError(f"{path}: not readable JSON ({err})", path=str(path)) from err
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level is a {type(data).__name__}, expected {{category: [uid, ...]}}",
                           path=str(path))
    out: dict[str, str] = {}
    listed = 0
    for category in sorted(data, reverse=True):  # C-speed updates; the first category (sorted) is last
        uids = data[category]
        if not isinstance(uids, list) or not all(isinstance(u, str) for u in uids):
            raise DatasetError(f"{path}: category {category!r} = {str(uids)[:60]}: expected a list of uid "
                               "strings", path=str(path), field=category)
        out.update(dict.fromkeys(uids, category))
        listed += len(uids)
    if listed > len(out):  # (rare) name the uids listed twice
        seen: set = set()
        for category in sorted(data):
            for uid in data[category]:
                if uid in seen:
                    report.quirk("uid in several LVIS categories", uid)
                seen.add(uid)
    return out


def read_cap3d(path: Path) -> dict[str, str]:
    """{uid: caption} of a Cap3D CSV (``uid,caption`` rows, no header; a uid listed twice keeps its last
    caption). Every uid listed, on disk or not: ``_load`` matches them against the listing."""
    with open(path, newline="", encoding="utf-8") as fh:
        try:
            pairs = dict(csv.reader(fh))  # C speed for a million rows; any row not of 2 fields fails
        except ValueError:
            pairs = None
    if pairs is None:
        _bad_cap3d_row(path)
    pairs.pop("uid", None)  # tolerate a header someone added
    return pairs


def _not_on_disk(report: LoadReport, quirk: str, index: dict, matched: int, on_disk: dict) -> None:
    """Count the uids of an index file (``index``, ``matched`` of them on disk) that have no GLB."""
    missing = len(index) - matched
    if missing:
        report.quirk(quirk, count=missing)
        report.examples[quirk] += list(islice((u for u in index if u not in on_disk), QUIRK_EXAMPLES))


def _bad_cap3d_row(path: Path):
    """Raise the error naming the first row of the Cap3D CSV ``path`` that is not ``uid,caption``."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        for row in reader:
            if len(row) != 2:
                raise DatasetError(f"{path} line {reader.line_num}: {len(row)} fields, expected 2 "
                                   "(uid,caption; quote captions holding commas)", path=str(path),
                                   line=reader.line_num, value=row[:3])
    raise DatasetError(f"{path}: not a CSV of uid,caption rows", path=str(path))


def _cap3d_file(root: Path, captions_file) -> Path | None:
    if captions_file and Path(captions_file).suffix.lower() == ".csv":
        if not Path(captions_file).is_file():
            raise DatasetError(f"data.captions_file={str(captions_file)!r}: file not found (a Cap3D CSV of "
                               "uid,caption rows)", path=str(captions_file), field="data.captions_file")
        return Path(captions_file)
    found = sorted(root.glob(CAP3D_GLOB))
    if len(found) > 1:
        raise DatasetError(f"{root} holds several Cap3D files ({', '.join(p.name for p in found)}); set "
                           "data.captions_file to the one to use", path=str(root), field="data.captions_file")
    return found[0] if found else None


@contextmanager
def _no_gc():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_objaverse(root, up_axis: str = "y", captions_file=None) -> Dataset:
    """Load an Objaverse 1.0 root: the GLBs on disk that have an LVIS category or a Cap3D caption.

    captions_file: a Cap3D CSV used instead of the root's ``Cap3D*.csv``.
    """
    with _no_gc():  # millions of small objects and no cycles: collection passes only cost time
        return _load(Path(root).resolve(), up_axis, captions_file)


def _load(root: Path, up_axis: str, captions_file) -> Dataset:
    report = LoadReport()
    listing, folder_of, listing_digest = _list_glbs(root, report)
    report.entries = len(folder_of)
    if not folder_of:
        raise DatasetError(f"{root}: no glbs/<folder>/<uid>.glb found (an Objaverse 1.0 root holds "
                           "glbs/000-000/, glbs/000-001/, ...)", path=str(root))
    lvis, cap3d = _lvis_file(root), _cap3d_file(root, captions_file)
    if lvis is None and cap3d is None:
        raise DatasetError(f"{root}: neither {' nor '.join(LVIS_FILES)} nor a Cap3D CSV ({CAP3D_GLOB}, or "
                           "data.captions_file): every object would lack a category and a caption",
                           path=str(root))
    categories = read_lvis(lvis, report) if lvis else {}
    captions = read_cap3d(cap3d) if cap3d else {}
    shapes, native, unlabelled, with_category, with_caption = [], {}, 0, 0, 0
    category_of, caption_of, add = categories.get, captions.get, shapes.append  # (a million lookups)
    for folder, uids in listing:
        prefix = f"{GLBS}/{folder}/"
        for uid in uids:
            category, caption = category_of(uid), caption_of(uid)
            if category is not None:
                with_category += 1
            if caption is not None:
                with_caption += 1
                if not caption or caption.isspace():
                    report.quirk("empty Cap3D caption", uid)
                    caption = None
            if caption is None and category is None:
                unlabelled += 1
                continue
            key = prefix + uid + ".glb"
            if caption is not None:
                native[key] = (caption,)
            # mesh_path is the key (relative to the root): a million Path objects cost seconds
            add(Shape(key, category or UNCATEGORIZED, uid, uid, key, None, None, NO_PHOTOS, up_axis))
    _not_on_disk(report, "category uid without a GLB on disk", categories, with_category, folder_of)
    _not_on_disk(report, "caption uid without a GLB on disk", captions, with_caption, folder_of)
    folder_of = categories = captions = None  # noqa: F841 - million-entry tables no longer needed
    if unlabelled:
        report.quirk("GLB without category or caption (left out)", count=unlabelled)
    report.loaded = len(shapes)
    from renderers.content import load_cache, save_cache

    cache = load_cache(root / FINGERPRINT_CACHE)
    fp = fingerprint_of(FORMAT, [p for p in (lvis, cap3d) if p is not None], [(GLBS, listing_digest)], cache)
    save_cache(root / FINGERPRINT_CACHE, cache)
    return Dataset(root=root, shapes=shapes, photos=[], fingerprint=fp, report=report, format=FORMAT,
                   stamp_identity=True,
                   native_captions=native, caption_source="cap3d" if cap3d else None)


def load(root: Path, data) -> Dataset:
    return load_objaverse(root, up_axis=resolve_up_axis(data, ENTRY), captions_file=data.captions_file)


ENTRY = register(Format(
    name=FORMAT, description="Objaverse 1.0 GLBs; LVIS categories and Cap3D captions",
    looks_for=f"{GLBS}/<000-XXX>/<uid>.glb", up_axis="y", has_photos=False, detect=detect, load=load,
    generate=synthetic_layout(FORMAT), presets=("tiny", "small"), caption_suffixes=(".csv",)))
