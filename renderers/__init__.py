"""Headless multi-view mesh renderer (ModernGL on EGL). Knows nothing of CLIP or of the dataset reader.

See docs/rendering.md for the user guide.
"""
from .batch import (
                    RenderJob,
                    RenderSummary,
                    parse_shard,
                    read_manifest,
                    render_batch,
                    render_chunk,
                    shape_dir,
                    shard_jobs,
                    view_paths,
)
from .cameras import RIGS, Camera, look_at, pose_camera, spread_views
from .config import RenderConfig, pixel_config, render_config_id
from .content import mesh_content_hash
from .errors import (
                     EGLUnavailableError,
                     GLContextLostError,
                     MeshLoadError,
                     MeshTooLargeError,
                     MeshWarning,
                     RenderError,
)
from .gl import (
                 RENDERER_VERSION,
                 Lighting,
                 Renderer,
                 RenderOutput,
                 get_renderer,
                 render_views,
)
from .mesh import load_mesh, normalize_mesh
from .orientation import ROTATIONS, as_orientation, random_rotation, up_axis_matrix
from .sheet import contact_sheet

__all__ = [
    "RIGS", "Camera", "look_at", "pose_camera", "spread_views",
    "EGLUnavailableError", "GLContextLostError", "MeshLoadError", "MeshTooLargeError", "MeshWarning",
    "RenderError",
    "RENDERER_VERSION", "Lighting", "Renderer", "RenderOutput", "get_renderer", "render_views",
    "load_mesh", "normalize_mesh", "mesh_content_hash",
    "ROTATIONS", "as_orientation", "random_rotation", "up_axis_matrix",
    "RenderJob", "RenderSummary", "parse_shard", "read_manifest", "render_batch", "render_chunk",
    "shape_dir", "shard_jobs", "view_paths", "RenderConfig", "pixel_config", "render_config_id",
    "contact_sheet",
]
