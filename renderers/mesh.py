"""Mesh loading: OBJ+MTL (per-material Kd colours, UV textures, vertex colours), merged scenes,
validation with specific reasons, and normalisation (bbox centre → origin, bounding radius 1)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import trimesh

from .errors import MeshLoadError, MeshTooLargeError, MeshWarning

DEFAULT_MAX_FACES = 1_500_000  # above this a shape fails fast (llvmpipe memory/time); raise it per config
DEFAULT_COLOR = (179, 179, 179, 255)  # light grey for parts without any material or colour


def _warn(message: str) -> None:
    warnings.warn(message, MeshWarning, stacklevel=3)


def _prescan_obj(path: Path, max_faces: int) -> None:
    """Cheap checks on the raw OBJ text before trimesh parses it: face count, .mtl and textures."""
    data = path.read_bytes()
    n_faces = data.count(b"\nf ") + data.startswith(b"f ")
    if n_faces > max_faces:
        raise MeshTooLargeError(f"{path}: {n_faces:,} faces, over the limit max_faces={max_faces:,}; "
                                "raise render.max_faces to render it")
    libs = re.findall(rb"^\s*mtllib\s+(.+?)\s*$", data, re.M)
    if not libs and re.search(rb"^\s*usemtl\s", data, re.M):
        _warn(f"{path}: uses materials but names no mtllib; default colour used")
    for lib in libs:
        mtl = path.parent / lib.decode("utf-8", "replace")
        if not mtl.is_file():
            _warn(f"{path}: material library {mtl.name!r} not found; default colour used")
            continue
        for tex in re.findall(rb"^\s*map_Kd\s+(?:-\S+\s+\S+\s+)*(.+?)\s*$", mtl.read_bytes(), re.M):
            if not (mtl.parent / tex.decode("utf-8", "replace")).is_file():
                _warn(f"{mtl}: texture {tex.decode('utf-8', 'replace')!r} not found; material colour used")


def _read_parts(path: Path, max_faces: int) -> list[trimesh.Trimesh]:
    if not path.exists():
        raise MeshLoadError(f"{path}: file not found")
    if not path.is_file():
        raise MeshLoadError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise MeshLoadError(f"{path}: empty file")
    if path.suffix.lower() == ".obj":
        _prescan_obj(path, max_faces)
    if path.suffix.lower() == ".off":  # ModelNet's merged "OFF490 518 0" headers; errors name the line
        from .off import read_off
        part = read_off(path, max_faces=max_faces)
        if part.visual.kind is None:  # OFF has no materials: the default colour, without a warning
            part.visual.vertex_colors = np.tile(np.asarray(DEFAULT_COLOR, np.uint8), (len(part.vertices), 1))
        return [part]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scene = trimesh.load_scene(str(path), process=False)
    except IndexError as exc:
        raise MeshLoadError(f"{path}: faces index missing vertices ({exc})") from exc
    except Exception as exc:  # trimesh raises many types for unparsable input
        raise MeshLoadError(f"{path}: could not parse as a mesh ({type(exc).__name__}: {exc})") from exc
    return _scene_parts(scene, str(path))


def _scene_parts(scene: trimesh.Scene, name: str) -> list[trimesh.Trimesh]:
    dumped = scene.dump(concatenate=False) if len(scene.geometry) else []
    parts = [g for g in dumped if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not parts:
        n_vertices = sum(len(getattr(g, "vertices", ())) for g in scene.geometry.values())
        if n_vertices:
            raise MeshLoadError(f"{name}: no faces ({n_vertices} vertices only)")
        raise MeshLoadError(f"{name}: no geometry found (not a mesh file, or corrupt)")
    return parts


def _validate(parts: list[trimesh.Trimesh], name: str, max_faces: int) -> None:
    n_faces = sum(len(p.faces) for p in parts)
    if n_faces > max_faces:
        raise MeshTooLargeError(f"{name}: {n_faces:,} faces, over the limit max_faces={max_faces:,}; "
                                "raise render.max_faces to render it")
    for p in parts:
        faces = np.asarray(p.faces)
        if faces.size and (faces.min() < 0 or faces.max() >= len(p.vertices)):
            raise MeshLoadError(f"{name}: faces index missing vertices (index {int(faces.max())} "
                                f"with {len(p.vertices)} vertices)")
        bad = ~np.isfinite(np.asarray(p.vertices)).all(axis=1)
        if bad.any():
            raise MeshLoadError(f"{name}: non-finite vertex coordinates (NaN/inf) "
                                f"in {int(bad.sum())} vertices")
    verts = np.concatenate([np.asarray(p.vertices, float) for p in parts])
    scale = max(float(np.ptp(verts, axis=0).max()), 1e-300)
    area = sum(float(np.linalg.norm(np.cross(p.vertices[p.faces[:, 1]] - p.vertices[p.faces[:, 0]],
                                                p.vertices[p.faces[:, 2]] - p.vertices[p.faces[:, 0]]),
                                       axis=1).max()) for p in parts)
    if area <= 1e-12 * scale * scale:
        raise MeshLoadError(f"{name}: all {n_faces} faces are degenerate (zero area)")


def _has_image(part: trimesh.Trimesh) -> bool:
    vis = part.visual
    return (vis.kind == "texture" and getattr(vis, "uv", None) is not None
            and len(vis.uv) == len(part.vertices) and texture_image(vis) is not None)


def texture_image(visual):
    """The PIL image of a TextureVisuals' material (SimpleMaterial.image or PBR baseColorTexture)."""
    mat = getattr(visual, "material", None)
    return getattr(mat, "image", None) or getattr(mat, "baseColorTexture", None)


