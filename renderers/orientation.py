"""How a mesh is turned before it is framed: its file's up axis, and a seeded rotation for robustness tests.

The renderer's world is Y-up (cameras.py). A file that is Z-up (ModelNet's OFF files) or X-up is
turned upright by :func:`up_axis_matrix`; :func:`random_rotation` draws the rotation of one shape for
a rotation-robustness evaluation (MVTN's protocol): ``"z"`` turns it about the up axis (the world's
Y), ``"so3"`` uniformly over all 3-D rotations. The draw depends only on (kind, seed, shape key),
so every run, process and shard sees the same rotation of a shape.
"""
from __future__ import annotations

import hashlib

import numpy as np

ROTATIONS = ("z", "so3")
# Proper rotations (det +1) taking each file convention's up direction to +Y.
_UP = {
    "y": np.eye(3),
    "z": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),  # (x, y, z) -> (x, z, -y): +Z up becomes +Y
    "x": np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]),  # +X up becomes +Y
}


def up_axis_matrix(axis: str) -> np.ndarray:
    """(3, 3) rotation taking a file whose up axis is ``axis`` (``x`` | ``y`` | ``z``) to Y-up."""
    try:
        return _UP[str(axis).lower()].copy()
    except KeyError:
        raise ValueError(f"up axis {axis!r} is not one of x, y, z") from None


def random_rotation(kind: str, seed: int, key: str) -> np.ndarray:
    """(3, 3) rotation of shape ``key`` for ``kind`` (``z`` | ``so3``), drawn from (kind, seed, key)."""
    if kind not in ROTATIONS:
        raise ValueError(f"rotation {kind!r} is not one of {', '.join(ROTATIONS)}")
    digest = hashlib.sha256(f"{kind}\0{int(seed)}\0{key}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    if kind == "z":  # about the world's up axis (Y)
        a = rng.uniform(0.0, 2 * np.pi)
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    # Uniform (Haar) rotation: a unit quaternion with a uniformly random direction in 4-D
    w, x, y, z = (q := rng.normal(size=4)) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def as_orientation(matrix) -> tuple | None:
    """A ``RenderJob.orientation`` (9 floats, row-major) of a (3, 3) matrix; None for the identity."""
    m = np.asarray(matrix, float).reshape(3, 3)
    return None if np.allclose(m, np.eye(3)) else tuple(round(float(v), 12) for v in m.ravel())


def oriented(mesh, orientation):
    """``mesh`` (a Trimesh, changed in place and returned) turned by ``orientation`` (normals too)."""
    if orientation is not None:
        transform = np.eye(4)
        transform[:3, :3] = np.asarray(orientation, float).reshape(3, 3)
        mesh.apply_transform(transform)
    return mesh
