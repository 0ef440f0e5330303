"""OFF (Object File Format) reader: ModelNet's meshes, broken headers included.

Some ModelNet files merge the keyword with the counts (``OFF490 518 0`` on one line instead of
``OFF`` / ``490 518 0``; older trimesh releases took the counts line for a vertex and lost one).
This reader handles that, ``#`` comments and blank lines, a missing keyword, polygon faces
(triangulated as fans), optional vertex (``COFF``) or face colours, and reads the header alone
(:func:`off_header`) for listings. Bad input raises one ``MeshLoadError`` naming the file, the line
and what was expected there.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import trimesh

from .errors import MeshLoadError, MeshTooLargeError

_KEYWORD = re.compile(r"(ST)?(C)?(N)?(4)?(n)?OFF", re.I)
HEADER_BYTES = 4096  # off_header reads no further: the keyword and counts come first


class OffHeader(NamedTuple):
    """An OFF file's header: counts, whether the keyword and counts share a line, the keyword's flags."""

    n_vertices: int
    n_faces: int
    merged: bool
    colours: bool  # C: vertex colours follow the coordinates (after normals when N)
    normals: bool  # N: vertex normals follow the coordinates
    body: int  # index (among the meaningful lines) of the first vertex line


def _fail(path, line, problem: str):
    raise MeshLoadError(f"{path}: line {line}: {problem}")


def _meaningful(text: str) -> tuple[list[str], list[int]]:
    """The lines with content (comments and blanks dropped) and their 1-based line numbers."""
    lines, numbers = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if "#" in line:
            line = line[:line.index("#")]
        line = line.strip()
        if line:
            lines.append(line)
            numbers.append(number)
    return lines, numbers


def _header(path, lines: list[str], numbers: list[int]) -> OffHeader:
    if not lines:
        raise MeshLoadError(f"{path}: no content (expected the 'OFF' keyword and counts)")
    m = _KEYWORD.match(lines[0])
    flags = (False, False)
    if m:
        if m.group(4) or m.group(5):
            _fail(path, numbers[0], f"{m.group(0)!r}: only 3-D OFF files are supported "
                                    "(no '4' or 'n' prefix)")
        flags = (bool(m.group(2)), bool(m.group(3)))
        rest = lines[0][m.end():].strip()
        if rest:  # ModelNet's merged header: "OFF490 518 0"
            counts, at, body, merged = rest, numbers[0], 1, True
        elif len(lines) > 1:
            counts, at, body, merged = lines[1], numbers[1], 2, False
        else:
            _fail(path, numbers[0], "the file ends after the keyword (expected 'nVertices nFaces nEdges')")
    else:  # some exporters omit the keyword: the counts come first
        counts, at, body, merged = lines[0], numbers[0], 1, False
    tokens = counts.split()
    if len(tokens) < 2 or not all(t.isdigit() for t in tokens[:3]):
        what = "the 'OFF' keyword or " if not m else ""
        _fail(path, at, f"{counts[:60]!r}: expected {what}the counts 'nVertices nFaces nEdges'")
    return OffHeader(int(tokens[0]), int(tokens[1]), merged, *flags, body)


def off_header(path) -> OffHeader:
    """The header of the OFF file ``path``, from its first few KB (cheap: for listings and checks)."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
    text = head.decode("latin-1")
    if len(head) == HEADER_BYTES:
        text = text[:text.rfind("\n") + 1] if "\n" in text else text  # drop a cut-off last line
    lines, numbers = _meaningful(text)
    return _header(path, lines, numbers)


def _numbers(path, rows: list[list[str]], numbers: list[int], what: str, dtype) -> None:
    """Raise the error naming the first row of ``rows`` that is not all numbers."""
    for row, number in zip(rows, numbers, strict=True):
        try:
            np.asarray(row, dtype=dtype)
        except ValueError:
            _fail(path, number, f"{' '.join(row)[:60]!r}: expected numbers ({what})")
    raise MeshLoadError(f"{path}: expected numbers ({what})")


def _colours(values: np.ndarray) -> np.ndarray:
    """RGB(A) rows as uint8: values in [0, 1] are scaled, 0..255 taken as they are; alpha added."""
    values = np.asarray(values, dtype=np.float64)
    if values.size and values.max() <= 1.0:
        values = values * 255.0
    if values.shape[1] == 3:
        values = np.hstack([values, np.full((len(values), 1), 255.0)])
    return np.clip(np.round(values[:, :4]), 0, 255).astype(np.uint8)


