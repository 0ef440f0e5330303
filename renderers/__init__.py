"""Headless multi-view mesh renderer (ModernGL on EGL). Knows nothing of CLIP or of the dataset reader.

See docs/rendering.md for the user guide.
"""
from .cameras import RIGS, Camera, look_at, pose_camera
from .errors import EGLUnavailableError, MeshLoadError, MeshTooLargeError, MeshWarning, RenderError
from .gl import RENDERER_VERSION, Lighting, Renderer, RenderOutput, get_renderer, render_views
from .mesh import load_mesh, normalize_mesh

__all__ = [
    "RIGS", "Camera", "look_at", "pose_camera",
    "EGLUnavailableError", "MeshLoadError", "MeshTooLargeError", "MeshWarning", "RenderError",
    "RENDERER_VERSION", "Lighting", "Renderer", "RenderOutput", "get_renderer", "render_views",
    "load_mesh", "normalize_mesh",
]
