"""Renderer core: mesh loading, rigs, cameras (incl. Pix3D pose geometry), shading, outputs."""
import warnings

import numpy as np
import pytest
import trimesh
from render_fixtures import chair_like_obj, cube_obj, mtl, textured_quad

import renderers
from renderers import RIGS, Renderer, load_mesh, pose_camera, render_config_id

ORBIT_RIGS = sorted(r for r in RIGS if r != "pose")
# Pix3D camera looking at the model's front (+Z) from distance 3: p = R v + t, +X left, +Z forward.
FRONT_R = np.diag([-1.0, 1.0, -1.0])


@pytest.fixture(scope="module")
def renderer():
    r = Renderer(size=64, msaa=4)
    yield r


@pytest.fixture(scope="module")
def chair(tmp_path_factory):
    return chair_like_obj(tmp_path_factory.mktemp("m") / "model" / "chair" / "X" / "model.obj")


def _mask(images):
    return images[..., 3] > 127


def test_load_mesh_normalises_to_unit_sphere_at_origin(chair):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete OBJ+MTL loads without any defaulting warning
        mesh = load_mesh(chair)
    v = np.asarray(mesh.vertices)
    np.testing.assert_allclose((v.min(0) + v.max(0)) / 2, 0, atol=1e-9)
    assert np.linalg.norm(v, axis=1).max() == pytest.approx(1.0)
    raw = load_mesh(chair, normalize=False)
    assert np.asarray(raw.vertices)[:, 1].max() == pytest.approx(1.7)  # own coordinates kept
    assert len(raw.faces) == 24  # two cubes of 6 quads, triangulated


@pytest.mark.parametrize("rig", ORBIT_RIGS)
def test_every_view_non_blank_and_object_inside_frame(renderer, rig, tmp_path):
    # a long thin diagonal box: the worst case for framing
    box = trimesh.creation.box(extents=[3.0, 0.2, 0.4])
    box.apply_transform(trimesh.transformations.rotation_matrix(0.7, [0.3, 1, 0.2]))
    images = renderer.render(box, rig, rgba=True)
    n_views = {"ring12": 12, "ring8": 8, "sphere20": 20}[rig]
    assert images.shape == (n_views, 64, 64, 4) and images.dtype == np.uint8
    mask = _mask(images)
    assert mask.reshape(n_views, -1).mean(1).min() > 0.02  # every view shows the object
    border = np.concatenate([mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]], axis=1)
    assert not border.any(), "object touches the frame border"


def test_different_azimuths_differ(renderer, chair):
    images = renderer.render(chair, "ring12").astype(int)
    diffs = [np.abs(images[i] - images[j]).mean() for i, j in ((0, 3), (0, 6), (3, 9))]
    assert min(diffs) > 2.0


def test_red_material_renders_red(renderer, tmp_path):
    mtl(tmp_path / "red.mtl", {"red": ((1, 0, 0), None)})
    path = cube_obj(tmp_path / "red.obj", mtllib="red.mtl", material="red")
    images = renderer.render(path, "ring8", rgba=True)
    pix = images[..., :3][_mask(images)].astype(float)
    r, g, b = pix.mean(0)
    assert r > 120 and g < 60 and b < 60, (r, g, b)


def test_vertex_colours_are_used(renderer, tmp_path):
    path = cube_obj(tmp_path / "green.obj", colour=(0.0, 1.0, 0.0))
    images = renderer.render(path, "ring8", rgba=True)
    r, g, b = images[..., :3][_mask(images)].astype(float).mean(0)
    assert g > 120 and r < 60 and b < 60


def test_per_material_colours_are_kept(renderer, chair):
    pix = renderer.render(chair, "ring12", rgba=False).reshape(-1, 3).astype(int)
    orange = ((pix[:, 0] > pix[:, 2] + 40) & (pix[:, 1] > pix[:, 2])).sum()
    blue = (pix[:, 2] > pix[:, 0] + 40).sum()
    assert orange > 100 and blue > 100


