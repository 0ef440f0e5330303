"""Captions per shape: from true attributes (synthetic), from metadata and geometry (real Pix3D),
optionally extended or replaced by an external JSONL file; plus a diversity report.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from registries import choose

from .palette import nearest_colour
from .synth_meshes import ATTRIBUTES_FILE

NUMBER_WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
CAPTION_MODES = ("extend", "replace")


class CaptionsError(ValueError):
    """Bad captions file or mode; the message names the file, line and value."""


def _a(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plural(n: int, word: str) -> str:
    return f"{NUMBER_WORDS[n]} {word}{'' if n == 1 else 's'}"


# Each describer: (attributes, colours, material) -> facts used by the templates:
# noun, short (a compact noun phrase), adjs (prenominal), withs (phrases after "with"), colour, part_colour.
def _chair(a, c, m):
    legs = NUMBER_WORDS[a["legs"]]
    withs = [f"{legs} legs", "armrests" if a["armrests"] else "",
             f"a {a['back']} back", f"a {a['seat']} seat"]
    noun = "armchair" if a["armrests"] else "chair"
    return dict(noun="chair", short=f"{legs}-legged {noun}", adjs=[f"{legs}-legged"],
                withs=withs, without="armrests" if not a["armrests"] else "",
                colour=c["frame"], part_colour=(c["seat"], "seat"), material=m)


def _table(a, c, m):
    base = "a pedestal base" if a["base"] == "pedestal" else "four legs"
    return dict(noun="table", short=f"{a['top']} {'pedestal ' if a['base'] == 'pedestal' else ''}table",
                adjs=[a["top"]], withs=[f"{_a(a['top'])} top", base], without="",
                colour=c["top"], part_colour=(c["base"], "base"), material=m)


def _bookcase(a, c, m):
    return dict(noun="bookcase", short=f"{a['height']} bookcase", adjs=[a["height"]],
                withs=[_plural(a["shelves"], "shelf").replace("shelfs", "shelves")], without="",
                colour=c["body"], part_colour=None, material=m)


def _sofa(a, c, m):
    n = NUMBER_WORDS[a["seats"]]
    return dict(noun="sofa", short=f"{n}-seater sofa", adjs=[f"{n}-seater"],
                withs=[f"{n} seats", "armrests" if a["arms"] else ""],
                without="" if a["arms"] else "armrests",
                colour=c["body"], part_colour=(c["legs"], "legs"), material="fabric")


def _bed(a, c, m):
    return dict(noun="bed", short=f"{a['size']} bed", adjs=[a["size"]],
                withs=["a headboard" if a["headboard"] else ""],
                without="" if a["headboard"] else "a headboard",
                colour=c["frame"], part_colour=(c["bedding"], "bedding"), material=m)


def _desk(a, c, m):
    d = a["drawers"]
    return dict(noun="desk", short=f"desk with {_plural(d, 'drawer')}" if d else "desk without drawers",
                adjs=[], withs=[_plural(d, "drawer")] if d else [], without="" if d else "drawers",
                colour=c["top"], part_colour=(c["legs"], "legs"), material=m)


def _wardrobe(a, c, m):
    n = NUMBER_WORDS[a["doors"]]
    return dict(noun="wardrobe", short=f"{n}-door wardrobe", adjs=[f"{n}-door"],
                withs=[_plural(a["doors"], "door")], without="", colour=c["body"],
                part_colour=(c["handles"], "handles"), material=m)


def _kind(a, c, m):
    main = next(iter(c.values()))
    second = list(c.items())[1] if len(c) > 1 else None
    return dict(noun=a["kind"], short=a["kind"], adjs=[], withs=[], without="", colour=main,
                part_colour=(second[1], second[0]) if second else None, material="")


DESCRIBERS = {"chair": _chair, "table": _table, "bookcase": _bookcase, "sofa": _sofa, "bed": _bed,
              "desk": _desk, "wardrobe": _wardrobe, "misc": _kind, "tool": _kind}


def synthetic_captions(category: str, attributes: dict, colours: dict, material: str = "") -> list[str]:
    """Several captions that state the shape's true attributes in different templates."""
    f = DESCRIBERS[category](attributes, colours, material)
    col, noun, mat = f["colour"], f["noun"], f["material"]
    withs = _join(f["withs"])
    w = f" with {withs}" if withs else ""
    wo = f" without {f['without']}" if f["without"] else ""
    # after "four-legged chair", "with four legs" would say it twice
    rest = _join([x for x in f["withs"] if not any(adj.split("-")[0] in x.split() for adj in f["adjs"])])
    rest = f" with {rest}" if rest else ""
    mat_s = f"{mat} " if mat in ("wooden", "metal") else ""
    out = [
        f"{_a(col)} {mat_s}{noun}{w}{wo}",
        f"{col} {f['short']}",
        f"{_a(' '.join(f['adjs'] + [noun]))}{rest} in {col}",
    ]
    if f["part_colour"]:
        pc, part = f["part_colour"]
        out.append(f"{_a(col)} {f['short']} with {pc} {part}")
    else:
        out.append(f"{_a(f['short'])}, {col}")
    out.append(f"{f['short']}{wo}, {col} colour" if wo else f"{col}-coloured {f['short']}")
    return list(dict.fromkeys(re.sub(r"\s+", " ", s).strip() for s in out))


