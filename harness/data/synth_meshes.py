"""Procedural furniture and objects for all nine Pix3D categories, built from boxes and cylinders.

Each builder draws attributes that language can describe (legs, arms, shelves, doors, ...) and returns
a :class:`ProceduralShape`: named parts, each painted with a named palette colour, plus the true
attributes so captions can be checked against the geometry. Units are metres, +y is up, the front
faces +z; the written mesh is centred on its bounding box (like Pix3D's models).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from .palette import MATERIAL_COLOURS, PALETTE

ATTRIBUTES_FILE = "attributes.json"  # sidecar of true attributes at a synthetic root
CATEGORIES = ("bed", "bookcase", "chair", "desk", "misc", "sofa", "table", "tool", "wardrobe")


@dataclass
class Part:
    """One primitive of a shape: ``role`` picks its colour (all parts with one role share it)."""

    name: str
    role: str
    mesh: trimesh.Trimesh


@dataclass
class ProceduralShape:
    """A generated shape: parts, the colour name per role, the true attributes."""

    category: str
    parts: list[Part]
    colours: dict[str, str]
    attributes: dict
    material: str = "wooden"
    extra: dict = field(default_factory=dict)

    def mesh(self) -> trimesh.Trimesh:
        """All parts as one mesh centred on its bounding box, face colours from the palette."""
        meshes = []
        for p in self.parts:
            m = p.mesh.copy()
            rgb = np.array(PALETTE[self.colours[p.role]]) * 255
            m.visual.face_colors = np.tile(np.append(rgb, 255).astype(np.uint8), (len(m.faces), 1))
            meshes.append(m)
        out = trimesh.util.concatenate(meshes)
        out.apply_translation(-out.bounds.mean(axis=0))
        return out


def _box(center, extents) -> trimesh.Trimesh:
    m = trimesh.creation.box(extents=np.asarray(extents, dtype=float))
    m.apply_translation(center)
    return m


def _cyl(center, radius, height, axis="y", sections=20) -> trimesh.Trimesh:
    """A closed cylinder along ``axis`` (trimesh builds them along z)."""
    m = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    if axis == "y":
        m.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    elif axis == "x":
        m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    m.apply_translation(center)
    return m


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _paint(rng, roles_materials: dict[str, str]) -> dict[str, str]:
    """A colour name per role from that role's material family; roles of one family may differ."""
    return {role: _pick(rng, MATERIAL_COLOURS[mat]) for role, mat in roles_materials.items()}


def _legs(parts, positions, y_top, radius_or_half, round_legs, role="legs"):
    for i, (x, z) in enumerate(positions):
        if round_legs:
            parts.append(Part(f"leg{i + 1}", role, _cyl((x, y_top / 2, z), radius_or_half, y_top)))
        else:
            s = 2 * radius_or_half
            parts.append(Part(f"leg{i + 1}", role, _box((x, y_top / 2, z), (s, y_top, s))))


def build_chair(rng) -> ProceduralShape:
    legs = int(_pick(rng, (3, 4)))
    arms = bool(rng.random() < 0.45)
    back = _pick(rng, ("tall", "short"))
    seat = _pick(rng, ("round", "square"))
    frame_mat = _pick(rng, ("wooden", "metal"))
    seat_mat = _pick(rng, ("wooden", "fabric", "painted"))
    colours = _paint(rng, {"frame": frame_mat, "seat": seat_mat})
    w = float(rng.uniform(0.40, 0.52))
    sh = float(rng.uniform(0.40, 0.48))
    t = 0.05
    parts: list[Part] = []
    if seat == "round":
        parts.append(Part("seat", "seat", _cyl((0, sh + t / 2, 0), w / 2, t, sections=28)))
    else:
        parts.append(Part("seat", "seat", _box((0, sh + t / 2, 0), (w, t, w))))
    r = 0.022
    inset = w / 2 - 0.05
    if legs == 4:
        pos = [(-inset, -inset), (inset, -inset), (-inset, inset), (inset, inset)]
    else:  # tripod: one leg at the front, two at the back
        pos = [(0.0, inset), (-inset, -inset * 0.8), (inset, -inset * 0.8)]
    _legs(parts, pos, sh, r, round_legs=frame_mat == "metal", role="frame")
    bh = float(rng.uniform(0.45, 0.65) if back == "tall" else rng.uniform(0.18, 0.28))
    parts.append(Part("back", "seat", _box((0, sh + t + bh / 2, -w / 2 + 0.02), (w, bh, 0.04))))
    if arms:
        ah = 0.22
        for sx, nm in ((-1, "armrest_left"), (1, "armrest_right")):
            x = sx * (w / 2 - 0.02)
            parts.append(Part(nm, "frame", _box((x, sh + t + ah, 0), (0.05, 0.04, w * 0.9))))
            parts.append(Part(nm + "_post", "frame", _box((x, sh + t + ah / 2, w * 0.35), (0.03, ah, 0.03))))
    attrs = {"legs": legs, "armrests": arms, "back": back, "seat": seat}
    return ProceduralShape("chair", parts, colours, attrs, material=frame_mat,
                           extra={"seat_material": seat_mat})