def test_textured_quad_shows_its_texture(renderer, tmp_path):
    path = textured_quad(tmp_path / "quad")
    img = renderer.render(path, "pose", rot_mat=FRONT_R, trans_mat=[0, 0, 3], focal_length=40,
                          img_size=(64, 64))[0].astype(int)
    left, right = img[28:36, 16:24].mean((0, 1)), img[28:36, 40:48].mean((0, 1))
    assert left[0] > 150 and left[2] < 60, left  # texture's left half (u < .5) is red
    assert right[2] > 150 and right[0] < 60, right


def test_pose_camera_matches_pix3d_projection_formula():
    rot = trimesh.transformations.euler_matrix(0.2, 0.5, 0.1)[:3, :3]
    t = np.array([0.1, -0.05, 2.5])
    cam = pose_camera(rot, t, focal_length=40, img_size=(320, 240))
    v = np.array([[0.3, 0.2, 0.1], [-0.4, 0.1, 0.3]])
    p = v @ rot.T + t
    f_px = 40 / 32 * 320
    expected = np.stack([160 - f_px * p[:, 0] / p[:, 2], 120 - f_px * p[:, 1] / p[:, 2]], axis=1)
    xy, depth = cam.project(v)
    np.testing.assert_allclose(xy, expected, atol=1e-9)
    np.testing.assert_allclose(depth, p[:, 2])