# -- real Pix3D -----------------------------------------------------------------------------------

def product_name(folder: str) -> str | None:
    """Product name from a Pix3D model folder: IKEA_MALM_2 -> "IKEA MALM"; None when not a name."""
    tokens = [t for t in folder.split("_") if t and not t.isdigit()]
    if not any(len(t) >= 3 and t.isalpha() for t in tokens):
        return None
    return " ".join(tokens)


def mesh_colour_and_extents(obj_path: Path):
    """(dominant MTL colour name or None, bbox extents (x, y, z)) from an OBJ and its MTL files.

    The dominant material is the one used by the most faces; Kd maps to the nearest palette name.
    """
    verts, faces_per_mtl, mtllibs, current = [], Counter(), [], None
    with open(obj_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append(line.split()[1:4])
            elif line.startswith("f "):
                faces_per_mtl[current] += 1
            elif line.startswith("usemtl"):
                current = line.split(None, 1)[1].strip() if len(line.split()) > 1 else None
            elif line.startswith("mtllib"):
                mtllibs.append(line.split(None, 1)[1].strip())
    kd = {}
    for lib in mtllibs:
        p = obj_path.parent / lib
        if not p.is_file():
            continue
        name = None
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if parts[:1] == ["newmtl"] and len(parts) > 1:
                name = parts[1]
            elif parts[:1] == ["Kd"] and name is not None and len(parts) >= 4:
                kd[name] = [float(x) for x in parts[1:4]]
    colour = None
    for mtl, _ in faces_per_mtl.most_common():
        if mtl in kd:
            colour = nearest_colour(kd[mtl])
            break
    ext = np.ptp(np.asarray(verts, dtype=float), axis=0) if verts else np.zeros(3)
    return colour, ext


def proportion_words(extents) -> list[str]:
    """Coarse proportions from bbox extents (x, y up, z): tall / low / wide."""
    x, y, z = (float(v) for v in extents)
    words = []
    if y > 1.6 * max(x, z, 1e-9):
        words.append("tall")
    elif y < 0.5 * max(x, z):
        words.append("low")
    if x > 1.8 * max(y, z, 1e-9):
        words.append("wide")
    return words


def real_captions(shape) -> list[str]:
    """Captions of a real Pix3D shape from category, source, product name, MTL colour and proportions."""
    noun = shape.category
    colour, ext = mesh_colour_and_extents(shape.mesh_path)
    props = proportion_words(ext)
    product = product_name(shape.name)
    source = shape.source if shape.source and shape.source.lower() not in ("", "none") else None
    col = f"{colour} " if colour else ""
    out = [f"{_a(col + noun)}".strip(), f"{_a(' '.join(props + [col.strip(), noun]).strip())}"]
    if product:
        out.append(f"{product} {noun}")
        out.append(f"{_a(col + noun)} {product}".strip() if not colour else f"the {colour} {product} {noun}")
    if source:
        out.append(f"{_a(col + noun)} from {source}")
    return list(dict.fromkeys(re.sub(r"\s+", " ", s).strip() for s in out))


# -- class-level (datasets without per-shape captions: ModelNet, uncaptioned ShapeNet / Objaverse) ----

CLASS_TEMPLATES = ("a 3D model of {a}", "{a}", "a rendering of {a}")
CLASS_LEVEL = "class-level"  # the caption source of shapes captioned from their category name only


def category_noun(category: str) -> str:
    """A category as words: ModelNet's ``night_stand`` / LVIS's ``teddy_bear`` -> "night stand"."""
    return " ".join(str(category).replace("_", " ").split())


def class_captions(category: str) -> list[str]:
    """Captions from the category name alone (every shape of the category gets the same ones)."""
    a = _a(category_noun(category))
    return [t.format(a=a) for t in CLASS_TEMPLATES]


def _native_or_class(dataset) -> dict[str, list[str]]:
    """The dataset's own captions (Text2Shape, Cap3D) per shape; class-level ones for the others."""
    native = dataset.native_captions
    by_category: dict[str, list[str]] = {}
    out = {}
    for s in dataset.shapes:
        caps = native.get(s.key)
        if caps is None:
            if s.category not in by_category:
                by_category[s.category] = class_captions(s.category)
            caps = by_category[s.category]
        out[s.key] = list(caps)
    return out


def caption_sources(dataset, captions: dict) -> dict[str, int]:
    """Shapes per caption source: the dataset's own (e.g. ``text2shape``), ``class-level``, or for Pix3D
    ``attributes`` (synthetic) / ``pix3d-metadata``."""
    native = getattr(dataset, "native_captions", None)
    if native is None:
        synthetic = bool(load_attributes(dataset.root))
        return {"attributes" if synthetic else "pix3d-metadata": len(captions)}
    own = sum(1 for k in captions if k in native)
    out = {dataset.caption_source or "dataset": own} if own else {}
    if len(captions) - own:
        out[CLASS_LEVEL] = len(captions) - own
    return out


# -- assembling ------------------------------------------------------------------------------------

def described_shapes(dataset, captions: dict) -> set[str]:
    """The shapes whose captions describe the shape, not only its class: every shape but those whose
    captions are exactly :func:`class_captions` of their category (ModelNet; ShapeNet / Objaverse shapes
    their caption file does not list). Text retrieval and captioning are scored on these only."""
    class_level: dict[str, list[str]] = {}
    out = set()
    for s in dataset.shapes:
        caps = captions.get(s.key)
        if not caps:
            continue
        if s.category not in class_level:
            class_level[s.category] = class_captions(s.category)
        if list(caps) != class_level[s.category]:
            out.add(s.key)
    return out


def read_captions_file(path, known_keys=None) -> dict[str, list[str]]:
    """Read a JSONL captions file: one {"model": path, "captions": [...]} per line."""
    path = Path(path)
    if not path.is_file():
        raise CaptionsError(f"captions file {path} not found (data.captions_file)")
    out: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise CaptionsError(f"captions file {path} line {n}: not valid JSON ({err.msg})") from err
        if not isinstance(rec, dict) or not isinstance(rec.get("model"), str):
            raise CaptionsError(f"captions file {path} line {n}: expected "
                                '{"model": path, "captions": [...]}')
        caps = rec.get("captions")
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) and c.strip() for c in caps):
            raise CaptionsError(f"captions file {path} line {n}: 'captions' = {caps!r} must be a "
                                "non-empty list of non-empty strings")
        if known_keys is not None and rec["model"] not in known_keys:
            raise CaptionsError(f"captions file {path} line {n}: model {rec['model']!r} is not a "
                                "shape of the dataset (use model paths like model/chair/NAME/model.obj)")
        out.setdefault(rec["model"], []).extend(c.strip() for c in caps)
    return out


