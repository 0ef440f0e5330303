"""Headless OpenGL renderer (ModernGL on EGL): one context, many meshes, all views of a mesh in
one atlas framebuffer with one upload and one read-back."""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from importlib import resources
from typing import NamedTuple

import numpy as np
import trimesh

from .cameras import MESH_FRAME_RIGS, RIGS, Camera
from .context import CONTEXT_LOST_HINT, _ContextNotCurrent, create_context, current_egl_context
from .errors import GLContextLostError
from .geometry import backfaces_hidden, bounding_sphere, mesh_arrays
from .mesh import DEFAULT_MAX_FACES, load_mesh

RENDERER_VERSION = "2"  # bump whenever a change alters pixels: it is part of render_config_id
MAX_ATLAS = 4096  # atlas side in pixels (bounds MSAA memory); more views than fit take several passes


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
        rig_fn = rig if callable(rig) else RIGS.lookup(rig)
        centre, radius = bounding_sphere(mesh)
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
