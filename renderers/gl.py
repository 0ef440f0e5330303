"""Headless OpenGL renderer (ModernGL on EGL): one context, many meshes, all views of a mesh in
one atlas framebuffer with one upload and one read-back."""
from __future__ import annotations

import functools
import os
import threading
import warnings
from dataclasses import dataclass, replace
from importlib import resources
from typing import NamedTuple

import numpy as np
import trimesh

from .cameras import MESH_FRAME_RIGS, RIGS, Camera
from .errors import EGLUnavailableError
from .mesh import DEFAULT_MAX_FACES, load_mesh, texture_image

RENDERER_VERSION = "2"  # bump whenever a change alters pixels: it is part of render_config_id
CREASE_DEG = 40.0  # corners whose smooth normal leaves the face normal by more than this are flat
EGL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri"
MAX_ATLAS = 4096  # atlas side in pixels (bounds MSAA memory); more views than fit take several passes
CULL_MAX_FACES = 500_000  # above this the closed-surface check is skipped (memory for its edge arrays)


@dataclass(frozen=True)
class Lighting:
    """Light rig (intensities in [0, 1]); ``key_dir`` points towards the key light in camera space
    (x right, y up, z towards the viewer), so every view is lit the same way."""

    ambient: float = 0.3
    key_light: float = 0.55
    key_dir: tuple = (-0.4, 0.7, 0.6)
    headlight: float = 0.3
    specular: float = 0.15
    shininess: float = 32.0


class RenderOutput(NamedTuple):
    """What ``Renderer.render`` returns when depth or normals are requested.

    images: uint8 (V, H, W, 3|4); depth: float32 (V, H, W) eye-space depth along the view axis in
    mesh units, ``inf`` on background; normals: float32 (V, H, W, 3) world-space unit normals
    facing the camera, 0 on background. Unrequested outputs are ``None``.
    """

    images: np.ndarray
    depth: np.ndarray | None
    normals: np.ndarray | None


def _shader(name: str, *defines: str) -> str:
    text = resources.files("renderers").joinpath("shaders", name).read_text(encoding="utf-8")
    if not defines:
        return text
    version, rest = text.split("\n", 1)  # #defines must follow the #version line
    return "\n".join([version, *(f"#define {d}" for d in defines), rest])


