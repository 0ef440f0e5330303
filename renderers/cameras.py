"""Cameras and camera rigs (registry ``RIGS``).

Conventions: world is Y-up (the OBJ / Pix3D convention); ``Camera.view`` maps world points to OpenGL
eye coordinates (+X right, +Y up, camera looks down -Z); ``Camera.proj`` maps eye to clip space.
Pixel coordinates put (0, 0) at the top-left corner of the image, x to the right, y down; pixel
``(i, j)`` covers ``[i, i+1) x [j, j+1)``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from registries import Registry

# Blender sensor width Pix3D renders with (sensor_fit HORIZONTAL, see xingyuansun/pix3d demo.py).
PIX3D_SENSOR_WIDTH_MM = 32.0
# Pix3D camera coordinates are +X left, +Y up, +Z forward (Blender camera rotated pi about Y);
# OpenGL eye coordinates are +X right, +Y up, -Z forward: flip X and Z (a rotation, det = +1).
PIX3D_TO_GL = np.diag([-1.0, 1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: world→eye ``view`` (4x4), intrinsics in pixels, image size, clip planes."""

    view: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float = 0.01
    far: float = 100.0

    @property
    def eye(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        rot, trans = self.view[:3, :3], self.view[:3, 3]
        return -rot.T @ trans

    @property
    def proj(self) -> np.ndarray:
        """OpenGL projection matrix for these intrinsics and clip planes."""
        n, f, w, h = self.near, self.far, self.width, self.height
        return np.array([
            [2 * self.fx / w, 0, 1 - 2 * self.cx / w, 0],
            [0, 2 * self.fy / h, 2 * self.cy / h - 1, 0],
            [0, 0, -(f + n) / (f - n), -2 * f * n / (f - n)],
            [0, 0, -1, 0],
        ])

    def scaled_to(self, width: int, height: int) -> Camera:
        """The same camera rendered at another resolution (intrinsics scale with the image)."""
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                       width=int(width), height=int(height))

    def with_clip_for_sphere(self, center, radius: float) -> Camera:
        """Near/far planes that tightly enclose a bounding sphere (best depth precision)."""
        z = -(self.view[:3, :3] @ np.asarray(center, float) + self.view[:3, 3])[2]  # depth of centre
        far = max(z + radius * 1.05, 1e-3)
        near = max(z - radius * 1.05, far * 1e-4)
        return replace(self, near=float(near), far=float(far))

    def project(self, points) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) → (pixel xy (N, 2) with top-left origin, depth along the view axis (N,))."""
        pts = np.asarray(points, float).reshape(-1, 3)
        eye = pts @ self.view[:3, :3].T + self.view[:3, 3]
        depth = -eye[:, 2]
        x = self.cx + self.fx * eye[:, 0] / depth
        y = self.cy - self.fy * eye[:, 1] / depth
        return np.stack([x, y], axis=1), depth


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """World→eye matrix of a camera at ``eye`` looking at ``target`` (OpenGL convention)."""
    eye, target, up = (np.asarray(v, float) for v in (eye, target, up))
    fwd = target - eye
    fwd /= np.linalg.norm(fwd)
    if abs(np.dot(fwd, up)) > 0.999:  # looking straight up/down: any other up vector will do
        up = np.array([0.0, 0.0, -1.0]) if fwd[1] < 0 else np.array([0.0, 0.0, 1.0])
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    true_up = np.cross(right, fwd)
    view = np.eye(4)
    view[0, :3], view[1, :3], view[2, :3] = right, true_up, -fwd
    view[:3, 3] = -view[:3, :3] @ eye
    return view


def orbit_cameras(directions, width: int, height: int, center=(0, 0, 0), radius: float = 1.0,
                  fov: float = 40.0, margin: float = 1.05) -> list[Camera]:
    """Cameras on unit ``directions`` around ``center``, far enough that the bounding sphere fits.

    ``fov`` is the vertical field of view in degrees; the distance uses the narrower of the two
    fields of view, so the sphere (and so the object) stays inside the frame in every view.
    """
    fy = (height / 2) / np.tan(np.radians(fov) / 2)
    fx = fy  # square pixels
    half_min = min(np.arctan(width / 2 / fx), np.arctan(height / 2 / fy))
    dist = margin * radius / np.sin(half_min)
    center = np.asarray(center, float)
    cams = []
    for d in np.asarray(directions, float).reshape(-1, 3):
        d = d / np.linalg.norm(d)
        cam = Camera(look_at(center + dist * d, center), fx, fy, width / 2, height / 2,
                     int(width), int(height))
        cams.append(cam.with_clip_for_sphere(center, radius))
    return cams


def spread_views(n_views: int, n: int) -> list[int]:
    """``n`` view indices evenly spaced over a rig of ``n_views`` (deterministic; all of them when
    ``n >= n_views``): on a ring rig, azimuths 360°/n apart, starting at the front view."""
    if n >= n_views:
        return list(range(n_views))
    return sorted({round(i * n_views / n) % n_views for i in range(n)}) if n_views and n > 0 else []


def ring_directions(n: int, elevation: float = 30.0) -> np.ndarray:
    """``n`` azimuths evenly spaced from 0° (camera on +Z, facing the model's front) at ``elevation``°."""
    az = np.radians(np.arange(n) * 360.0 / n)
    el = np.radians(elevation)
    return np.stack([np.cos(el) * np.sin(az), np.full(n, np.sin(el)), np.cos(el) * np.cos(az)], axis=1)


def dodecahedron_directions() -> np.ndarray:
    """The 20 vertices of a regular dodecahedron: 20 evenly spread directions."""
    phi = (1 + 5 ** 0.5) / 2
    pts = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    for a in (-1 / phi, 1 / phi):
        for b in (-phi, phi):
            pts += [(0, a, b), (a, b, 0), (b, 0, a)]
    pts = np.asarray(pts, float)
    return pts / np.linalg.norm(pts, axis=1, keepdims=True)


def _ring(n: int):
    def rig(width, height, center=(0, 0, 0), radius=1.0, elevation=30.0, fov=40.0, margin=1.05):
        return orbit_cameras(ring_directions(n, elevation), width, height, center, radius, fov, margin)
    rig.__doc__ = f"{n} azimuths every {360 // n}° at ``elevation`` (default 30°) degrees."
    return rig


def sphere20(width, height, center=(0, 0, 0), radius=1.0, fov=40.0, margin=1.05):
    """20 views from the vertices of a dodecahedron (even coverage of the sphere)."""
    return orbit_cameras(dodecahedron_directions(), width, height, center, radius, fov, margin)


def pose_camera(rot_mat, trans_mat, focal_length, img_size) -> Camera:
    """Pix3D photo pose → Camera.

    ``rot_mat`` (3x3) and ``trans_mat`` (3,) map model (OBJ) coordinates to Pix3D camera
    coordinates ``p = R @ v + t`` with +X left, +Y up, +Z forward (the object has z > 0);
    ``focal_length`` is in mm for a 32 mm wide sensor, so ``f_px = focal_length / 32 * W``; the
    principal point is the image centre. A model point projects to pixel
    ``(W/2 - f_px * p_x / p_z, H/2 - f_px * p_y / p_z)`` (top-left origin).
    """
    rot = np.asarray(rot_mat, float).reshape(3, 3)
    trans = np.asarray(trans_mat, float).reshape(3)
    width, height = (int(v) for v in img_size)
    model_to_cam = np.eye(4)
    model_to_cam[:3, :3], model_to_cam[:3, 3] = rot, trans
    f_px = float(focal_length) / PIX3D_SENSOR_WIDTH_MM * width
    return Camera(PIX3D_TO_GL @ model_to_cam, f_px, f_px, width / 2, height / 2, width, height)


def pose(width, height, center=(0, 0, 0), radius=1.0, *, rot_mat, trans_mat, focal_length, img_size):
    """Rig of one Pix3D photo pose (see ``pose_camera``); rendered at the renderer's size."""
    cam = pose_camera(rot_mat, trans_mat, focal_length, img_size)
    if abs(cam.width / cam.height - width / height) > 1e-3:
        raise ValueError(f"pose img_size {tuple(img_size)} has another aspect ratio than the renderer "
                         f"size ({width}, {height}); create Renderer(size={tuple(img_size)})")
    return [cam.scaled_to(width, height).with_clip_for_sphere(center, radius)]


RIGS = Registry("render.rig", {"ring12": _ring(12), "ring8": _ring(8), "sphere20": sphere20, "pose": pose})
# Rigs that place the camera relative to the mesh (normalised by default); ``pose`` uses the mesh's own frame.
MESH_FRAME_RIGS = {"pose"}