def load_attributes(root) -> dict:
    """The synthetic generator's true attributes per shape key ({} for a real dataset)."""
    p = Path(root) / ATTRIBUTES_FILE
    return json.loads(p.read_text())["shapes"] if p.is_file() else {}


def build_captions(dataset, captions_file=None, mode: str = "extend") -> dict[str, list[str]]:
    """Captions per shape key. mode: "extend" appends the file's captions, "replace" uses only the file's
    captions for the shapes it lists (other shapes keep generated ones).

    Pix3D: from the synthetic attributes, or metadata and geometry. Other formats: the dataset's own
    captions (``dataset.native_captions``), class-level ones (:func:`class_captions`) for the rest.
    """
    choose("data.captions_mode", mode, CAPTION_MODES, CaptionsError)
    if getattr(dataset, "native_captions", None) is not None:  # formats beyond Pix3D
        out = _native_or_class(dataset)
    else:
        attrs = load_attributes(dataset.root)
        out = {}
        for s in dataset.shapes:
            a = attrs.get(s.key)
            out[s.key] = (synthetic_captions(s.category, a["attributes"], a["colours"], a.get("material", ""))
                          if a else real_captions(s))
    if captions_file:
        extra = read_captions_file(captions_file, known_keys=set(out))
        for key, caps in extra.items():
            out[key] = list(dict.fromkeys(caps if mode == "replace" else out[key] + caps))
    return out


def caption_report(captions: dict[str, list[str]], dataset=None) -> dict:
    """Diversity of a caption set: counts, distinct captions, vocabulary size, mean length (plain types).

    dataset: adds ``sources`` (shapes per caption source, :func:`caption_sources`) and
    ``class_level_shapes`` (shapes captioned from their category name only: their captions say the
    class, nothing about the shape).
    """
    allc = [c for caps in captions.values() for c in caps]
    words = [w for c in allc for w in re.findall(r"[a-z0-9\-]+", c.lower())]
    n = max(len(allc), 1)
    out = {"shapes": len(captions), "captions": len(allc), "distinct": len(set(allc)),
           "distinct_ratio": len(set(allc)) / n, "vocab_size": len(set(words)),
           "mean_words": len(words) / n, "captions_per_shape": len(allc) / max(len(captions), 1)}
    if dataset is not None:
        sources = caption_sources(dataset, captions)
        out.update(sources=sources, class_level_shapes=sources.get(CLASS_LEVEL, 0))
    return out
