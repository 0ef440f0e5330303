"""renderers/off.py: ModelNet's OFF files, the merged header quirk, polygons, colours and bad input."""
import warnings

import numpy as np
import pytest
import trimesh

from renderers import MeshLoadError, MeshTooLargeError, load_mesh
from renderers.off import off_header, read_off

# A unit cube: 8 vertices, 6 quads (ModelNet writes polygons as well as triangles).
CUBE_V = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 2)]
CUBE_F = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def _off(header: str, faces=CUBE_F, verts=CUBE_V, face_extra="") -> str:
    lines = [header] + [" ".join(map(str, v)) for v in verts]
    lines += [f"{len(f)} " + " ".join(map(str, f)) + face_extra for f in faces]
    return "\n".join(lines) + "\n"


def _tri_off(path, merged: bool):
    m = trimesh.creation.icosphere(subdivisions=1)
    head = f"OFF{len(m.vertices)} {len(m.faces)} 0" if merged else f"OFF\n{len(m.vertices)} {len(m.faces)} 0"
    lines = [head] + [f"{a:.6f} {b:.6f} {c:.6f}" for a, b, c in m.vertices]
    lines += [f"3 {a} {b} {c}" for a, b, c in m.faces]
    path.write_text("\n".join(lines) + "\n")
    return m


def test_merged_header_reads_like_a_correct_file(tmp_path):
    ok, merged = tmp_path / "ok.off", tmp_path / "merged.off"
    ref = _tri_off(ok, merged=False)
    _tri_off(merged, merged=True)
    a, b = read_off(ok), read_off(merged)
    assert len(a.vertices) == len(b.vertices) == len(ref.vertices) == 42
    assert len(a.faces) == len(b.faces) == len(ref.faces) == 80
    assert np.allclose(a.vertices, b.vertices) and (a.faces == b.faces).all()
    assert off_header(merged).merged and not off_header(ok).merged
    assert off_header(merged)[:2] == (42, 80)
    # the same geometry as trimesh's own reader finds in the well-formed file
    assert np.allclose(trimesh.load(str(ok), process=False, force="mesh").vertices, a.vertices)
    loaded = load_mesh(str(merged), normalize=False)  # renderers.load_mesh goes through read_off
    assert len(loaded.vertices) == 42 and len(loaded.faces) == 80


def test_comments_blank_lines_polygons_and_no_keyword(tmp_path):
    text = "# exported by hand\n\nOFF\n# counts next\n8 6 0\n\n" + _off("", ).lstrip("\n")
    p = tmp_path / "cube.off"
    p.write_text(text)
    m = read_off(p)
    assert len(m.vertices) == 8 and len(m.faces) == 12  # six quads, two triangles each (fans)
    assert np.isclose(m.area, 2 * (1 * 1) + 4 * (1 * 2))  # the fans cover each quad exactly
    bare = tmp_path / "bare.off"
    bare.write_text(_off("8 6 0"))  # some exporters write no keyword
    assert len(read_off(bare).faces) == 12
    ext = load_mesh(str(p), normalize=False).extents
    assert ext[2] == pytest.approx(2.0)  # vertices as written: z stays the tall axis (Z-up)


def test_colours(tmp_path):
    coff = tmp_path / "c.off"
    coff.write_text(_off("COFF\n8 6 0", verts=[(x, y, z, 255, 0, 0, 255) for x, y, z in CUBE_V]))
    m = read_off(coff)
    assert m.visual.kind == "vertex" and (m.visual.vertex_colors[:, :3] == [255, 0, 0]).all()
    faces = tmp_path / "f.off"
    faces.write_text(_off("OFF\n8 6 0", face_extra=" 0.0 0.5 1.0"))
    f = read_off(faces)
    assert f.visual.kind == "face" and (f.visual.face_colors[0, :3] == [0, 128, 255]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no material" warning: OFF has none by design
        plain = load_mesh(str(tmp_path / "f.off"), normalize=False)
    assert len(plain.faces) == 12


BAD = [
    ("OFF\n8 6\n" + "0 0 0\n" * 7, "line 9: the file ends after 7 of 8 vertices"),
    ("OFF\nabc 6 0\n", "line 2: 'abc 6 0': expected the counts 'nVertices nFaces nEdges'"),
    ("PLY\n", "line 1: 'PLY': expected the 'OFF' keyword or the counts"),
    ("4OFF\n1 1 0\n", "line 1: '4OFF': only 3-D OFF files are supported"),
    ("OFF\n3 1 0\n0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n", "line 4: '1 x 0': expected numbers"),
    ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", "line 4: '1 0': a vertex needs x y z"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "line 6: vertex index 7 out of range \\(3 vertices"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n",
     "line 6: '4 0 1 2': the face declares 4 vertices but lists 3"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "line 6: '2 0 1': a face needs at least 3 vertices"),
    ("OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "line 6: the file ends after 1 of 2 faces"),
    ("OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "no faces \\(3 vertices, 0 faces"),
    ("# only a comment\n", "no content"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_input_names_the_file_and_line(tmp_path, text, message):
    p = tmp_path / "bad.off"
    p.write_text(text)
    with pytest.raises(MeshLoadError, match=f"{p}: {message}" if "line" in message else message):
        read_off(p)


def test_face_limit_is_checked_from_the_header(tmp_path):
    p = tmp_path / "big.off"
    p.write_text("OFF\n3 2000000 0\n")  # the header alone decides: nothing else is parsed
    with pytest.raises(MeshTooLargeError, match="2,000,000 faces, over the limit max_faces=1,500,000"):
        load_mesh(str(p))
