"""The headless OpenGL context on EGL, and how to tell that another EGL user killed it."""
from __future__ import annotations

import functools
import os

from .errors import EGLUnavailableError

EGL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri"


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
