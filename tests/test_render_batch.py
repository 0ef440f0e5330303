"""render_batch: manifest, bad inputs (failed lines, batch goes on), warnings, resume, sharding,
process pool and Dask backends, contact sheet."""
import json

import numpy as np
import pytest
from PIL import Image
from render_fixtures import chair_like_obj, cube_obj, mtl, textured_quad, write

from renderers import RenderJob, contact_sheet, read_manifest, render_batch, shape_dir, shard_jobs, view_paths

CFG = {"rig": "ring8", "size": 48, "background": [1, 1, 1], "msaa": 2}


def job(root, rel, category="chair"):
    return RenderJob(rel, category, str(root / rel))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A dataset root with good, defaulted (warning) and bad meshes; returns (root, jobs, expected)."""
    root = tmp_path_factory.mktemp("ds")
    m = root / "model" / "chair"
    expected = {}  # key -> ("ok", warning substring or None) | ("failed", reason substring)

    def add(rel, outcome, text=None):
        expected[rel] = (outcome, text)
        return rel

    chair_like_obj(m / "GOOD" / "model.obj")
    add("model/chair/GOOD/model.obj", "ok")
    cube_obj(m / "GOOD" / "model_2.obj", scale=(1, 2, 1))  # a variant in the same folder
    add("model/chair/GOOD/model_2.obj", "ok", "default grey")
    add("model/chair/missing/model.obj", "failed", "file not found")
    write(m / "random" / "model.obj", "").write_bytes(np.random.default_rng(0).bytes(4000))
    add("model/chair/random/model.obj", "failed", "no geometry found")
    write(m / "empty" / "model.obj", "")
    add("model/chair/empty/model.obj", "failed", "empty file")
    write(m / "vonly" / "model.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    add("model/chair/vonly/model.obj", "failed", "no faces (3 vertices only)")
    write(m / "badidx" / "model.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    add("model/chair/badidx/model.obj", "failed", "faces index missing vertices")
    write(m / "nan" / "model.obj", "v 0 0 0\nv 1 0 nan\nv 0 1 0\nv 1 1 inf\nf 1 2 3\nf 2 3 4\n")
    add("model/chair/nan/model.obj", "failed", "non-finite vertex coordinates (NaN/inf) in 2 vertices")
    write(m / "degen" / "model.obj", "v 0 0 0\nv 1 0 0\nv 2 0 0\nv 3 0 0\nf 1 2 3\nf 2 3 4\nf 1 1 1\n")
    add("model/chair/degen/model.obj", "failed", "all 3 faces are degenerate")
    # a 2M-face file fails fast on the face count, before any parsing
    write(m / "huge" / "model.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n" + "f 1 2 3\n" * 2_000_000)
    add("model/chair/huge/model.obj", "failed", "2,000,000 faces, over the limit max_faces=1,500,000")
    cube_obj(m / "nomtl" / "model.obj", mtllib="gone.mtl", material="red")
    add("model/chair/nomtl/model.obj", "ok", "material library 'gone.mtl' not found")
    textured_quad(m / "notex", texture=False)
    add("model/chair/notex/model.obj", "ok", "texture 'tex.png' not found")
    textured_quad(m / "tex")
    add("model/chair/tex/model.obj", "ok")
    cube_obj(m / "far" / "model.obj", offset=(1e6, -2e6, 5e5), scale=(3, 1, 1))
    add("model/chair/far/model.obj", "ok", "default grey")
    mtl(m / "stühl_é" / "model.mtl", {"a": ((0.2, 0.8, 0.2), None)})
    cube_obj(m / "stühl_é" / "model.obj", mtllib="model.mtl", material="a")
    add("model/chair/stühl_é/model.obj", "ok")
    jobs = [job(root, k) for k in expected]
    return root, jobs, expected


@pytest.fixture(scope="module")
def rendered(dataset, tmp_path_factory):
    root, jobs, expected = dataset
    out = tmp_path_factory.mktemp("renders")
    summary = render_batch(jobs, out, CFG, workers=1, progress=False)
    return out, summary


def test_shape_dir_keeps_variants_distinct():
    assert shape_dir("model/chair/IKEA_X/model.obj", "chair") == "IKEA_X"
    assert shape_dir("model/chair/IKEA_X/model_2.obj", "chair") == "IKEA_X__model_2"
    assert shape_dir("model/sofa/a/b/model.obj", "sofa") == "a__b"
    assert shape_dir("model/sofa/thing.obj", "sofa") == "thing"


def test_bad_inputs_fail_with_reasons_and_the_batch_goes_on(dataset, rendered):
    _, jobs, expected = dataset
    out, summary = rendered
    manifest = read_manifest(summary.render_dir)
    assert set(manifest) == set(expected)
    for key, (outcome, text) in expected.items():
        entry = manifest[key]
        assert entry["status"] == outcome, (key, entry)
        if outcome == "failed":
            assert text in entry["reason"], (key, entry["reason"])
            assert entry["views"] == []
        else:
            assert len(entry["views"]) == 8 and entry["reason"] is None
            if text:
                assert any(text in w for w in entry["warnings"]), (key, entry["warnings"])
    n_failed = sum(o == "failed" for o, _ in expected.values())
    assert summary.failed == n_failed and len(summary.failures) == n_failed
    assert summary.rendered == len(expected) - n_failed and summary.views == 8 * summary.rendered
    assert summary.as_dict()["views_per_s"] > 0


def test_layout_files_and_atomic_writes(dataset, rendered):
    out, summary = rendered
    rd = out / summary.config_id
    assert summary.render_dir == str(rd)
    assert json.loads((rd / "config.json").read_text())["config_id"] == summary.config_id
    paths = view_paths(rd, "model/chair/GOOD/model_2.obj")
    assert [p.relative_to(rd).as_posix() for p in paths][:2] == ["chair/GOOD__model_2/view_00.png",
                                                                 "chair/GOOD__model_2/view_01.png"]
    assert (rd / "chair" / "GOOD" / "view_07.png").is_file()
    assert (rd / "chair" / "stühl_é" / "view_00.png").is_file()
    assert not list(rd.rglob("*.tmp")), "temporary files left behind"
    img = np.asarray(Image.open(paths[0]))
    assert img.shape == (48, 48, 3) and (img < 200).any()
    assert view_paths(rd, "model/chair/empty/model.obj") == []


def test_far_from_origin_mesh_is_framed(rendered):
    out, summary = rendered
    for p in view_paths(summary.render_dir, "model/chair/far/model.obj"):
        fg = (np.asarray(Image.open(p)) < 250).any(-1)
        assert fg.mean() > 0.05 and not (fg[0].any() or fg[-1].any() or fg[:, 0].any() or fg[:, -1].any())


def test_resume_skips_finished_and_redoes_incomplete(dataset, rendered):
    _, jobs, expected = dataset
    out, summary = rendered
    ok_jobs = [j for j in jobs if expected[j.key][0] == "ok"]
    (out / summary.config_id / "chair" / "tex" / "view_03.png").unlink()
    again = render_batch(ok_jobs, out, CFG, workers=1, progress=False)
    assert again.rendered == 1 and again.skipped == len(ok_jobs) - 1 and again.failed == 0
    assert (out / summary.config_id / "chair" / "tex" / "view_03.png").is_file()


def test_sharding_is_deterministic_and_partitions(dataset):
    _, jobs, _ = dataset
    shards = [shard_jobs(jobs, (i, 3)) for i in range(3)]
    assert sorted(j.key for s in shards for j in s) == sorted(j.key for j in jobs)
    assert [j.key for j in shard_jobs(jobs, "1/3")] == [j.key for j in shards[1]]
    assert [j.key for j in shard_jobs(list(reversed(jobs)), (1, 3))] == [j.key for j in shards[1]]
    with pytest.raises(ValueError, match=r"render.shard='2' must look like 'i/n'"):
        shard_jobs(jobs, "2")
    with pytest.raises(ValueError, match=r"render.shard=3/3"):
        shard_jobs(jobs, (3, 3))


def test_duplicate_shape_folders_are_refused(tmp_path):
    jobs = [RenderJob("model/chair/a/b/model.obj", "chair", "x"),
            RenderJob("model/chair/a__b/model.obj", "chair", "y")]
    with pytest.raises(ValueError, match="map to the same folder 'chair/a__b'"):
        render_batch(jobs, tmp_path, CFG, workers=1, progress=False)


def _good_jobs(dataset):
    root, jobs, expected = dataset
    return [j for j in jobs if expected[j.key] == ("ok", None)]


def test_process_pool_matches_in_process(dataset, rendered, tmp_path):
    jobs = _good_jobs(dataset)
    summary = render_batch(jobs, tmp_path, CFG, workers=2, chunk_size=1, progress=False)
    assert summary.rendered == len(jobs) and summary.failed == 0
    ref_dir = rendered[1].render_dir
    for j in jobs:
        for a, b in zip(view_paths(summary.render_dir, j.key), view_paths(ref_dir, j.key), strict=True):
            np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_dask_cluster_backend(dataset, tmp_path):
    distributed = pytest.importorskip("distributed")
    jobs = _good_jobs(dataset)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        summary = render_batch(jobs, tmp_path, CFG, scheduler=client, chunk_size=1, progress=False)
    assert summary.rendered == len(jobs) and summary.failed == 0
    assert all(len(view_paths(summary.render_dir, j.key)) == 8 for j in jobs)


def test_contact_sheet(rendered):
    out, summary = rendered
    keys = ["model/chair/GOOD/model.obj", "model/chair/empty/model.obj"]
    sheet = contact_sheet(summary.render_dir, keys, views=(0, 2, 4), size=32)
    assert sheet.size == (96, 2 * (32 + 12))
    arr = np.asarray(sheet)
    assert (arr[12:44] < 200).any()  # the good shape's row has content
    assert (arr[56:88] == 200).all()  # the failed shape's tiles are grey


def test_unexpected_errors_fail_the_shape_or_chunk_not_the_batch(dataset, tmp_path, monkeypatch):
    import renderers.batch
    import renderers.gl

    jobs = _good_jobs(dataset)
    real = renderers.gl.Renderer.render

    def flaky(self, mesh, *args, **kwargs):
        if "GOOD" in str(mesh):
            raise RuntimeError("cannot create buffer")  # e.g. the GL driver running out of memory
        return real(self, mesh, *args, **kwargs)
    monkeypatch.setattr(renderers.gl.Renderer, "render", flaky)
    summary = render_batch(jobs, tmp_path / "a", CFG, workers=1, progress=False)
    bad = {k for k in summary.failures}
    assert bad == {j.key for j in jobs if "GOOD" in j.key} and summary.rendered == len(jobs) - len(bad)
    assert all(r == "RuntimeError: cannot create buffer" for r in summary.failures.values())

    def crash(*_):
        raise RuntimeError("worker died")
    monkeypatch.setattr(renderers.batch, "render_chunk", crash)
    summary = render_batch(jobs, tmp_path / "b", CFG, workers=1, progress=False)
    assert summary.failed == len(jobs)
    assert set(summary.failures.values()) == {"worker failed: RuntimeError: worker died"}
