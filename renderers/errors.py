"""Exception and warning types of the renderer: each message names the input and the fix."""


class RenderError(RuntimeError):
    """Base class of renderer errors."""


class EGLUnavailableError(RenderError):
    """No headless OpenGL (EGL) context could be created."""


class MeshLoadError(RenderError):
    """A mesh file could not be turned into renderable triangles (message says why)."""


class MeshTooLargeError(MeshLoadError):
    """A mesh has more faces than the configured limit (``max_faces``)."""


class MeshWarning(UserWarning):
    """Something was defaulted while loading a mesh (missing .mtl, texture, colours)."""


class GLContextLostError(EGLUnavailableError):
    """Our OpenGL context died (another EGL user of the process terminated the shared EGL display) and
    the one fresh context made to replace it did not work either."""
