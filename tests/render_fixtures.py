"""Mesh-file builders shared by the renderer tests (no tests here; generated data, never committed)."""
from pathlib import Path

import numpy as np
from PIL import Image

CUBE_V = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
CUBE_QUADS = [(1, 2, 4, 3), (5, 7, 8, 6), (1, 5, 6, 2), (3, 4, 8, 7), (1, 3, 7, 5), (2, 6, 8, 4)]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def cube_obj(path: Path, scale=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0), mtllib=None, material=None,
             colour=None) -> Path:
    """A cube written with quads; optional mtllib/usemtl lines and per-vertex colours."""
    lines = [f"mtllib {mtllib}"] if mtllib else []
    for v in CUBE_V:
        xyz = " ".join(f"{c * s + o:.9g}" for c, s, o in zip(v, scale, offset, strict=True))
        lines.append(f"v {xyz}" + (" " + " ".join(map(str, colour)) if colour else ""))
    if material:
        lines.append(f"usemtl {material}")
    lines += ["f " + " ".join(map(str, q)) for q in CUBE_QUADS]
    return write(path, "\n".join(lines) + "\n")


def mtl(path: Path, materials: dict) -> Path:
    """materials: name -> (Kd rgb tuple, optional map_Kd file name)."""
    out = []
    for name, (kd, tex) in materials.items():
        out += [f"newmtl {name}", "Kd " + " ".join(map(str, kd))]
        if tex:
            out.append(f"map_Kd {tex}")
    return write(path, "\n".join(out) + "\n")


def textured_quad(folder: Path, texture=True) -> Path:
    """A unit quad in the z=0 plane facing +Z; texture: left half red, right half blue."""
    folder.mkdir(parents=True, exist_ok=True)
    if texture:
        img = np.zeros((8, 8, 3), np.uint8)
        img[:, :4] = (255, 0, 0)
        img[:, 4:] = (0, 0, 255)
        Image.fromarray(img).save(folder / "tex.png")
    mtl(folder / "model.mtl", {"skin": ((1, 1, 1), "tex.png")})
    text = ("mtllib model.mtl\nv -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\n"
            "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\nvn 0 0 1\nusemtl skin\nf 1/1/1 2/2/1 3/3/1 4/4/1\n")
    return write(folder / "model.obj", text)


def chair_like_obj(path: Path) -> Path:
    """An asymmetric two-object, two-material OBJ (seat + back) in model/<cat>/<name> layout."""
    mtl(path.with_suffix(".mtl"), {"wood": ((0.8, 0.5, 0.2), None), "cloth": ((0.1, 0.3, 0.9), None)})
    lines = [f"mtllib {path.with_suffix('.mtl').name}"]
    n = 0
    for name, mat, scale, off in (("seat", "wood", (1, 0.1, 1), (0, 0, 0)),
                                  ("back", "cloth", (1, 0.8, 0.1), (0, 0.9, -0.9))):
        lines.append(f"o {name}")
        for v in CUBE_V:
            lines.append("v " + " ".join(f"{c * s + o:.9g}" for c, s, o in zip(v, scale, off, strict=True)))
        lines.append(f"usemtl {mat}")
        lines += ["f " + " ".join(str(i + n) for i in q) for q in CUBE_QUADS]
        n += 8
    return write(path, "\n".join(lines) + "\n")
