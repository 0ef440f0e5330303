"""Render and feature caches are keyed by content: a cached view is reused only when it was rendered
from the same mesh, material and texture bytes; features follow the images they were computed from."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import PYTHON, python_env
from renderers import RenderJob, mesh_content_hash, read_manifest, render_batch
from renderers.content import referenced_files

CFG = {"rig": "ring8", "size": 32, "msaa": 1}
CUBE = """mtllib model.mtl
v -1 -1 -1\nv 1 -1 -1\nv 1 1 -1\nv -1 1 -1\nv -1 -1 1\nv 1 -1 1\nv 1 1 1\nv -1 1 1
vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1
usemtl m
f 1/1 3/3 2/2\nf 1/1 4/4 3/3\nf 5/1 6/2 7/3\nf 5/1 7/3 8/4\nf 1/1 2/2 6/3\nf 1/1 6/3 5/4
f 2/1 3/2 7/3\nf 2/1 7/3 6/4\nf 3/1 4/2 8/3\nf 3/1 8/3 7/4\nf 4/1 1/2 5/3\nf 4/1 5/3 8/4
"""


def _cube(folder, colour="1 0 0", texture=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.obj").write_text(CUBE)
    mtl = f"newmtl m\nKd {colour}\n" + (f"map_Kd {texture}\n" if texture else "")
    (folder / "model.mtl").write_text(mtl)
    return folder / "model.obj"


def _render(root, out, key="model/box/a/model.obj"):
    summary = render_batch([RenderJob(key, "box", str(root / key))], out, CFG, workers=1, progress=False)
    entry = read_manifest(summary.render_dir)[key]
    return summary, entry, np.asarray(Image.open(os.path.join(summary.render_dir, entry["views"][0])))


def test_referenced_files_follow_mtllib_and_texture_maps(tmp_path):
    mesh = _cube(tmp_path)
    (tmp_path / "model.mtl").write_text("newmtl m\nmap_Kd -s 1 1 1 -o 0 0 tex dir/wood.png\nbump n.png\n")
    assert referenced_files(mesh) == [tmp_path / "model.mtl", tmp_path / "tex dir" / "wood.png",
                                      tmp_path / "n.png"]
    gltf = tmp_path / "s.gltf"
    inline = "data:application/octet-stream;base64,AA"
    gltf.write_text(json.dumps({"buffers": [{"uri": "s.bin"}, {"uri": inline}],
                                "images": [{"uri": "c.png"}]}))
    assert referenced_files(gltf) == [tmp_path / "s.bin", tmp_path / "c.png"]


@pytest.mark.parametrize("change", ["mesh", "material", "texture"])
def test_a_changed_file_renders_again_and_an_unchanged_one_is_reused(tmp_path, change):
    root = tmp_path / "ds"
    folder = root / "model/box/a"
    _cube(folder, texture="t.png")
    Image.new("RGB", (4, 4), (0, 0, 255)).save(folder / "t.png")
    first, entry, before = _render(root, tmp_path / "r")
    assert first.rendered == 1 and entry["content_hash"] == mesh_content_hash(folder / "model.obj")
    again, _, _ = _render(root, tmp_path / "r")
    assert (again.rendered, again.skipped) == (0, 1)
    if change == "mesh":
        (folder / "model.obj").write_text(CUBE.replace("v 1 1 1", "v 1.5 1.5 1.5"))
    elif change == "material":
        (folder / "model.mtl").write_text("newmtl m\nKd 0 1 0\n")
    else:
        Image.new("RGB", (4, 4), (255, 255, 0)).save(folder / "t.png")
    third, entry3, after = _render(root, tmp_path / "r")
    assert (third.rendered, third.skipped) == (1, 0)
    assert entry3["content_hash"] != entry["content_hash"]
    assert not np.array_equal(before, after)


def test_hash_cache_rehashes_only_changed_files(tmp_path, monkeypatch):
    mesh = _cube(tmp_path / "m")
    cache = {}
    first = mesh_content_hash(mesh, cache)
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: reads.append(str(p)) or real_open(p, *a, **k))
    assert mesh_content_hash(mesh, cache) == first and reads == []  # warm: stats only
    os.utime(mesh, ns=(1, 1))  # touched, same bytes: reread once, same identity
    assert mesh_content_hash(mesh, cache) == first and reads == [str(mesh)]
    monkeypatch.undo()
    (tmp_path / "m" / "model.mtl").write_text("newmtl m\nKd 0 0 1\n")
    assert mesh_content_hash(mesh, cache) != first


def test_features_are_recomputed_for_a_view_rendered_again(tmp_path):
    import models

    bundle = models.create_model("clip3d-tiny")
    views = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        path = tmp_path / f"view_{i}.png"
        Image.new("RGB", (64, 64), colour).save(path)
        views.append(str(path))
    stats = {}
    first = models.encode_views(bundle, [views], cache_dir=tmp_path / "feat", render_config_id="r",
                                stats=stats)
    assert stats == {"encoded": 2, "cached": 0}
    Image.new("RGB", (64, 64), (0, 0, 255)).save(views[1])  # rendered again in place
    stats = {}
    second = models.encode_views(bundle, [views], cache_dir=tmp_path / "feat", render_config_id="r",
                                 stats=stats)
    assert stats == {"encoded": 1, "cached": 1}
    assert np.allclose(first[0, 0], second[0, 0]) and not np.allclose(first[0, 1], second[0, 1])
    fresh = models.encode_views(bundle, [views])
    assert np.allclose(second, fresh, atol=1e-5)
    stored = __import__("torch").load(next((tmp_path / "feat").rglob("images.pt")), weights_only=True)
    assert len(stored["keys"]) == 2  # the stale entry was replaced, not kept beside the new one


def _cli(tmp_path, *args):
    out = subprocess.run([PYTHON, *args], capture_output=True, text=True, env=python_env(), cwd=tmp_path,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_cli_two_datasets_sharing_paths_never_share_renders(tmp_path, store_url):
    """The issue's reproduction: tiny with --seed 1 and --seed 2, rendered into one render.out."""
    for name, seed in (("A", 1), ("B", 2)):
        _cli(tmp_path, "-m", "harness.data.synth", "--out", str(tmp_path / name), "--preset", "tiny",
             "--seed", str(seed), "--quiet")

    def render(name):
        _cli(tmp_path, "-m", "harness", "render", "with", "tiny", f"data.root={tmp_path / name}",
             f"render.out={tmp_path / 'R'}", "render.workers=1", "render.rig=ring8", f"store.url={store_url}")
        (render_dir,) = [p for p in (tmp_path / "R").iterdir() if p.is_dir()]
        return render_dir, read_manifest(render_dir)

    render_dir, manifest_a = render("A")
    keys = sorted(manifest_a)
    assert len(keys) == 27 and all(e["status"] == "ok" for e in manifest_a.values())
    images_a = {k: (render_dir / manifest_a[k]["views"][0]).read_bytes() for k in keys}
    shutil.copytree(render_dir, tmp_path / "A_renders")

    _, manifest_b = render("B")
    from harness.data import load_pix3d

    b_hashes = {s.key: s.content_hash for s in load_pix3d(tmp_path / "B").shapes}
    assert sorted(manifest_b) == keys  # the same paths ...
    assert all(manifest_b[k]["content_hash"] == b_hashes[k] != manifest_a[k]["content_hash"] for k in keys)
    changed = [k for k in keys if (render_dir / manifest_b[k]["views"][0]).read_bytes() != images_a[k]]
    assert len(changed) == len(keys)  # ... but B's own images, not A's

    lines = (render_dir / "manifest.jsonl").read_text().count("\n")
    render("B")  # unchanged: everything reused, nothing appended
    assert (render_dir / "manifest.jsonl").read_text().count("\n") == lines