def _preload_bundled_llvm() -> None:
    """Load triton's libtriton (its own static LLVM) before Mesa's llvmpipe initialises LLVM 15.

    In the other order, a later ``import triton`` (``torch._dynamo`` does it, e.g. via torchvision
    when a process renders then trains) segfaults the whole process; this order is safe. Costs
    ~0.1 s once per process, and nothing where triton is not installed."""
    import ctypes
    import importlib.util

    try:
        spec = importlib.util.find_spec("triton")
    except (ImportError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        return
    for folder in spec.submodule_search_locations:
        path = f"{folder}/_C/libtriton.so"
        try:
            ctypes.CDLL(path)
            return
        except OSError:
            continue


class GLContextLostError(EGLUnavailableError):
    """Our OpenGL context died (another EGL user of the process terminated the shared EGL display) and
    the one fresh context made to replace it did not work either."""


class _ContextNotCurrent(Exception):
    """Internal: entering our context did not make it current (its EGL display was terminated)."""


CONTEXT_LOST_HINT = (
    "another EGL user in this process terminated the EGL display every context shares (pyrender's "
    "OffscreenRenderer.delete() calls eglTerminate): keep such renderers alive instead of deleting them")


@functools.cache
def _egl_get_current_context():
    """libEGL's ``eglGetCurrentContext`` (the library glcontext loads), or None where it cannot be had."""
    import ctypes
    from ctypes.util import find_library

    try:
        lib = ctypes.CDLL(os.environ.get("GLCONTEXT_LINUX_LIBEGL") or find_library("EGL") or "libEGL.so.1")
        fn = lib.eglGetCurrentContext
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_void_p, []
    return fn


def current_egl_context() -> int | None:
    """The EGL context current on this thread (0: none), or None when libEGL cannot be asked.

    A thread-local read inside libEGL, not a GL call: cheap enough to run once per render."""
    fn = _egl_get_current_context()
    return None if fn is None else (fn() or 0)


def create_context():
    """A standalone headless OpenGL 3.3+ context on EGL, or one clear error naming the fix."""
    import moderngl

    _preload_bundled_llvm()
    try:
        return moderngl.create_standalone_context(backend="egl")
    except Exception as exc:  # glcontext raises plain Exceptions for a missing libEGL / driver
        raise EGLUnavailableError(
            f"could not create a headless OpenGL context on EGL ({exc}). Install the EGL driver "
            f"packages: `apt-get install {EGL_PACKAGES}` (Debian/Ubuntu), or on NVIDIA the driver's "
            "libEGL_nvidia.") from exc


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


def _sphere(mesh: trimesh.Trimesh) -> tuple[np.ndarray, float]:
    verts = np.asarray(mesh.vertices, float)
    centre = (verts.min(axis=0) + verts.max(axis=0)) / 2
    return centre, float(np.linalg.norm(verts - centre, axis=1).max()) or 1.0


class Renderer:
    """One EGL context reused for many meshes.

    size: int (square) or (W, H); background: RGB in [0, 1]; msaa: samples (0/1 = off);
    lighting: a ``Lighting`` (or override its fields with keyword arguments ambient=, key_light=, ...).
    """

    def __init__(self, size=224, background=(1.0, 1.0, 1.0), msaa: int = 4, lighting: Lighting | None = None,
                 max_faces: int = DEFAULT_MAX_FACES, **light_overrides):
        square = np.isscalar(size)
        self.width, self.height = (int(size), int(size)) if square else (int(size[0]), int(size[1]))
        self.background = tuple(float(c) for c in background)[:3]  # a 4th (alpha) value is ignored
        self.msaa = int(msaa)
        self.lighting = _lighting(lighting or Lighting(), **light_overrides)
        self.max_faces = max_faces
        self._lock = threading.Lock()
        self._rigs: dict[tuple, list] = {}
        self.ctx = None
        self._stale = True  # no usable context yet (or a dead one to replace)
        try:
            self._init_gl()
        except _ContextNotCurrent as exc:
            raise GLContextLostError(f"{exc}; likely cause: {CONTEXT_LOST_HINT}") from exc

    def _init_gl(self):
        """Create the context and everything in it (shaders, white texture; framebuffers on demand)."""
        self.ctx = create_context()
        self._fbos: dict[tuple, tuple] = {}
        with self.ctx:
            # Our EGL context handle: entering ``ctx`` makes it current (glcontext ignores a failed
            # eglMakeCurrent, so ``_draw`` compares this handle with the current one). None: unknown.
            self._egl_context = current_egl_context()
            if self._egl_context == 0:
                raise _ContextNotCurrent("a new OpenGL context could not be made current")
            # Two variants of the shading program: llvmpipe runs the fragment shader once per MSAA
            # sample, so the untextured one (no sampler fetch; v_color * white texel == v_color
            # exactly) is a measurable saving for the common untextured mesh.
            self.prog = self.ctx.program(vertex_shader=_shader("mesh.vert"),
                                         fragment_shader=_shader("mesh.frag", "TEXTURED"))
            self.flat_prog = self.ctx.program(vertex_shader=_shader("mesh.vert"),
                                              fragment_shader=_shader("mesh.frag"))
            self.geom_prog = self.ctx.program(vertex_shader=_shader("mesh.vert"),
                                              fragment_shader=_shader("geom.frag"))
            self.white = self.ctx.texture((1, 1), 4, bytes([255, 255, 255, 255]))
        self._stale = False

    def _replace_context(self):
        """Drop a dead context and make a fresh one (the rig cache stays: it holds no GL objects)."""
        old, self.ctx, self._stale = self.ctx, None, True
        if old is not None:
            # Before creating the new one: a freed EGL handle can come back as the new context's, and
            # a late eglDestroyContext on it would then destroy the new context. On a terminated
            # display this destroy is a no-op error inside EGL; the GL objects die with the display.
            try:
                old.release()
            except Exception:  # noqa: BLE001 - nothing left to free
                pass
        self._init_gl()

    def _context_lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` came from a dead context. Runs only after a failure, never per render."""
        if isinstance(exc, _ContextNotCurrent):
            return True
        import moderngl

        if not isinstance(exc, moderngl.Error):
            return False
        if self.ctx is None:
            return True
        try:
            with self.ctx:
                if self._egl_context is not None and current_egl_context() != self._egl_context:
                    return True
                self.ctx.buffer(reserve=4).release()  # the call that fails first in a dead context
        except moderngl.Error:
            return True
        return False

    def _with_live_context(self, draw):
        """``draw()`` under the lock; if our context turns out dead, replace it once and draw again.

        A dead context shows as ``cannot create buffer`` (nothing current) or, worse, as black images
        drawn into the other library's destroyed context that EGL leaves current; ``_draw`` checks
        that our context is current before any GL call. A second failure raises one clear error."""
        with self._lock:
            replaced = False
            while True:
                try:
                    if self._stale:
                        replaced = True
                        self._replace_context()
                    return draw()
                except Exception as exc:
                    if not self._context_lost(exc):
                        raise
                    self._stale = True
                    if replaced:
                        raise GLContextLostError(
                            f"the OpenGL context was lost and a fresh one failed too ({exc}); likely cause: "
                            f"{CONTEXT_LOST_HINT}") from exc

    def __repr__(self):
        return f"Renderer(size=({self.width}, {self.height}), msaa={self.msaa}, background={self.background})"

    # -- GL resources ---------------------------------------------------------------------------
    def _targets(self, cols: int, rows: int):
        key = (cols, rows)
        if key not in self._fbos:
            size = (cols * self.width, rows * self.height)
            samples = self.msaa if self.msaa > 1 else 0
            ms = self.ctx.framebuffer(self.ctx.renderbuffer(size, 4, samples=samples),
                                      self.ctx.depth_renderbuffer(size, samples=samples))
            resolved = self.ctx.framebuffer(self.ctx.renderbuffer(size, 4)) if samples else ms
            geom = self.ctx.framebuffer(self.ctx.renderbuffer(size, 4, dtype="f4"),
                                        self.ctx.depth_renderbuffer(size))
            self._fbos[key] = (ms, resolved, geom)
        return self._fbos[key]

    def _upload(self, mesh):
        data, image = mesh_arrays(mesh)
        vbo = self.ctx.buffer(data.tobytes())
        fmt = "3f 3f 4f 2f"
        attrs = ("in_pos", "in_norm", "in_color", "in_uv")
        shade = self.prog if image is not None else self.flat_prog
        vaos = [_vao(self.ctx, p, vbo, fmt, attrs) for p in (shade, self.geom_prog)]
        tex = self.white
        if image is not None:
            img = image.convert("RGBA").transpose(1)  # FLIP_TOP_BOTTOM: GL textures start at the bottom row
            tex = self.ctx.texture(img.size, 4, img.tobytes())
            tex.build_mipmaps()
            tex.repeat_x = tex.repeat_y = True
        return vbo, vaos, tex

    # -- rendering ------------------------------------------------------------------------------
    def cameras(self, mesh: trimesh.Trimesh, rig="ring12", **rig_options) -> list[Camera]:
        """The rig's cameras for this (loaded) mesh at this renderer's size."""
        if callable(rig):
            rig_fn = rig
        elif rig in RIGS:
            rig_fn = RIGS[rig]
        else:
            raise ValueError(f"unknown rig {rig!r}; choose one of {sorted(RIGS)}")
        centre, radius = _sphere(mesh)
        try:  # normalised meshes all share centre 0 / radius 1: build the rig once (look_at is slow)
            key = (rig, centre.tobytes(), radius, tuple(sorted(rig_options.items())))
            hash(key)
        except TypeError:  # array-valued options (the pose rig): not cacheable, and cheap anyway
            return rig_fn(self.width, self.height, centre, radius, **rig_options)
        if key not in self._rigs:
            if len(self._rigs) >= 256:
                self._rigs.clear()
            cams = rig_fn(self.width, self.height, centre, radius, **rig_options)
            for cam in cams:
                cam.view.flags.writeable = False  # shared between calls: an in-place edit fails loudly
            self._rigs[key] = cams
        return list(self._rigs[key])  # Cameras are frozen; the list is the caller's

    def render(self, mesh, rig="ring12", *, normalize: bool | None = None, rgba: bool = False,
               depth: bool = False, normals: bool = False, ambient: float | None = None,
               key_light: float | None = None, **rig_options):
        """Render every view of ``rig`` for ``mesh`` (a path, Trimesh or Scene).

        Returns uint8 (V, H, W, 3), or (V, H, W, 4) with ``rgba`` (alpha = object coverage, a mask);
        with ``depth`` or ``normals`` a ``RenderOutput(images, depth, normals)``.
        ``normalize`` defaults to True, and to False for ``rig="pose"`` (mesh in its own frame, like a
        Pix3D photo). ``ambient`` / ``key_light`` override the lighting intensities for this call.
        """
        if normalize is None:
            normalize = rig not in MESH_FRAME_RIGS
        mesh = load_mesh(mesh, normalize=normalize, max_faces=self.max_faces)
        cams = self.cameras(mesh, rig, **rig_options)
        light = _lighting(self.lighting, ambient=ambient, key_light=key_light)
        cull = backfaces_hidden(mesh, cams)
        images, geoms = self._with_live_context(
            lambda: self._draw(mesh, cams, light, depth or normals, 4 if rgba else 3, cull))
        images = images[0] if len(images) == 1 else np.concatenate(images)
        if not (depth or normals):
            return images
        geom = np.concatenate(geoms)
        d = geom[..., 3].copy()
        d[d <= 0] = np.inf
        return RenderOutput(images, d if depth else None,
                            np.ascontiguousarray(geom[..., :3]) if normals else None)

    def _draw(self, mesh, cams, light, want_geom, components, cull):
        with self.ctx:
            if self._egl_context is not None and current_egl_context() != self._egl_context:
                raise _ContextNotCurrent("our OpenGL context could not be made current")
            vbo, vaos, tex = self._upload(mesh)
            try:
                images, geoms = [], []
                per_pass = max(1, MAX_ATLAS // self.width) * max(1, MAX_ATLAS // self.height)
                for start in range(0, len(cams), per_pass):
                    chunk = cams[start:start + per_pass]
                    img, geom = self._render_pass(vaos, tex, chunk, light, want_geom, components, cull)
                    images.append(img)
                    geoms.append(geom)
            finally:
                for vao in vaos:
                    vao.release()
                vbo.release()
                if tex is not self.white:
                    tex.release()
        return images, geoms

    def _render_pass(self, vaos, tex, cams, light, want_geom, components, cull=False):
        w, h = self.width, self.height
        cols = min(len(cams), max(1, MAX_ATLAS // w))
        rows = -(-len(cams) // cols)
        ms, resolved, geom_fbo = self._targets(cols, rows)
        ctx = self.ctx
        ctx.enable(ctx.DEPTH_TEST)
        # Two-sided by default (inconsistent winding); back faces are culled only where they are
        # provably hidden (closed outward surfaces seen from outside): same pixels, about half
        # the fragments, which llvmpipe shades per MSAA sample.
        (ctx.enable if cull else ctx.disable)(ctx.CULL_FACE)
        ms.use()
        ms.clear(*self.background, 0.0, depth=1.0)
        prog = vaos[0].program
        if "u_tex" in prog:
            tex.use(0)
            prog["u_tex"].value = 0
        for name, value in (("u_ambient", light.ambient), ("u_key", light.key_light),
                            ("u_head", light.headlight), ("u_specular", light.specular),
                            ("u_shininess", light.shininess)):
            if name in prog:
                prog[name].value = float(value)
        key_cam = np.asarray(light.key_dir, float)
        for i, cam in enumerate(cams):
            ms.viewport = ((i % cols) * w, (i // cols) * h, w, h)
            _set_camera(prog, cam)
            if "u_key_dir" in prog:
                prog["u_key_dir"].value = tuple(cam.view[:3, :3].T @ key_cam)
            vaos[0].render()
        if resolved is not ms:
            ctx.copy_framebuffer(resolved, ms)
        raw = np.frombuffer(resolved.read(components=components, alignment=1), np.uint8)
        atlas = raw.reshape(rows * h, cols * w, components)[::-1]
        images = _tiles(atlas, len(cams), cols, w, h)
        geom = None
        if want_geom:
            geom_fbo.use()
            geom_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            for i, cam in enumerate(cams):
                geom_fbo.viewport = ((i % cols) * w, (i // cols) * h, w, h)
                _set_camera(self.geom_prog, cam)
                vaos[1].render()
            raw = np.frombuffer(geom_fbo.read(components=4, dtype="f4", alignment=1), np.float32)
            geom = _tiles(raw.reshape(rows * h, cols * w, 4)[::-1], len(cams), cols, w, h)
        return images, geom

    def release(self):
        """Free the GL context (the renderer is unusable afterwards)."""
        if self.ctx is not None:
            self.ctx.release()


def backfaces_hidden(mesh: trimesh.Trimesh, cams) -> bool:
    """True when culling back faces cannot change what is visible: every connected part of ``mesh`` is
    closed, consistently wound and oriented outwards (positive volume), and every camera sees the
    whole bounding sphere in front of its near plane (so it is outside every part and nothing is
    clipped open). A ray from outside then meets a part's front face before any of its back faces."""
    faces = np.asarray(mesh.faces, np.int64)
    n_vert = len(mesh.vertices)
    if not len(faces) or len(faces) > CULL_MAX_FACES:
        return False
    centre, radius = _sphere(mesh)
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


def _vao(ctx, prog, vbo, fmt, attrs):
    # Attributes the GLSL compiler optimised away must be skipped ("x" padding) or moderngl refuses.
    sizes = fmt.split()
    spec = " ".join(s if a in prog else f"{int(s[0]) * 4}x" for s, a in zip(sizes, attrs, strict=True))
    return ctx.vertex_array(prog, [(vbo, spec, *[a for a in attrs if a in prog])])


def _set_camera(prog, cam: Camera):
    prog["u_view"].write(cam.view.T.astype("f4").tobytes())
    prog["u_proj"].write(cam.proj.T.astype("f4").tobytes())
    if "u_eye" in prog:
        prog["u_eye"].value = tuple(cam.eye)


def _tiles(atlas, n, cols, w, h):
    if n == cols:  # one row of tiles (the usual case): a single reshaping copy
        return np.ascontiguousarray(atlas.reshape(h, n, w, -1).transpose(1, 0, 2, 3))
    rows = atlas.shape[0] // h
    # tile row r was drawn at GL y = r*h (bottom-up); ``atlas`` is already flipped top-down
    top = [(rows - 1 - i // cols) * h for i in range(n)]
    return np.stack([atlas[t:t + h, (i % cols) * w:(i % cols + 1) * w] for i, t in enumerate(top)])


def _lighting(base: Lighting, ambient=None, key_light=None, headlight=None, specular=None,
              **extra) -> Lighting:
    if extra:
        raise TypeError(f"unknown lighting options {sorted(extra)}; "
                        "use ambient, key_light, headlight, specular")
    changes = {k: float(v) for k, v in (("ambient", ambient), ("key_light", key_light),
                                        ("headlight", headlight), ("specular", specular)) if v is not None}
    return replace(base, **changes) if changes else base


_CACHE: dict[tuple, Renderer] = {}
_CACHE_LOCK = threading.Lock()


def get_renderer(size=224, background=(1.0, 1.0, 1.0), msaa=4, **options) -> Renderer:
    """The process-wide cached Renderer for these settings (created once, then reused)."""
    size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
    key = (size, tuple(float(c) for c in background)[:3], int(msaa), tuple(sorted(options.items())))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = Renderer(size, background, msaa, **options)
        return _CACHE[key]


def render_views(mesh, rig="ring12", size=224, *, background=(1.0, 1.0, 1.0), msaa=4, **options):
    """Render ``mesh`` with a Renderer cached per process for (size, background, msaa)."""
    render_kw = {k: options.pop(k) for k in list(options) if k not in ("max_faces", "lighting", "headlight",
                                                                       "specular")}
    return get_renderer(size, background, msaa, **options).render(mesh, rig, **render_kw)
