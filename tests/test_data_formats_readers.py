"""The ModelNet40, ShapeNetCore (+ Text2Shape) and Objaverse (+ LVIS, Cap3D) readers on their synthetic
layouts: every quirk the generator writes is found and counted, bad input gets one clear error."""
import gzip
import json
import os
import shutil
import warnings

import numpy as np
import pytest

from harness.data import FORMATS, DatasetError, build_captions, make_split
from harness.data.formats.modelnet40 import load_modelnet
from harness.data.formats.objaverse import UNCATEGORIZED, load_objaverse
from harness.data.formats.shapenet import load_shapenet, read_taxonomy
from renderers import MeshWarning, load_mesh


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    return {f: FORMATS[f].generate(base / f, "tiny", 0, progress=False)
            for f in ("modelnet40", "shapenet", "objaverse")}


@pytest.fixture
def copy_of(roots, tmp_path):
    def copy(fmt):
        return shutil.copytree(roots[fmt], tmp_path / fmt)
    return copy


# -- ModelNet40 ------------------------------------------------------------------------------------

def test_modelnet_layout_split_and_merged_headers(roots):
    ds = load_modelnet(roots["modelnet40"])
    assert ds.format == "modelnet40" and len(ds.shapes) == 30 and ds.categories[:2] == ["bed", "bookshelf"]
    s = ds.shape("chair/train/chair_0001.off")
    assert (s.category, s.name, s.up_axis, s.photos) == ("chair", "chair_0001", "z", ())
    assert set(ds.provided_split.values()) == {"train", "test"}
    assert ds.provided_split["chair/test/chair_0005.off"] == "test"
    merged = [p for p in sorted(roots["modelnet40"].rglob("*.off")) if p.read_text()[3].isdigit()]
    assert len(merged) == ds.report.quirks["merged OFF header"] == 8
    for p in merged:  # parsed with every vertex the header declares
        n_v = int(p.read_text().split()[0][3:])
        assert len(load_mesh(str(p), normalize=False).vertices) == n_v


def test_modelnet_files_are_visibly_z_up(roots):
    ds = load_modelnet(roots["modelnet40"])
    for s in ds.shapes:
        if s.category in ("bookshelf", "chair"):  # taller than deep: the height is along z
            ext = load_mesh(str(s.mesh_path), normalize=False).extents
            assert ext[2] > ext[1], (s.key, ext)


def test_modelnet_bad_file_strict_and_lenient(copy_of):
    root = copy_of("modelnet40")
    (root / "chair/train/chair_0003.off").write_text("OF\n1 2 3\n")
    (root / "README").mkdir()  # a folder that is no class: counted, not fatal
    with pytest.raises(DatasetError, match=r"chair_0003.off: line 1: 'OF': expected the 'OFF' keyword or the "
                                           r"counts .*set data.strict=False to skip it"):
        load_modelnet(root)
    ds = load_modelnet(root, strict=False)
    assert len(ds.shapes) == 29 and ds.report.skipped[0]["path"] == "chair/train/chair_0003.off"
    assert ds.report.quirks["class folder without train/ or test/"] == 1


def test_modelnet_fingerprint_tracks_content(copy_of):
    root = copy_of("modelnet40")
    before = load_modelnet(root).fingerprint
    assert load_modelnet(root).fingerprint == before
    p = root / "bed/test/bed_0005.off"
    p.write_text(p.read_text().replace("0 ", "1 ", 1))
    assert load_modelnet(root).fingerprint != before


# -- ShapeNetCore + Text2Shape -----------------------------------------------------------------------