def _vertices(path, header: OffHeader, lines, numbers):
    start, end = header.body, header.body + header.n_vertices
    if len(lines) < end:
        _fail(path, numbers[-1], f"the file ends after {max(len(lines) - start, 0)} of "
                                 f"{header.n_vertices} vertices")
    rows = [line.split() for line in lines[start:end]]
    width = min(map(len, rows))
    if width < 3:
        i = next(i for i, r in enumerate(rows) if len(r) < 3)
        _fail(path, numbers[start + i], f"{lines[start + i][:60]!r}: a vertex needs x y z")
    try:
        values = np.array([r[:width] for r in rows], dtype=np.float64)
    except ValueError:
        _numbers(path, rows, numbers[start:end], "x y z", np.float64)
    offset = 6 if header.normals else 3
    colours = None
    if header.colours and width >= offset + 3:
        colours = _colours(values[:, offset:min(width, offset + 4)])
    bad = ~np.isfinite(values[:, :3]).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        _fail(path, numbers[start + i], f"{lines[start + i][:60]!r}: non-finite vertex coordinate")
    return values[:, :3], colours


def _faces(path, header: OffHeader, lines, numbers):
    start = header.body + header.n_vertices
    end = start + header.n_faces
    if len(lines) < end:
        _fail(path, numbers[-1], f"the file ends after {max(len(lines) - start, 0)} of "
                                 f"{header.n_faces} faces")
    rows = [line.split() for line in lines[start:end]]
    if rows and all(len(r) == 4 and r[0] == "3" for r in rows):  # the common case: plain triangles
        try:
            return np.array(rows, dtype=np.int64)[:, 1:], None, np.arange(len(rows))
        except ValueError:
            _numbers(path, rows, numbers[start:end], "vertex indices", np.int64)
    tris, owner, colours = [], [], []
    for i, row in enumerate(rows):
        number = numbers[start + i]
        try:
            n = int(row[0])
            idx = [int(t) for t in row[1:1 + n]]
        except ValueError:
            _fail(path, number, f"{lines[start + i][:60]!r}: expected 'n i1 ... in' (vertex indices)")
        if n < 3:
            _fail(path, number, f"{lines[start + i][:60]!r}: a face needs at least 3 vertices, not {n}")
        if len(idx) < n:
            _fail(path, number, f"{lines[start + i][:60]!r}: the face declares {n} vertices "
                                f"but lists {len(idx)}")
        tris += [(idx[0], idx[j], idx[j + 1]) for j in range(1, n - 1)]  # a fan: polygons are convex
        owner += [i] * (n - 2)
        extra = row[1 + n:]
        if len(extra) in (3, 4):
            try:
                colours.append([float(t) for t in extra])
            except ValueError:
                _fail(path, number, f"{' '.join(extra)!r}: expected a face colour 'r g b [a]'")
    faces = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    face_colours = None
    if colours and len(colours) == len(rows):
        face_colours = _colours(np.asarray(colours))[np.asarray(owner)]
    return faces, face_colours, np.asarray(owner, dtype=np.int64)


def read_off(path, max_faces: int | None = None) -> trimesh.Trimesh:
    """The OFF file ``path`` as one Trimesh (``process=False``: vertices as written).

    max_faces: raise MeshTooLargeError before parsing when the header declares more faces.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise MeshLoadError(f"{path}: cannot read ({exc})") from exc
    lines, numbers = _meaningful(text)
    header = _header(path, lines, numbers)
    if max_faces is not None and header.n_faces > max_faces:
        raise MeshTooLargeError(f"{path}: {header.n_faces:,} faces, over the limit max_faces={max_faces:,}; "
                                "raise render.max_faces to render it")
    if header.n_vertices == 0 or header.n_faces == 0:
        raise MeshLoadError(f"{path}: no faces ({header.n_vertices} vertices, {header.n_faces} faces "
                            "in the header)")
    vertices, vertex_colours = _vertices(path, header, lines, numbers)
    faces, face_colours, owner = _faces(path, header, lines, numbers)
    bad = (faces < 0) | (faces >= len(vertices))
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        index = int(faces[row][bad[row]][0])
        line = numbers[header.body + header.n_vertices + int(owner[row])]  # owner: triangle -> face line
        _fail(path, line, f"vertex index {index} out of range ({len(vertices)} vertices, indices from 0)")
    return trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=vertex_colours,
                           face_colors=face_colours if vertex_colours is None else None, process=False)