def test_pose_render_puts_a_known_vertex_at_the_expected_pixel(tmp_path):
    w, h = 160, 120
    rot = trimesh.transformations.euler_matrix(0.2, 0.5, 0.1)[:3, :3]
    t = [0.1, -0.05, 2.5]
    point = np.array([0.3, 0.2, 0.1])
    blob = trimesh.creation.icosphere(2, radius=0.03).apply_translation(point)
    r = Renderer(size=(w, h))
    images = r.render(blob, "pose", rot_mat=rot, trans_mat=t, focal_length=40, img_size=(w, h), rgba=True)
    assert images.shape == (1, h, w, 4)
    ys, xs = np.nonzero(_mask(images)[0])
    (ex, ey), _ = pose_camera(rot, t, 40, (w, h)).project(point)[0][0], None
    assert xs.mean() + 0.5 == pytest.approx(ex, abs=0.5) and ys.mean() + 0.5 == pytest.approx(ey, abs=0.5)
    # the same pose at another resolution with the same aspect ratio scales the pixel position
    half = Renderer(size=(w // 2, h // 2)).render(blob, "pose", rot_mat=rot, trans_mat=t, focal_length=40,
                                                  img_size=(w, h), rgba=True)
    ys2, xs2 = np.nonzero(_mask(half)[0])
    assert xs2.mean() + 0.5 == pytest.approx(ex / 2, abs=0.5)
    # model +X appears on the image's right for a camera facing the model's front
    left = renderers.Renderer(size=64).render(
        trimesh.creation.icosphere(1, radius=0.1).apply_translation([0.5, 0, 0]), "pose",
        rot_mat=FRONT_R, trans_mat=[0, 0, 3], focal_length=40, img_size=(64, 64), rgba=True)
    assert np.nonzero(_mask(left)[0])[1].mean() > 32


def test_pose_rejects_other_aspect_ratio(renderer):
    with pytest.raises(ValueError, match=r"aspect ratio.*Renderer\(size=\(100, 50\)\)"):
        renderer.render(trimesh.creation.box(), "pose", rot_mat=np.eye(3), trans_mat=[0, 0, 3],
                        focal_length=40, img_size=(100, 50))


def test_depth_and_normals_outputs(renderer):
    out = renderer.render(trimesh.creation.icosphere(2), "ring8", depth=True, normals=True, rgba=True)
    assert isinstance(out, renderers.RenderOutput)
    assert out.images.shape == (8, 64, 64, 4) and out.depth.shape == (8, 64, 64)
    assert out.normals.shape == (8, 64, 64, 3) and out.normals.dtype == np.float32
    inside = _mask(out.images) & np.isfinite(out.depth)
    assert np.isinf(out.depth[~_mask(out.images) & (out.images[..., 3] == 0)]).all()
    # sphere of radius 1 viewed from distance d: nearest depth ~ d - 1
    d = np.linalg.norm(renderer.cameras(load_mesh(trimesh.creation.icosphere(2)), "ring8")[0].eye)
    assert out.depth[inside].min() == pytest.approx(d - 1, abs=0.05)
    np.testing.assert_allclose(np.linalg.norm(out.normals[inside], axis=-1), 1, atol=0.02)
    only_depth = renderer.render(trimesh.creation.icosphere(2), "ring8", depth=True)
    assert only_depth.normals is None and only_depth.images.shape[-1] == 3


def test_lighting_overrides_change_pixels(renderer):
    mesh = trimesh.creation.icosphere(2)
    base = renderer.render(mesh, "ring8").astype(int)
    dim = renderer.render(mesh, "ring8", ambient=0.0, key_light=0.1).astype(int)
    assert dim.mean() < base.mean() - 5


def test_render_views_reuses_one_renderer():
    mesh = trimesh.creation.icosphere(1)
    a = renderers.render_views(mesh, "ring8", size=32)
    r1 = renderers.get_renderer(32)
    b = renderers.render_views(mesh, "ring8", size=32)
    assert renderers.get_renderer(32) is r1
    np.testing.assert_array_equal(a, b)
    assert a.shape == (8, 32, 32, 3)


def test_unknown_rig_lists_the_allowed(renderer):
    with pytest.raises(ValueError,
                       match=r"unknown render.rig='ring7'; choose one of ring12, ring8, sphere20, pose"):
        renderer.render(trimesh.creation.box(), "ring7")


def test_missing_egl_gives_one_clear_error(monkeypatch):
    import moderngl

    def broken(**_):
        raise Exception("libEGL.so: cannot open shared object file")
    monkeypatch.setattr(moderngl, "create_standalone_context", broken)
    with pytest.raises(renderers.EGLUnavailableError, match="libegl1 libegl-mesa0 libgl1-mesa-dri"):
        Renderer(size=16)


def test_render_config_id_hashes_every_pixel_knob():
    base = {"rig": "ring12", "size": 224, "background": [1, 1, 1], "msaa": 4}
    cid = render_config_id(base)
    assert cid.startswith("ring12-224x224-") and cid == render_config_id(dict(base))
    assert cid == render_config_id({**base, "out": "x", "shard": "1/4", "workers": 3, "scheduler": "tcp://h"})
    changed = [{"size": 128}, {"background": [0, 0, 0]}, {"msaa": 0}, {"rig": "ring8"},
               {"lighting": {"ambient": 0.5}}, {"rig_options": {"elevation": 10}}]
    ids = {render_config_id({**base, **c}) for c in changed}
    assert len(ids) == len(changed) and cid not in ids
    with pytest.raises(ValueError, match="unknown render.rig='nope'; choose one of"):
        render_config_id({"rig": "nope"})


@pytest.mark.parametrize("max_atlas", [64, 150])
def test_atlas_layout_does_not_change_pixels(monkeypatch, max_atlas):
    import renderers.gl

    mesh = trimesh.creation.icosphere(2)
    ref = Renderer(size=64).render(mesh, "ring8", rgba=True)
    monkeypatch.setattr(renderers.gl, "MAX_ATLAS", max_atlas)  # 1 view per pass / 2x2 tiles per pass
    out = Renderer(size=64).render(mesh, "ring8", rgba=True)
    # rasteriser rounding may differ by one level with the tile position; nothing more
    assert out.shape == ref.shape and np.abs(out.astype(int) - ref).max() <= 1
