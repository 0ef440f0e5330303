"""The renderer survives another EGL user in the same process (issue #13).

pyrender's ``OffscreenRenderer.delete()`` calls ``eglTerminate`` on the EGL display that every context
of the process shares, ours included. Our cached context is then dead: the next render either drew
into pyrender's destroyed-but-still-current context (wrong pixels, no error) or failed with
``cannot create buffer``. The renderer must notice, make a new context once and render the same pixels.
"""
import ctypes
import os
from ctypes.util import find_library

# as in benchmarks/bench_render.py: before pyrender / PyOpenGL are imported
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import trimesh  # noqa: E402

import renderers  # noqa: E402
import renderers.gl as gl  # noqa: E402
from renderers import EGLUnavailableError, Renderer  # noqa: E402


def _egl():
    lib = ctypes.CDLL(os.environ.get("GLCONTEXT_LINUX_LIBEGL") or find_library("EGL") or "libEGL.so.1")
    lib.eglGetCurrentDisplay.restype = ctypes.c_void_p
    lib.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
    lib.eglTerminate.argtypes = [ctypes.c_void_p]
    return lib


def _mesh():
    mesh = trimesh.creation.icosphere(2)
    mesh.visual.face_colors = [200, 80, 40, 255]
    return mesh


def _terminate_display_of(ctx):
    """What pyrender's ``delete()`` does to every context of the process: terminate the shared display."""
    egl = _egl()
    with ctx:
        display = egl.eglGetCurrentDisplay()
    assert display
    egl.eglMakeCurrent(display, None, None, None)
    assert egl.eglTerminate(display)


def _pyrender_render_then_delete(mesh, size=32):
    pyrender = pytest.importorskip("pyrender")
    offscreen = pyrender.OffscreenRenderer(size, size)
    assert type(offscreen._platform).__name__ == "EGLPlatform"
    scene = pyrender.Scene(bg_color=[1.0, 1.0, 1.0, 1.0], ambient_light=[0.5, 0.5, 0.5])
    scene.add(pyrender.Mesh.from_trimesh(mesh, smooth=False))
    pose = np.eye(4)
    pose[2, 3] = 3.0
    scene.add(pyrender.PerspectiveCamera(yfov=0.8), pose=pose)
    color, _ = offscreen.render(scene)
    assert (color < 250).any()  # pyrender really drew the mesh
    offscreen.delete()  # eglTerminate on the display our context lives on


@pytest.mark.skipif(os.environ.get("PYOPENGL_PLATFORM") != "egl",
                    reason="pyrender must use EGL to share our display")
def test_render_survives_pyrender_offscreen_delete():
    mesh = _mesh()
    r = Renderer(size=48)
    before = r.render(mesh, "ring8", rgba=True)
    views_before = renderers.render_views(mesh, "ring8", size=40)
    cached = renderers.get_renderer(40)
    old_ctx = r.ctx

    _pyrender_render_then_delete(mesh)

    after = r.render(mesh, "ring8", rgba=True)  # pyrender's destroyed context was still current here
    np.testing.assert_array_equal(after, before)
    assert r.ctx is not old_ctx, "the dead context was not replaced"
    np.testing.assert_array_equal(r.render(mesh, "ring8", rgba=True), before)  # and it stays usable
    views_after = renderers.render_views(mesh, "ring8", size=40)  # nothing current: cannot create buffer
    assert renderers.get_renderer(40) is cached  # recovered in place: the cache keeps its renderer
    np.testing.assert_array_equal(views_after, views_before)
    out = r.render(mesh, "ring8", depth=True, normals=True)
    assert np.isfinite(out.depth).any() and out.images.shape == (8, 48, 48, 3)


def test_context_lost_for_good_raises_one_clear_error(monkeypatch):
    """The display is terminated again as soon as a new context exists: one retry, then one clear error."""
    mesh = _mesh()
    r = Renderer(size=32)
    before = r.render(mesh, "ring8")
    created = []
    real_create = gl.create_context

    def create_then_kill():
        ctx = real_create()
        created.append(ctx)
        _terminate_display_of(ctx)
        return ctx

    _terminate_display_of(r.ctx)
    monkeypatch.setattr(gl, "create_context", create_then_kill)
    with pytest.raises(gl.GLContextLostError, match=r"OpenGL context was lost.*eglTerminate") as err:
        r.render(mesh, "ring8")
    assert len(created) == 1, "recreated more than once"
    assert isinstance(err.value, EGLUnavailableError)  # a batch stops on it, not failing every shape
    monkeypatch.undo()
    np.testing.assert_array_equal(r.render(mesh, "ring8"), before)  # usable again once EGL is


def test_recreation_failure_gives_the_egl_error(monkeypatch):
    mesh = _mesh()
    r = Renderer(size=32)
    r.render(mesh, "ring8")
    calls = []

    def broken():
        calls.append(1)
        raise EGLUnavailableError("could not create a headless OpenGL context on EGL (eglInitialize failed)")

    _terminate_display_of(r.ctx)
    monkeypatch.setattr(gl, "create_context", broken)
    with pytest.raises(EGLUnavailableError, match="eglInitialize failed"):
        r.render(mesh, "ring8")
    assert calls == [1]


def test_gl_error_in_a_live_context_is_not_retried(monkeypatch):
    import moderngl

    mesh = _mesh()
    r = Renderer(size=32)
    ctx = r.ctx
    calls = []

    def failing_pass(*args, **kwargs):
        calls.append(1)
        raise moderngl.Error("cannot create framebuffer")

    monkeypatch.setattr(r, "_render_pass", failing_pass)
    with pytest.raises(moderngl.Error, match="cannot create framebuffer"):
        r.render(mesh, "ring8")
    assert calls == [1] and r.ctx is ctx  # the original error, no new context, no second attempt