def build_table(rng) -> ProceduralShape:
    top = _pick(rng, ("round", "square", "rectangular"))
    base = _pick(rng, ("pedestal", "four legs"))
    mat = _pick(rng, ("wooden", "painted"))
    colours = _paint(rng, {"top": mat, "base": _pick(rng, ("wooden", "metal"))})
    h = float(rng.uniform(0.68, 0.78))
    t = 0.04
    if top == "round":
        w = d = float(rng.uniform(0.8, 1.2))
        parts = [Part("top", "top", _cyl((0, h - t / 2, 0), w / 2, t, sections=32))]
    elif top == "square":
        w = d = float(rng.uniform(0.8, 1.1))
        parts = [Part("top", "top", _box((0, h - t / 2, 0), (w, t, d)))]
    else:
        w, d = float(rng.uniform(1.3, 1.9)), float(rng.uniform(0.7, 0.9))
        parts = [Part("top", "top", _box((0, h - t / 2, 0), (w, t, d)))]
    if base == "pedestal":
        parts.append(Part("pedestal", "base", _cyl((0, (h - t) / 2, 0), 0.06, h - t)))
        parts.append(Part("foot", "base", _cyl((0, 0.02, 0), min(w, d) * 0.3, 0.04, sections=28)))
    else:
        k = 0.7 if top == "round" else 1.0
        ix, iz = (w / 2 - 0.06) * k, (d / 2 - 0.06) * k
        _legs(parts, [(-ix, -iz), (ix, -iz), (-ix, iz), (ix, iz)], h - t, 0.03, False, role="base")
    attrs = {"top": top, "base": base}
    return ProceduralShape("table", parts, colours, attrs, material=mat)


def build_bookcase(rng) -> ProceduralShape:
    shelves = int(rng.integers(2, 7))
    height = _pick(rng, ("tall", "short"))
    mat = _pick(rng, ("wooden", "painted"))
    colours = _paint(rng, {"body": mat})
    w = float(rng.uniform(0.6, 1.0))
    d = 0.3
    h = float(rng.uniform(1.6, 2.1) if height == "tall" else rng.uniform(0.7, 1.1))
    t = 0.025
    parts = [
        Part("side_left", "body", _box((-w / 2 + t / 2, h / 2, 0), (t, h, d))),
        Part("side_right", "body", _box((w / 2 - t / 2, h / 2, 0), (t, h, d))),
        Part("back_panel", "body", _box((0, h / 2, -d / 2 + 0.005), (w, h, 0.01))),
        Part("bottom", "body", _box((0, t / 2, 0), (w - 2 * t, t, d))),
        Part("top", "body", _box((0, h - t / 2, 0), (w - 2 * t, t, d))),
    ]
    # ``shelves`` counts the boards one can put books on, between bottom and top
    for i in range(shelves - 1):
        y = (i + 1) * h / shelves
        parts.append(Part(f"shelf{i + 1}", "body", _box((0, y, 0), (w - 2 * t, t, d - 0.02))))
    attrs = {"shelves": shelves, "height": height}
    return ProceduralShape("bookcase", parts, colours, attrs, material=mat)


def build_sofa(rng) -> ProceduralShape:
    seats = int(_pick(rng, (2, 3)))
    arms = bool(rng.random() < 0.7)
    colours = _paint(rng, {"body": "fabric", "legs": _pick(rng, ("wooden", "metal"))})
    sw = float(rng.uniform(0.55, 0.65))
    w = seats * sw
    d = 0.85
    parts = [Part("base", "body", _box((0, 0.28, 0), (w, 0.22, d)))]
    for i in range(seats):
        x = -w / 2 + sw * (i + 0.5)
        parts.append(Part(f"cushion{i + 1}", "body", _box((x, 0.45, 0.05), (sw - 0.02, 0.12, d - 0.15))))
    parts.append(Part("back", "body", _box((0, 0.62, -d / 2 + 0.1), (w, 0.5, 0.2))))
    if arms:
        for sx, nm in ((-1, "arm_left"), (1, "arm_right")):
            parts.append(Part(nm, "body", _box((sx * (w / 2 + 0.08), 0.4, 0), (0.16, 0.46, d))))
    ox = w / 2 + (0.08 if arms else 0) - 0.05
    _legs(parts, [(-ox, -d / 2 + 0.05), (ox, -d / 2 + 0.05), (-ox, d / 2 - 0.05), (ox, d / 2 - 0.05)],
          0.17, 0.025, True, role="legs")
    attrs = {"seats": seats, "arms": arms}
    return ProceduralShape("sofa", parts, colours, attrs, material="fabric")


