"""Mesh geometry for the renderer: vertex arrays with crease-aware normals, bounding spheres, and
the check that decides whether back faces may be culled."""
from __future__ import annotations

import warnings

import numpy as np
import trimesh

from .mesh import load_mesh, texture_image

CREASE_DEG = 40.0  # corners whose smooth normal leaves the face normal by more than this are flat
CULL_MAX_FACES = 500_000  # above this the closed-surface check is skipped (memory for its edge arrays)


def mesh_arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, object]:
    """Interleaved un-indexed vertex data (pos3 norm3 colour4 uv2, float32) and the texture image or None."""
    faces = np.asarray(mesh.faces)
    n = faces.size
    data = np.empty((n, 12), np.float32)
    data[:, 0:3] = np.asarray(mesh.vertices, np.float32)[faces].reshape(-1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate faces give zero normals: the shader copes
        face_n = np.repeat(np.asarray(mesh.face_normals, np.float32), 3, axis=0)
        vert_n = np.asarray(mesh.vertex_normals, np.float32)[faces].reshape(-1, 3)
    # Smooth shading except across creases (> CREASE_DEG): boxes stay boxes, spheres stay round.
    smooth = np.einsum("ij,ij->i", face_n, vert_n) > np.cos(np.radians(CREASE_DEG))
    data[:, 3:6] = np.where(smooth[:, None], vert_n, face_n)
    vis, image = mesh.visual, None
    if vis.kind == "texture" and texture_image(vis) is not None and getattr(vis, "uv", None) is not None:
        image = texture_image(vis)
        data[:, 6:10] = 1.0
        data[:, 10:12] = np.asarray(vis.uv, np.float32)[faces].reshape(-1, 2)
    else:
        if vis.kind == "face":
            colours = np.repeat(np.asarray(vis.face_colors), 3, axis=0)
        elif vis.kind == "vertex":
            colours = np.asarray(vis.vertex_colors)[faces].reshape(-1, 4)
        else:
            colours = np.asarray(load_mesh(mesh, normalize=False).visual.vertex_colors)[faces].reshape(-1, 4)
        data[:, 6:10] = colours / 255.0
        data[:, 10:12] = 0.0
    return data, image


def bounding_sphere(mesh: trimesh.Trimesh) -> tuple[np.ndarray, float]:
    verts = np.asarray(mesh.vertices, float)
    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2
    return centre, float(np.linalg.norm(verts - centre, axis=1).max()) or 1.0


def backfaces_hidden(mesh: trimesh.Trimesh, cams) -> bool:
    """True when culling back faces cannot change what is visible: every connected part of ``mesh`` is
    closed, consistently wound and oriented outwards (positive volume), and every camera sees the
    whole bounding sphere in front of its near plane (so it is outside every part and nothing is
    clipped open). A ray from outside then meets a part's front face before any of its back faces."""
    faces = np.asarray(mesh.faces, np.int64)
    n_vert = len(mesh.vertices)
    if not len(faces) or len(faces) > CULL_MAX_FACES:
        return False
    centre, radius = bounding_sphere(mesh)
    for cam in cams:
        depth = -(np.asarray(cam.view, float) @ np.append(centre, 1.0))[2]
        if depth - radius <= cam.near:
            return False
    # Closed and consistently wound <=> each directed edge occurs once and so does its reverse.
    src, dst = faces.ravel(), np.roll(faces, -1, axis=1).ravel()
    edges = np.sort(src * n_vert + dst)
    if (np.diff(edges) == 0).any() or not np.array_equal(edges, np.sort(dst * n_vert + src)):
        return False
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n_vert, n_vert))
    _, labels = connected_components(graph, directed=False)
    tri = np.asarray(mesh.vertices, float)[faces]
    six_vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))
    per_part = np.bincount(labels[faces[:, 0]], weights=six_vol)
    return bool((per_part[np.unique(labels[faces[:, 0]])] > 0).all())
