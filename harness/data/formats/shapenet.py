"""ShapeNetCore v2 (+ Text2Shape captions): ``<root>/<synsetId>/<modelId>/models/model_normalized.obj``.

``taxonomy.json`` names the synsets (the first of its comma-separated synonyms is the category; a
synset folder it lacks keeps its id and is counted). Text2Shape's ``captions.tablechair.csv``
(at the root, or ``data.captions_file``) gives several captions per chair and table; its split,
when ``text2shape_splits/{train,val,test}.txt`` sits beside the CSV (or at the root), is the split.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from ..pix3d import FINGERPRINT_CACHE
from ..records import NO_PHOTOS, Dataset, LoadReport, Shape
from .base import (
    DatasetError,
    Format,
    content_hashes,
    fingerprint_of,
    register,
    resolve_up_axis,
    sorted_dirs,
    synthetic_layout,
)

FORMAT = "shapenet"
MESH = "models/model_normalized.obj"
TAXONOMY = "taxonomy.json"
T2S_CSV = "captions.tablechair.csv"
T2S_COLUMNS = ("id", "modelId", "description", "category", "topLevelSynsetId", "subSynsetId")
T2S_SPLITS = "text2shape_splits"  # folder of train.txt / val.txt / test.txt: one modelId per line
_SYNSET = re.compile(r"\d{8}")


def detect(root: Path) -> bool:
    """A ShapeNetCore root has taxonomy.json or an 8-digit synset folder holding */models/*.obj."""
    root = Path(root)
    if (root / TAXONOMY).is_file():
        return True
    for d in sorted_dirs(root):
        if _SYNSET.fullmatch(d.name):
            return any((Path(m.path) / MESH).is_file() for m in sorted_dirs(Path(d.path))[:3])
    return False


def read_taxonomy(path: Path) -> dict[str, str]:
    """{synsetId: category} from taxonomy.json (the first synonym of each ``name``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}", path=str(path),
                           line=err.lineno) from err
    if not isinstance(data, list):
        raise DatasetError(f"{path}: top level is a {type(data).__name__}, expected a list of "
                           '{"synsetId", "name", "children", "numInstances"}', path=str(path))
    out = {}
    for i, e in enumerate(data):
        for field in ("synsetId", "name"):
            value = e.get(field) if isinstance(e, dict) else None
            if not isinstance(value, str) or not value.strip():
                raise DatasetError(f"{path} entry {i}: field {field!r} = {value!r}: expected a non-empty "
                                   "string (ShapeNet's taxonomy.json lists {\"synsetId\", \"name\", ...})",
                                   path=str(path), field=field, value=value)
        out[e["synsetId"]] = e["name"].split(",")[0].strip()
    return out


def _read_t2s(path: Path, index: dict, by_id: dict, report: LoadReport) -> dict[str, tuple]:
    """{shape key: (description, ...)} from a Text2Shape CSV; rows for models not on disk are counted."""
    caps: dict[str, list] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if "modelId" not in header or "description" not in header:
            raise DatasetError(f"{path} line 1: columns {header[:8]} lack 'modelId' and 'description' "
                               f"(Text2Shape's header is {','.join(T2S_COLUMNS)})", path=str(path), line=1)
        mi, di = header.index("modelId"), header.index("description")
        si = header.index("topLevelSynsetId") if "topLevelSynsetId" in header else None
        for row in reader:
            if len(row) != len(header):
                raise DatasetError(f"{path} line {reader.line_num}: {len(row)} fields, the header has "
                                   f"{len(header)} (quote descriptions holding commas)", path=str(path),
                                   line=reader.line_num, value=row[:3])
            model, desc = row[mi].strip(), " ".join(row[di].split())
            synset = row[si].strip() if si is not None else ""
            key = index.get((synset, model)) or by_id.get(model)
            if key is None:
                report.quirk("caption for a model not on disk", model)
            elif not desc:
                report.quirk("empty Text2Shape description", f"line {reader.line_num}")
            else:
                caps.setdefault(key, []).append(desc)
    return {k: tuple(dict.fromkeys(v)) for k, v in caps.items()}


def _read_splits(folder: Path, by_id: dict, report: LoadReport) -> dict[str, str]:
    """{shape key: split} from Text2Shape split files (train.txt and test.txt required, val.txt optional)."""
    missing = [n for n in ("train", "test") if not (folder / f"{n}.txt").is_file()]
    if missing:
        raise DatasetError(f"{folder}: split file(s) {', '.join(m + '.txt' for m in missing)} missing "
                           "(a Text2Shape split folder holds train.txt, val.txt (optional) and test.txt)",
                           path=str(folder))
    out, where = {}, {}
    for split in ("train", "val", "test"):
        path = folder / f"{split}.txt"
        if not path.is_file():
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            model = line.split("#")[0].strip()
            if not model:
                continue
            key = by_id.get(model)
            if key is None:
                report.quirk("split entry for a model not on disk", model)
                continue
            if key in out and out[key] != split:
                raise DatasetError(f"{path} line {n}: model {model!r} is already in {where[key]}",
                                   path=str(path), line=n, value=model)
            out[key], where[key] = split, f"{path.name} line {n}"
    return out


def _captions_csv(root: Path, captions_file) -> Path | None:
    if captions_file and Path(captions_file).suffix.lower() == ".csv":
        path = Path(captions_file)
        if not path.is_file():
            raise DatasetError(f"data.captions_file={str(captions_file)!r}: file not found (a Text2Shape "
                               f"{T2S_CSV})", path=str(path), field="data.captions_file")
        return path
    return root / T2S_CSV if (root / T2S_CSV).is_file() else None


def load_shapenet(root, up_axis: str = "y", captions_file=None) -> Dataset:
    """Load a ShapeNetCore v2 root (+ Text2Shape captions and split when present).

    captions_file: a Text2Shape CSV used instead of ``<root>/captions.tablechair.csv``.
    """
    root = Path(root).resolve()
    report = LoadReport()
    names = read_taxonomy(root / TAXONOMY) if (root / TAXONOMY).is_file() else {}
    if not names:
        report.quirk("no taxonomy.json", TAXONOMY)
    shapes, index, by_id = [], {}, {}
    for syn in sorted_dirs(root):
        if not _SYNSET.fullmatch(syn.name):
            report.quirk("folder that is not a synset id", syn.name)
            continue
        category = names.get(syn.name)
        if category is None:
            category = syn.name
            report.quirk("missing taxonomy entry", syn.name)
        for model in sorted_dirs(Path(syn.path)):
            key = f"{syn.name}/{model.name}/{MESH}"
            report.entries += 1
            if not (root / key).is_file():
                report.skipped.append({"path": f"{syn.name}/{model.name}", "reason": f"no {MESH}"})
                report.quirk(f"model folder without {MESH}", f"{syn.name}/{model.name}")
                continue
            shapes.append(Shape(key=key, category=category, name=model.name, variant="model_normalized",
                                mesh_path=root / key, photos=NO_PHOTOS, up_axis=up_axis))
            index[(syn.name, model.name)] = key
            if model.name in by_id:
                report.quirk("model id in several synsets", model.name)
            by_id.setdefault(model.name, key)
    if not shapes:
        raise DatasetError(f"{root}: no <synsetId>/<modelId>/{MESH} found (a ShapeNetCore v2 root holds "
                           "one folder per synset)", path=str(root))
    report.loaded = len(shapes)
    csv_path = _captions_csv(root, captions_file)
    captions = _read_t2s(csv_path, index, by_id, report) if csv_path else {}
    split_dir = next((d for d in ([csv_path.parent / T2S_SPLITS] if csv_path else []) + [root / T2S_SPLITS]
                      if d.is_dir()), None)
    provided = _read_splits(split_dir, by_id, report) if split_dir else None
    hashes = content_hashes(root, [s.key for s in shapes], FINGERPRINT_CACHE)
    for s in shapes:
        s.content_hash = hashes[s.key]
    index_files = [p for p in [root / TAXONOMY, csv_path] if p is not None and p.is_file()]
    index_files += sorted(split_dir.glob("*.txt")) if split_dir else []
    fp = fingerprint_of(FORMAT, index_files, sorted(hashes.items()))
    return Dataset(root=root, shapes=shapes, photos=[], fingerprint=fp, report=report, format=FORMAT,
                   provided_split=provided, native_captions=captions,
                   caption_source="text2shape" if csv_path else None)


def load(root: Path, data) -> Dataset:
    return load_shapenet(root, up_axis=resolve_up_axis(data, ENTRY), captions_file=data.captions_file)


ENTRY = register(Format(
    name=FORMAT, description="ShapeNetCore v2 meshes by synset; Text2Shape captions for chairs and tables",
    looks_for=f"{TAXONOMY} or <8-digit synsetId>/<modelId>/{MESH}", up_axis="y", has_photos=False,
    detect=detect, load=load, generate=synthetic_layout(FORMAT), presets=("tiny", "small"),
    caption_suffixes=(".csv",)))