def build_bed(rng) -> ProceduralShape:
    headboard = bool(rng.random() < 0.75)
    size = _pick(rng, ("single", "double"))
    mat = _pick(rng, ("wooden", "metal", "painted"))
    colours = _paint(rng, {"frame": mat, "bedding": "fabric"})
    w = float(rng.uniform(0.9, 1.0) if size == "single" else rng.uniform(1.4, 1.8))
    ln = float(rng.uniform(1.95, 2.1))
    parts = [
        Part("frame", "frame", _box((0, 0.2, 0), (w + 0.06, 0.16, ln + 0.06))),
        Part("mattress", "bedding", _box((0, 0.37, 0), (w, 0.18, ln))),
        Part("pillow", "bedding", _box((0, 0.5, -ln / 2 + 0.25), (w * 0.6, 0.08, 0.35))),
    ]
    _legs(parts, [(-w / 2, -ln / 2), (w / 2, -ln / 2), (-w / 2, ln / 2), (w / 2, ln / 2)], 0.12, 0.03, False,
          role="frame")
    if headboard:
        hh = float(rng.uniform(0.9, 1.2))
        parts.append(Part("headboard", "frame", _box((0, hh / 2, -ln / 2 - 0.04), (w + 0.1, hh, 0.05))))
    attrs = {"headboard": headboard, "size": size}
    return ProceduralShape("bed", parts, colours, attrs, material=mat)


def build_desk(rng) -> ProceduralShape:
    drawers = int(_pick(rng, (0, 1, 2, 3)))
    mat = _pick(rng, ("wooden", "painted"))
    colours = _paint(rng, {"top": mat, "legs": _pick(rng, ("wooden", "metal")), "handles": "metal"})
    w, d, h, t = float(rng.uniform(1.1, 1.6)), float(rng.uniform(0.6, 0.75)), 0.74, 0.035
    parts = [Part("top", "top", _box((0, h - t / 2, 0), (w, t, d)))]
    ix, iz = w / 2 - 0.04, d / 2 - 0.04
    if drawers:
        # a drawer pedestal on the right replaces the two right legs
        pw = 0.42
        px = w / 2 - pw / 2
        parts.append(Part("pedestal", "top", _box((px, (h - t) / 2, 0), (pw, h - t, d - 0.02))))
        dh = (h - t - 0.06) / drawers
        for i in range(drawers):
            y = 0.04 + dh * (i + 0.5)
            parts.append(Part(f"drawer{i + 1}", "top", _box((px, y, d / 2), (pw - 0.04, dh - 0.02, 0.02))))
            parts.append(Part(f"handle{i + 1}", "handles", _box((px, y, d / 2 + 0.02), (0.12, 0.02, 0.02))))
        _legs(parts, [(-ix, -iz), (-ix, iz)], h - t, 0.025, False, role="legs")
    else:
        _legs(parts, [(-ix, -iz), (ix, -iz), (-ix, iz), (ix, iz)], h - t, 0.025, False, role="legs")
    attrs = {"drawers": drawers}
    return ProceduralShape("desk", parts, colours, attrs, material=mat)


def build_wardrobe(rng) -> ProceduralShape:
    doors = int(rng.integers(1, 4))
    mat = _pick(rng, ("wooden", "painted"))
    colours = _paint(rng, {"body": mat, "handles": "metal"})
    dw = float(rng.uniform(0.45, 0.55))
    w, d, h = doors * dw, 0.58, float(rng.uniform(1.8, 2.2))
    parts = [Part("body", "body", _box((0, h / 2 + 0.05, 0), (w, h, d)))]
    parts.append(Part("plinth", "body", _box((0, 0.025, 0), (w - 0.04, 0.05, d - 0.04))))
    for i in range(doors):
        x = -w / 2 + dw * (i + 0.5)
        door = _box((x, h / 2 + 0.05, d / 2 + 0.01), (dw - 0.01, h - 0.04, 0.02))
        parts.append(Part(f"door{i + 1}", "body", door))
        hx = x + (dw / 2 - 0.06) * (1 if i % 2 == 0 else -1)
        handle = _box((hx, h / 2 + 0.05, d / 2 + 0.035), (0.02, 0.25, 0.03))
        parts.append(Part(f"handle{i + 1}", "handles", handle))
    attrs = {"doors": doors}
    return ProceduralShape("wardrobe", parts, colours, attrs, material=mat)