def _to_colour(part: trimesh.Trimesh, name: str) -> trimesh.Trimesh:
    """Same part with ColorVisuals (material Kd / sampled texture / default grey)."""
    vis = part.visual
    if vis.kind in ("vertex", "face"):
        return part
    if vis.kind == "texture":
        uv, image = getattr(vis, "uv", None), texture_image(vis)
        if uv is not None and image is not None and len(uv) == len(part.vertices):
            colours = trimesh.visual.color.uv_to_color(uv, image)
        else:
            main = getattr(vis.material, "main_color", None)
            main = DEFAULT_COLOR if main is None else main
            colours = np.tile(np.asarray(main, np.uint8), (len(part.vertices), 1))
    else:
        _warn(f"{name}: a part has no material or colour; default grey used")
        colours = np.tile(np.asarray(DEFAULT_COLOR, np.uint8), (len(part.vertices), 1))
    return trimesh.Trimesh(part.vertices, part.faces, vertex_colors=colours, process=False)


def _merge(parts: list[trimesh.Trimesh], name: str) -> trimesh.Trimesh:
    textured = [_has_image(p) for p in parts]
    if len(parts) == 1:
        return parts[0] if textured[0] else _to_colour(parts[0], name)
    if all(textured):
        try:
            return trimesh.util.concatenate(parts)  # packs the textures into one atlas
        except Exception as exc:  # noqa: BLE001 - fall back to baked colours, with a warning
            _warn(f"{name}: textures could not be packed ({exc}); baked to vertex colours")
    elif any(textured):
        _warn(f"{name}: textured and untextured parts mixed; textures baked to vertex colours")
    return trimesh.util.concatenate([_to_colour(p, name) for p in parts])


def normalize_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Move the bounding-box centre to the origin and scale the bounding sphere (about it) to radius 1."""
    verts = np.asarray(mesh.vertices, float)
    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2
    radius = float(np.linalg.norm(verts - centre, axis=1).max())
    mesh.vertices = (verts - centre) / (radius if radius > 0 else 1.0)
    return mesh


def load_mesh(source, normalize: bool = True, *, max_faces: int = DEFAULT_MAX_FACES) -> trimesh.Trimesh:
    """Load a mesh file (OBJ+MTL or anything trimesh reads) or a trimesh object as one Trimesh.

    Parts are merged (per-material colours become vertex colours; textures are kept when every part
    has one). Bad input raises ``MeshLoadError`` naming the file and the reason; defaulted things
    (missing .mtl or texture, no material) emit a ``MeshWarning``. ``normalize``: see ``normalize_mesh``.
    """
    if isinstance(source, trimesh.Trimesh):
        name, parts = "<trimesh>", [source.copy()]
    elif isinstance(source, trimesh.Scene):
        name = "<scene>"
        parts = _scene_parts(source, name)
    else:
        name = str(source)
        parts = _read_parts(Path(source), max_faces)
    _validate(parts, name, max_faces)
    mesh = _merge(parts, name)
    return normalize_mesh(mesh) if normalize else mesh