def test_shapenet_taxonomy_and_missing_entry(roots):
    ds = load_shapenet(roots["shapenet"])
    assert ds.format == "shapenet" and len(ds.shapes) == 24
    assert ds.categories == ["02933112", "bookshelf", "chair", "table"]
    assert ds.report.quirks["missing taxonomy entry"] == 1
    assert ds.report.examples["missing taxonomy entry"] == ["02933112"]
    assert ds.report.quirks["model folder without models/model_normalized.obj"] == 4
    s = ds.shapes[0]
    assert s.key.endswith("/models/model_normalized.obj") and s.name == s.key.split("/")[1]
    assert s.up_axis == "y"
    with warnings.catch_warnings():
        warnings.simplefilter("error", MeshWarning)  # textures under images/ are found
        for s in ds.shapes:
            assert len(load_mesh(str(s.mesh_path)).faces) > 0


def test_read_taxonomy_first_synonym_and_bad_entries(tmp_path):
    p = tmp_path / "taxonomy.json"
    p.write_text(json.dumps([{"synsetId": "04256520", "name": "sofa,couch,lounge", "children": [],
                              "numInstances": 3173}]))
    assert read_taxonomy(p) == {"04256520": "sofa"}
    p.write_text(json.dumps([{"synsetId": "04256520", "name": "sofa"}, {"synsetId": 42, "name": "x"}]))
    with pytest.raises(DatasetError, match=r"taxonomy.json entry 1: field 'synsetId' = 42: expected a "):
        read_taxonomy(p)
    p.write_text("{}")
    with pytest.raises(DatasetError, match="top level is a dict, expected a list"):
        read_taxonomy(p)


def test_text2shape_captions_and_quirks(roots):
    ds = load_shapenet(roots["shapenet"])
    assert ds.caption_source == "text2shape"
    chairs = [s.key for s in ds.shapes if s.category in ("chair", "table")]
    assert set(ds.native_captions) == set(chairs)
    assert all(len(ds.native_captions[k]) == 3 for k in chairs)
    assert ds.report.quirks["caption for a model not on disk"] == 2
    assert ds.report.quirks["empty Text2Shape description"] == 1
    caps = build_captions(ds)
    shelves = [s for s in ds.shapes if s.category == "bookshelf"]
    extents = [load_mesh(str(ds.mesh_file(s)), normalize=False).extents for s in shelves]
    shelf = shelves[max(range(len(shelves)), key=lambda i: extents[i][2] / extents[i][0])]  # the tallest
    assert caps[shelf.key][0] == "a 3D model of a bookshelf"
    assert caps[chairs[0]] == list(ds.native_captions[chairs[0]])