def build_misc(rng) -> ProceduralShape:
    kind = _pick(rng, ("lamp", "vase", "crate"))
    if kind == "lamp":
        colours = _paint(rng, {"stand": "metal", "shade": "fabric"})
        hgt = float(rng.uniform(0.4, 1.6))
        parts = [Part("base", "stand", _cyl((0, 0.015, 0), 0.12, 0.03)),
                 Part("pole", "stand", _cyl((0, hgt / 2, 0), 0.012, hgt)),
                 Part("shade", "shade", _cyl((0, hgt, 0), 0.17, 0.22, sections=24))]
    elif kind == "vase":
        colours = _paint(rng, {"body": "painted"})
        hgt = float(rng.uniform(0.25, 0.5))
        parts = [Part("body", "body", _cyl((0, hgt * 0.35, 0), 0.09, hgt * 0.7, sections=24)),
                 Part("neck", "body", _cyl((0, hgt * 0.85, 0), 0.045, hgt * 0.3, sections=24))]
    else:
        colours = _paint(rng, {"body": "wooden"})
        s = float(rng.uniform(0.35, 0.6))
        parts = [Part("box", "body", _box((0, s / 2, 0), (s, s, s * 0.8)))]
        for i in range(3):
            slat = _box((0, s * (0.2 + 0.3 * i), s * 0.41), (s, 0.05, 0.02))
            parts.append(Part(f"slat{i + 1}", "body", slat))
    return ProceduralShape("misc", parts, colours, {"kind": kind}, material="painted")


def build_tool(rng) -> ProceduralShape:
    kind = _pick(rng, ("hammer", "screwdriver", "wrench"))
    if kind == "hammer":
        colours = _paint(rng, {"handle": _pick(rng, ("wooden", "painted")), "head": "metal"})
        ln = float(rng.uniform(0.28, 0.36))
        parts = [Part("handle", "handle", _cyl((0, ln / 2, 0), 0.015, ln)),
                 Part("head", "head", _box((0, ln, 0), (0.13, 0.035, 0.035)))]
    elif kind == "screwdriver":
        colours = _paint(rng, {"handle": "painted", "shaft": "metal"})
        ln = float(rng.uniform(0.18, 0.28))
        parts = [Part("handle", "handle", _cyl((0, 0.05, 0), 0.017, 0.1)),
                 Part("shaft", "shaft", _cyl((0, 0.1 + ln / 2, 0), 0.004, ln, sections=12))]
    else:
        colours = _paint(rng, {"body": "metal"})
        ln = float(rng.uniform(0.18, 0.3))
        parts = [Part("bar", "body", _box((0, ln / 2, 0), (0.02, ln, 0.008))),
                 Part("jaw_top", "body", _box((0, ln, 0), (0.05, 0.03, 0.01))),
                 Part("ring_bottom", "body", _cyl((0, 0, 0), 0.02, 0.01, axis="z", sections=16))]
    return ProceduralShape("tool", parts, colours, {"kind": kind}, material="metal")


BUILDERS = {
    "bed": build_bed, "bookcase": build_bookcase, "chair": build_chair, "desk": build_desk,
    "misc": build_misc, "sofa": build_sofa, "table": build_table, "tool": build_tool,
    "wardrobe": build_wardrobe,
}


def _fmt(x: float) -> str:
    s = f"{x:.5f}"
    return "0.00000" if s == "-0.00000" else s  # one spelling of zero keeps files byte-identical


def write_obj(shape: ProceduralShape, obj_path: Path) -> None:
    """Write ``shape`` as OBJ + MTL (one material per colour role, Kd = palette colour), byte-stable."""
    obj_path = Path(obj_path)
    mtl_name = obj_path.with_suffix(".mtl").name
    centre = trimesh.util.concatenate([p.mesh for p in shape.parts]).bounds.mean(axis=0)
    lines = ["# clip3d-bench synthetic shape", f"mtllib {mtl_name}"]
    base = 1
    for p in shape.parts:
        v = np.asarray(p.mesh.vertices, dtype=np.float64) - centre
        lines.append(f"o {p.name}")
        lines.append(f"usemtl {p.role}")
        lines.extend(f"v {_fmt(a)} {_fmt(b)} {_fmt(c)}" for a, b, c in v)
        lines.extend(f"f {a + base} {b + base} {c + base}" for a, b, c in np.asarray(p.mesh.faces))
        base += len(v)
    obj_path.write_text("\n".join(lines) + "\n", encoding="ascii")
    mtl = ["# clip3d-bench synthetic materials"]
    for role in sorted({p.role for p in shape.parts}):
        r, g, b = PALETTE[shape.colours[role]]
        mtl += [f"newmtl {role}", "Ka 0.000 0.000 0.000", f"Kd {r:.3f} {g:.3f} {b:.3f}",
                "Ks 0.050 0.050 0.050", "Ns 10.000", "d 1.000", "illum 2", ""]
    obj_path.with_suffix(".mtl").write_text("\n".join(mtl), encoding="ascii")
