"""Mesh orientation before framing: a file's up axis, seeded test rotations, and the render cache identity."""
from types import SimpleNamespace

import numpy as np
import pytest

from renderers.orientation import as_orientation, random_rotation, up_axis_matrix


def _is_rotation(m):
    return np.allclose(m @ m.T, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(m), 1.0)


def test_up_axis_matrices_turn_each_convention_upright():
    for axis, up in (("y", (0, 1, 0)), ("z", (0, 0, 1)), ("x", (1, 0, 0)), ("Z", (0, 0, 1))):
        m = up_axis_matrix(axis)
        assert _is_rotation(m) and np.allclose(m @ np.array(up, float), (0, 1, 0))
    with pytest.raises(ValueError, match="up axis 'w' is not one of x, y, z"):
        up_axis_matrix("w")


def test_random_rotations_are_seeded_per_shape_and_of_their_kind():
    z = random_rotation("z", 0, "a.obj")
    assert _is_rotation(z) and np.allclose(z @ [0, 1, 0], [0, 1, 0])  # about the up axis only
    assert np.array_equal(z, random_rotation("z", 0, "a.obj"))  # same (kind, seed, key): same draw
    assert not np.allclose(z, random_rotation("z", 0, "b.obj"))
    assert not np.allclose(z, random_rotation("z", 1, "a.obj"))
    ups = np.array([random_rotation("so3", 0, f"s{i}") @ [0, 1, 0] for i in range(3000)])
    assert all(_is_rotation(random_rotation("so3", 0, f"s{i}")) for i in range(50))
    # Haar-uniform: the image of a fixed direction is uniform on the sphere (mean 0, each
    # coordinate's second moment 1/3)
    assert np.abs(ups.mean(axis=0)).max() < 0.05
    assert np.allclose((ups ** 2).mean(axis=0), 1 / 3, atol=0.03)
    with pytest.raises(ValueError, match="rotation 'yaw' is not one of z, so3"):
        random_rotation("yaw", 0, "a.obj")
    assert as_orientation(np.eye(3)) is None and len(as_orientation(z)) == 9


def test_a_z_up_file_renders_like_its_y_up_original(tmp_path):
    """The same tall box written Y-up and Z-up: with up_axis='z' the Z-up file renders upright, the
    same images; its render identity carries the up axis, so a Y-up render of it is never reused."""
    pytest.importorskip("moderngl")
    import trimesh

    from harness.commands.render import content_hashes, render_jobs
    from renderers import read_manifest, render_batch

    box = trimesh.creation.box((0.4, 1.2, 0.7))  # tallest along Y, deepest along Z
    box.export(tmp_path / "y_up.obj")
    z_up = box.copy()
    z_up.apply_transform(np.vstack([np.hstack([up_axis_matrix("z").T, np.zeros((3, 1))]), [0, 0, 0, 1]]))
    assert np.ptp(z_up.vertices, axis=0)[2] == pytest.approx(1.2)  # now tallest along Z
    z_up.export(tmp_path / "z_up.obj")
    shapes = [SimpleNamespace(key="y_up.obj", category="box", mesh_path="y_up.obj"),
              SimpleNamespace(key="z_up.obj", category="box", mesh_path="z_up.obj", up_axis="z")]
    prepared = SimpleNamespace(root=str(tmp_path), dataset=SimpleNamespace(shapes=shapes))
    jobs = render_jobs(prepared)
    assert jobs[0].orientation is None and jobs[1].orientation is not None
    hashes = content_hashes(prepared)
    assert hashes["z_up.obj"].endswith("+up-z") and "+up" not in hashes["y_up.obj"]
    knobs = {"rig": "ring8", "size": 48}
    summary = render_batch(jobs, tmp_path / "renders", knobs, workers=1, progress=False)
    assert summary.rendered == 2
    manifest = read_manifest(summary.render_dir)
    from PIL import Image

    for v in range(8):
        a, b = (np.asarray(Image.open(f"{summary.render_dir}/{manifest[k]['views'][v]}"), float)
                for k in ("y_up.obj", "z_up.obj"))
        assert np.abs(a - b).mean() < 2.0, v  # same pixels up to rasterisation noise
    shapes[1].up_axis = "y"  # the user overrides the axis: the Z-up renders are not reused
    again = render_batch(render_jobs(prepared), tmp_path / "renders", knobs, workers=1, progress=False)
    assert again.rendered == 1 and again.skipped == 1