def test_text2shape_split_files_and_captions_file(roots, tmp_path):
    src = roots["shapenet"]
    folder = tmp_path / "t2s"
    (folder / "text2shape_splits").mkdir(parents=True)
    shutil.copy(src / "captions.tablechair.csv", folder / "my_captions.csv")
    ds = load_shapenet(src)
    ids = sorted(s.name for s in ds.shapes if s.category in ("chair", "table"))
    (folder / "text2shape_splits" / "train.txt").write_text("\n".join(ids[:4]) + "\n# a comment\n")
    (folder / "text2shape_splits" / "test.txt").write_text("\n".join(ids[4:]) + "\nfeedfacefeedface\n")
    with_split = load_shapenet(src, captions_file=folder / "my_captions.csv")
    split = make_split(with_split, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    assert sorted(k.split("/")[1] for k in split.test) == ids[4:]
    assert len(split.train) + len(split.val) == 4 and len(split.val) >= 1  # val carved from train
    assert len(split.unassigned) == 12  # bookshelves and cabinets: not in Text2Shape's split
    assert with_split.report.quirks["split entry for a model not on disk"] == 1
    assert with_split.fingerprint != ds.fingerprint
    (folder / "text2shape_splits" / "test.txt").write_text(ids[0] + "\n")
    with pytest.raises(DatasetError, match=rf"test.txt line 1: model '{ids[0]}' is already in train.txt"):
        load_shapenet(src, captions_file=folder / "my_captions.csv")
    (folder / "text2shape_splits" / "test.txt").unlink()
    with pytest.raises(DatasetError, match=r"split file\(s\) test.txt missing"):
        load_shapenet(src, captions_file=folder / "my_captions.csv")


def test_text2shape_bad_csv(copy_of):
    root = copy_of("shapenet")
    csv = root / "captions.tablechair.csv"
    csv.write_text("id,model,text\n1,a,b\n")
    with pytest.raises(DatasetError, match=r"captions.tablechair.csv line 1: columns "
                                           r"\['id', 'model', 'text'\] lack 'modelId' and 'description'"):
        load_shapenet(root)
    csv.write_text("id,modelId,description,category,topLevelSynsetId,subSynsetId\n1,abc,a chair, red,Chair\n")
    with pytest.raises(DatasetError, match="line 2: 5 fields, the header has 6"):
        load_shapenet(root)
    with pytest.raises(DatasetError, match=r"data.captions_file='nope.csv': file not found"):
        load_shapenet(root, captions_file="nope.csv")


# -- Objaverse + LVIS + Cap3D ------------------------------------------------------------------------

def test_objaverse_listing_and_index_quirks(roots):
    ds = load_objaverse(roots["objaverse"])
    assert ds.format == "objaverse" and ds.report.entries == 24 and len(ds.shapes) == 23
    q = ds.report.quirks
    assert q["caption uid without a GLB on disk"] == 3 and q["category uid without a GLB on disk"] == 2
    assert q["GLB without category or caption (left out)"] == 1
    assert len(ds.report.examples["caption uid without a GLB on disk"]) == 3
    s = ds.shapes[0]
    assert s.key.startswith("glbs/000-000/") and s.key.endswith(".glb") and s.name == s.key[13:-4]
    assert s.mesh_path == s.key and ds.mesh_file(s) == roots["objaverse"] / s.key and s.content_hash is None
    assert UNCATEGORIZED in ds.categories and ds.caption_source == "cap3d"
    uncategorized = [s for s in ds.shapes if s.category == UNCATEGORIZED]
    assert uncategorized and all(s.key in ds.native_captions for s in uncategorized)


def test_glb_without_material_loads(roots):
    ds = load_objaverse(roots["objaverse"])
    glb = sorted(p for p in (roots["objaverse"] / "glbs").rglob("*.glb"))
    bare = [p for p in glb if b'"material"' not in p.read_bytes()]
    assert len(bare) == 1
    with pytest.warns(MeshWarning, match="no material or colour; default grey used"):
        mesh = load_mesh(str(bare[0]))
    assert len(mesh.faces) > 0 and np.allclose(np.linalg.norm(mesh.vertices, axis=1).max(), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MeshWarning)  # the bare one again
        for s in ds.shapes[:5]:
            assert len(load_mesh(str(ds.mesh_file(s))).faces) > 0


def test_objaverse_gz_annotations_and_captions_choice(copy_of):
    root = copy_of("objaverse")
    before = load_objaverse(root)
    lvis = root / "lvis-annotations.json"
    (root / "lvis-annotations.json.gz").write_bytes(gzip.compress(lvis.read_bytes()))
    lvis.unlink()
    after = load_objaverse(root)
    assert [(s.key, s.category) for s in after.shapes] == [(s.key, s.category) for s in before.shapes]
    shutil.copy(root / "Cap3D_automated_Objaverse.csv", root / "Cap3D_automated_Objaverse_no3Dword.csv")
    with pytest.raises(DatasetError, match=r"several Cap3D files \(Cap3D_automated_Objaverse.csv, "
                                           r"Cap3D_automated_Objaverse_no3Dword.csv\); set "
                                           r"data.captions_file"):
        load_objaverse(root)
    chosen = load_objaverse(root, captions_file=root / "Cap3D_automated_Objaverse_no3Dword.csv")
    assert len(chosen.shapes) == len(before.shapes)
    bad = root / "bad.csv"
    bad.write_text("uid,a,b\n")
    with pytest.raises(DatasetError, match="bad.csv line 1: 3 fields, expected 2"):
        load_objaverse(root, captions_file=bad)


def test_objaverse_fingerprint_is_listing_based(copy_of):
    root = copy_of("objaverse")
    fp = load_objaverse(root).fingerprint
    glb = sorted((root / "glbs").rglob("*.glb"))[0]
    os.utime(glb, (1, 1))  # a copy that lost mtimes keeps its fingerprint (and its split)
    assert load_objaverse(root).fingerprint == fp
    shutil.copy(glb, glb.with_name("f" * 32 + ".glb"))  # one more object downloaded
    assert load_objaverse(root).fingerprint != fp
    (root / "glbs" / "000-000" / ("f" * 32 + ".glb")).unlink()
    assert load_objaverse(root).fingerprint == fp
    caps = root / "Cap3D_automated_Objaverse.csv"
    caps.write_text(caps.read_text().replace("a ", "an ", 1))  # the index files' bytes count
    assert load_objaverse(root).fingerprint != fp


def test_objaverse_without_index_files_is_one_clear_error(copy_of):
    root = copy_of("objaverse")
    (root / "lvis-annotations.json").unlink()
    (root / "Cap3D_automated_Objaverse.csv").unlink()
    with pytest.raises(DatasetError, match="neither lvis-annotations.json nor lvis-annotations.json.gz nor a "
                                           "Cap3D CSV"):
        load_objaverse(root)


def test_modelnet_shapes_render_upright(roots):
    """A Z-up bookshelf (tall along z in its file) renders tall in the image: the render stage turns
    it by its up axis (without that it would lie on its back, wider than tall)."""
    pytest.importorskip("moderngl")
    from types import SimpleNamespace

    from harness.commands.render import render_jobs
    from renderers import get_renderer

    ds = load_modelnet(roots["modelnet40"])
    shelves = [s for s in ds.shapes if s.category == "bookshelf"]
    extents = [load_mesh(str(ds.mesh_file(s)), normalize=False).extents for s in shelves]
    shelf = shelves[max(range(len(shelves)), key=lambda i: extents[i][2] / extents[i][0])]  # the tallest
    (job,) = render_jobs(SimpleNamespace(root=roots["modelnet40"], dataset=SimpleNamespace(shapes=[shelf])))
    assert job.orientation is not None
    from renderers.orientation import oriented

    renderer = get_renderer((64, 64), (1.0, 1.0, 1.0), 1)
    for orientation, upright in ((job.orientation, True), (None, False)):
        mesh = oriented(load_mesh(job.path, normalize=False), orientation)
        front = renderer.render(mesh, "ring8", elevation=0.0)[0]  # the front view, camera level
        rows, cols = np.nonzero((front < 250).any(axis=-1))
        height, width = np.ptp(rows), np.ptp(cols)
        assert bool(height > width) is upright, (orientation, height, width)


def test_objaverse_renders_are_identified_by_file_stamps_not_bytes(copy_of, monkeypatch):
    """800k GLBs are never read to decide whether a render is current: a (size, mtime) stamp per file."""
    from types import SimpleNamespace

    import renderers.content
    from harness.commands.render import content_hashes

    root = copy_of("objaverse")
    ds = load_objaverse(root)
    monkeypatch.setattr(renderers.content, "mesh_content_hash",
                        lambda *a, **k: pytest.fail("read a GLB's bytes to identify it"))
    prepared = SimpleNamespace(root=root, dataset=ds)
    first = content_hashes(prepared)
    assert len(first) == len(ds.shapes) and all(h.startswith("stamp-") for h in first.values())
    glb = ds.mesh_file(ds.shapes[0])
    os.utime(glb, ns=(1, 1))  # the file changed (or was copied): its renders are not reused
    again = content_hashes(SimpleNamespace(root=root, dataset=load_objaverse(root)))
    assert again[ds.shapes[0].key] != first[ds.shapes[0].key]
    assert again[ds.shapes[1].key] == first[ds.shapes[1].key]
