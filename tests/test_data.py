"""Data layer: reader quirks and bad input, splits, synthetic generator, captions, prepare()."""
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

import harness.data as hd
from harness.data import captions as cap
from harness.data import synth
from harness.data.pix3d import Pix3DError, load_pix3d
from harness.data.splits import SplitError, SplitLeakError, make_split

# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny synthetic preset, generated once per session."""
    return synth.generate(tmp_path_factory.mktemp("synth") / "tiny", "tiny", seed=0, progress=False)


CUBE_MTL = "newmtl wood\nKd 0.45 0.28 0.14\nnewmtl steel\nKd 0.75 0.76 0.78\n"


def _obj(path: Path, extents, mtl="model.mtl"):
    m = trimesh.creation.box(extents=extents)
    lines = [f"mtllib {mtl}", "usemtl wood"] + [f"v {a} {b} {c}" for a, b, c in m.vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in m.faces[:10]]
    lines += ["usemtl steel"] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in m.faces[10:]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    (path.parent / mtl).write_text(CUBE_MTL)


def _photo(root: Path, rel: str, size=(40, 30)):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 80, 40)).save(p)


def _entry(img, model, cat, **kw):
    e = {"img": img, "category": cat, "img_size": [40, 30], "2d_keypoints": [],
         "mask": "mask/" + img[4:-4] + ".png",
         "img_source": "web", "model": model, "model_raw": None, "model_source": "IKEA",
         "3d_keypoints": "", "voxel": "", "rot_mat": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
         "trans_mat": [0, 0, 2.5], "focal_length": 35.0, "cam_position": [0, 0, -2.5],
         "inplane_rotation": 0.0, "truncated": False, "occluded": False, "slightly_occluded": False,
         "bbox": [2, 3, 30, 25]}
    e.update(kw)
    return e


@pytest.fixture
def handmade(tmp_path):
    """A small root with the real dataset's quirks: string booleans, null model_raw, several photos per
    shape, mixed extensions, two meshes in one folder, a known bad mask."""
    root = tmp_path / "pix3d"
    _obj(root / "model/bed/IKEA_MALM_2/model.obj", (1.6, 0.4, 2.0))
    _obj(root / "model/bed/IKEA_MALM_2/model_2.obj", (1.0, 0.4, 2.0), mtl="model_2.mtl")
    _obj(root / "model/bookcase/IKEA_BILLY_1/model.obj", (0.8, 2.0, 0.3))
    _obj(root / "model/table/IKEA_LACK/model.obj", (0.9, 0.45, 0.9))
    entries = [
        _entry("img/bed/0001.jpg", "model/bed/IKEA_MALM_2/model.obj", "bed", truncated="true"),
        _entry("img/bed/0002.png", "model/bed/IKEA_MALM_2/model.obj", "bed", occluded="false"),
        _entry("img/bed/0003.jpeg", "model/bed/IKEA_MALM_2/model_2.obj", "bed",
               model_raw="model/bed/raw.obj"),
        _entry("img/bookcase/0001.tiff", "model/bookcase/IKEA_BILLY_1/model.obj", "bookcase", occluded=True),
        _entry("img/table/0045.png", "model/table/IKEA_LACK/model.obj", "table"),
    ]
    for e in entries:
        _photo(root, e["img"])
        _photo(root, e["mask"])
    (root / "pix3d.json").write_text(json.dumps(entries))
    return root


# -- reader ---------------------------------------------------------------------------------------


def test_reader_handles_real_quirks(handmade):
    ds = load_pix3d(handmade)
    keys = [s.key for s in ds.shapes]
    assert keys == ["model/bed/IKEA_MALM_2/model.obj", "model/bed/IKEA_MALM_2/model_2.obj",
                    "model/bookcase/IKEA_BILLY_1/model.obj", "model/table/IKEA_LACK/model.obj"]
    bed = ds.shape("model/bed/IKEA_MALM_2/model.obj")
    assert [p.img for p in bed.photos] == ["img/bed/0001.jpg", "img/bed/0002.png"]
    assert bed.name == "IKEA_MALM_2" and bed.variant == "model" and bed.mesh_path.is_file()
    assert ds.shape("model/bed/IKEA_MALM_2/model_2.obj").variant == "model_2"
    p = {p.img: p for p in ds.photos}
    assert p["img/bed/0001.jpg"].truncated is True and p["img/bed/0002.png"].occluded is False
    assert p["img/bookcase/0001.tiff"].occluded is True
    assert p["img/table/0045.png"].bad_mask and not p["img/bed/0001.jpg"].bad_mask
    assert ds.report.bad_masks == ["img/table/0045.png"]
    assert p["img/bed/0001.jpg"].img_size == (40, 30) and p["img/bed/0001.jpg"].rot_mat[2] == (0.0, 0.0, 1.0)
    assert re.fullmatch(r"[0-9a-f]{16}", ds.fingerprint)


def test_bad_mask_list_is_for_real_photos_only(handmade):
    entries = json.loads((handmade / "pix3d.json").read_text())
    entries[4]["img_source"] = "clip3d-synth"
    (handmade / "pix3d.json").write_text(json.dumps(entries))
    ds = load_pix3d(handmade)
    assert ds.report.bad_masks == [] and not any(p.bad_mask for p in ds.photos)


def test_reader_filters(handmade):
    ds = load_pix3d(handmade, exclude_truncated=True, exclude_occluded=True)
    assert {p.img for p in ds.photos} == {"img/bed/0002.png", "img/bed/0003.jpeg", "img/table/0045.png"}
    assert ds.report.excluded_truncated == 1 and ds.report.excluded_occluded == 1
    assert len(ds.shapes) == 4  # shapes stay: a mesh without photos is still a shape


def test_fingerprint_tracks_mesh_content(handmade):
    before = load_pix3d(handmade).fingerprint
    assert load_pix3d(handmade).fingerprint == before
    obj = handmade / "model/table/IKEA_LACK/model.obj"
    obj.write_text(obj.read_text().replace("v 0.45", "v 0.46", 1))
    assert load_pix3d(handmade).fingerprint != before


BAD = [  # (mutation of entry 1, field, value shown in the message)
    (lambda e: e.pop("model"), "model", "None"),
    (lambda e: e.pop("category"), "category", "None"),
    (lambda e: e.update(category="lamp"), "category", "'lamp'"),
    (lambda e: e.update(rot_mat="identity"), "rot_mat", "'identity'"),
    (lambda e: e.update(trans_mat=[0, 0]), "trans_mat", "[0, 0]"),
    (lambda e: e.update(truncated=1), "truncated", "1"),
    (lambda e: e.update(img_size=[40]), "img_size", "[40]"),
    (lambda e: e.update(focal_length="35"), "focal_length", "'35'"),
    (lambda e: e.update(model="model/bed/NOPE/model.obj"), "model", "'model/bed/NOPE/model.obj'"),
    (lambda e: e.update(img="img/bed/9999.png"), "img", "'img/bed/9999.png'"),
    (lambda e: e.update(bbox=[2, 3, 41, 25]), "bbox", "[2, 3, 41, 25]"),
    (lambda e: e.update(bbox=[-1, 3, 30, 25]), "bbox", "[-1, 3, 30, 25]"),
    (lambda e: e.update(img="img/bed/0002.gif"), "img", "'img/bed/0002.gif'"),
]


@pytest.mark.parametrize("mutate,field,shown", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_entry_names_index_field_value(handmade, mutate, field, shown):
    entries = json.loads((handmade / "pix3d.json").read_text())
    mutate(entries[1])
    (handmade / "pix3d.json").write_text(json.dumps(entries))
    with pytest.raises(Pix3DError) as ei:
        load_pix3d(handmade)
    msg = str(ei.value)
    assert msg.startswith(f"pix3d.json entry 1: field '{field}' = {shown}"), msg
    assert (ei.value.index, ei.value.field) == (1, field)
    ds = load_pix3d(handmade, strict=False)  # lenient: skipped and counted, the rest loads
    assert len(ds.photos) == 4 and ds.report.as_dict()["skipped"] == 1
    assert ds.report.skipped[0]["index"] == 1 and ds.report.skipped[0]["field"] == field


def test_duplicate_photo_is_an_error(handmade):
    entries = json.loads((handmade / "pix3d.json").read_text())
    (handmade / "pix3d.json").write_text(json.dumps(entries + [copy.deepcopy(entries[0])]))
    with pytest.raises(Pix3DError, match=r"entry 5: field 'img' = 'img/bed/0001.jpg': duplicate"):
        load_pix3d(handmade)


@pytest.mark.parametrize("text,match", [("[{", "is not valid JSON: .* line 1"),
                                        ('{"img": 1}', "top level is a dict, expected a list")])
def test_bad_json_file(tmp_path, text, match):
    (tmp_path / "pix3d.json").write_text(text)
    for strict in (True, False):  # a broken file cannot be skipped around
        with pytest.raises(Pix3DError, match=match):
            load_pix3d(tmp_path, strict=strict)


def test_missing_root_names_fix(tmp_path):
    with pytest.raises(Pix3DError, match="must hold pix3d.json"):
        load_pix3d(tmp_path)


def test_reader_on_tiny_preset(tiny):
    ds = load_pix3d(tiny)
    assert ds.categories == list(hd.CATEGORIES)
    counts = {c: sum(s.category == c for s in ds.shapes) for c in hd.CATEGORIES}
    assert all(n >= 2 for n in counts.values())
    assert any(s.variant != "model" for s in ds.shapes)  # a folder with two meshes
    assert all(len(s.photos) >= 2 for s in ds.shapes) and ds.report.skipped == []


def test_reader_on_small_preset(tmp_path):
    root = synth.generate(tmp_path / "small", "small", seed=0, progress=False)
    ds = load_pix3d(root)
    assert len(ds.shapes) == 99 and len(ds.photos) == 396 and ds.report.skipped == []
    assert sum(s.variant != "model" for s in ds.shapes) == 2
    sp = make_split(ds, seed=0)
    assert len(sp.test) == 9 * 2 and len(sp.val) == 9 and len(sp.train) == 99 - 27


def test_reader_on_pix3d_preset(tmp_path):
    """The Pix3D-sized preset (minutes to generate): Pix3D's shape count and category balance."""
    root = synth.generate(tmp_path / "pix3d", "pix3d", seed=0, progress=False)
    ds = load_pix3d(root)
    assert len(ds.shapes) == 395 and ds.report.skipped == []
    assert 9_000 <= len(ds.photos) <= 11_000
    counts = {c: sum(s.category == c for s in ds.shapes) for c in hd.CATEGORIES}
    assert max(counts, key=counts.get) == "chair"  # as in Pix3D, chairs dominate
    sp = make_split(ds, seed=0)
    assert not set(sp.train) & set(sp.test) and len(sp.train) + len(sp.val) + len(sp.test) == 395


# -- splits ---------------------------------------------------------------------------------------


def test_split_disjoint_stratified_covering(tiny):
    ds = load_pix3d(tiny)
    sp = make_split(ds, seed=0)
    tr, va, te = set(sp.train), set(sp.val), set(sp.test)
    assert not (tr & va or tr & te or va & te)
    assert tr | va | te == {s.key for s in ds.shapes}
    for c in ds.categories:  # 3 shapes per category: one in each split
        n = {name: sum(ds.shape(k).category == c for k in getattr(sp, name))
             for name in ("train", "val", "test")}
        assert n["train"] >= 1 and n["test"] >= 1, (c, n)
    assert all(p.model in te for p in sp.photos(ds, "test"))
    assert sp.of(sp.test[0]) == "test"
    with pytest.raises(SplitLeakError, match="test shapes are for the final evaluation only"):
        sp.check_not_test(list(sp.train) + [sp.test[0]], "model selection")
    sp.check_not_test(sp.train + sp.val)


def test_split_seed_and_process_stability(tiny):
    ds = load_pix3d(tiny)
    a, b = make_split(ds, seed=0), make_split(ds, seed=1)
    assert a != b and a.split_id != b.split_id
    code = ("import json,sys; from harness.data import load_pix3d, make_split; "
            "s = make_split(load_pix3d(sys.argv[1]), seed=0); print(json.dumps(s.as_dict()))")
    out = subprocess.run([sys.executable, "-c", code, str(tiny)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == a.as_dict()


def test_split_fractions_validated(tiny):
    ds = load_pix3d(tiny)
    with pytest.raises(SplitError, match="summing to 1"):
        make_split(ds, {"train": 0.5, "val": 0.1, "test": 0.1})
    with pytest.raises(SplitError, match="unknown key"):
        make_split(ds, {"train": 0.8, "dev": 0.2})


def test_split_file(tiny, tmp_path):
    ds = load_pix3d(tiny)
    keys = [s.key for s in ds.shapes]
    f = tmp_path / "split.json"
    f.write_text(json.dumps({"train": keys[:10], "val": keys[10:12], "test": keys[12:20]}))
    sp = make_split(ds, split_file=f)
    assert sp.train == tuple(sorted(keys[:10])) and len(sp.unassigned) == len(keys) - 20
    assert sp.split_id.startswith("file-")
    f.write_text(json.dumps({"train": keys[:3], "test": keys[2:4]}))
    with pytest.raises(SplitError, match="is in both 'train' and 'test'"):
        make_split(ds, split_file=f)
    f.write_text(json.dumps({"train": ["model/chair/X/model.obj"]}))
    with pytest.raises(SplitError, match="'model/chair/X/model.obj', which is not a shape"):
        make_split(ds, split_file=f)


# -- synthetic generator --------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    again = synth.generate(tmp_path / "again", "tiny", seed=0, progress=False)
    assert (again / "pix3d.json").read_bytes() == (tiny / "pix3d.json").read_bytes()
    assert (again / "attributes.json").read_bytes() == (tiny / "attributes.json").read_bytes()
    obj = "model/chair/SYN_chair_0000/model.obj"
    assert (again / obj).read_bytes() == (tiny / obj).read_bytes()
    other = synth.plan("tiny", 1)
    assert [t["key"] for t in other] == [t["key"] for t in synth.plan("tiny", 0)]
    assert synth._build_shape(other[0], 1).attributes != synth._build_shape(other[0], 0).attributes or \
        synth._build_shape(other[0], 1).colours != synth._build_shape(other[0], 0).colours


def test_meshes_load_clean_and_attributes_match_geometry(tiny):
    attrs = cap.load_attributes(tiny)
    for key, a in attrs.items():
        m = trimesh.load(tiny / key, force="mesh")
        assert len(m.faces) > 0 and np.isfinite(m.vertices).all(), key
        assert 0.01 < m.extents.max() < 3.0, (key, m.extents)  # metre scale
        parts = re.findall(r"^o (\S+)$", (tiny / key).read_text(), flags=re.M)
        at = a["attributes"]
        if a["category"] == "chair":
            assert sum(p.startswith("leg") for p in parts) == at["legs"]
            assert ("armrest_left" in parts) == at["armrests"]
        if a["category"] == "bookcase":
            assert sum(p.startswith("shelf") for p in parts) == at["shelves"] - 1
        if a["category"] == "wardrobe":
            assert sum(p.startswith("door") for p in parts) == at["doors"]
        if a["category"] == "desk":
            assert sum(p.startswith("drawer") for p in parts) == at["drawers"]
        mtl = (tiny / key).with_suffix(".mtl").read_text()
        assert set(re.findall(r"^newmtl (\S+)$", mtl, flags=re.M)) == set(a["colours"])


@pytest.mark.parametrize("category", ["chair", "bookcase", "sofa", "wardrobe", "desk", "bed", "table"])
def test_captions_agree_with_attributes(category):
    rng = np.random.default_rng(5)
    from harness.data.synth_meshes import BUILDERS
    for _ in range(25):
        s = BUILDERS[category](rng)
        caps = cap.synthetic_captions(category, s.attributes, s.colours, s.material)
        assert len(caps) >= 4 and len(set(caps)) == len(caps)
        text = " | ".join(caps)
        a = s.attributes
        main = next(iter(s.colours.values()))
        assert all(main in c for c in caps), caps
        if category == "chair":
            word = cap.NUMBER_WORDS[a["legs"]]
            assert all(word in c for c in caps[:2]) and cap.NUMBER_WORDS[7 - a["legs"]] not in text
            assert ("armchair" in text or "with" in text and "armrests" in caps[0].split("without")[0]) == \
                a["armrests"]
        if category == "bookcase":
            assert f"{cap.NUMBER_WORDS[a['shelves']]} shel" in text and a["height"] in caps[1]
        if category == "sofa":
            assert f"{cap.NUMBER_WORDS[a['seats']]}-seater" in text
        if category == "wardrobe":
            assert f"{cap.NUMBER_WORDS[a['doors']]}-door" in text
        if category == "desk":
            want = f"{cap.NUMBER_WORDS[a['drawers']]} drawer" if a["drawers"] else "without drawers"
            assert want in text
        if category == "bed":
            assert a["size"] in text and ("without a headboard" in text) != a["headboard"]
        if category == "table":
            assert a["top"] in caps[1] and ("pedestal" in text) == (a["base"] == "pedestal")


def _read_mask(path):
    return np.asarray(Image.open(path)) > 127


def test_photos_agree_with_pix3d_json(tiny):
    """Re-render each pose from pix3d.json values and the mesh file alone; compare with the saved mask."""
    renderers = pytest.importorskip("renderers")
    entries = json.loads((tiny / "pix3d.json").read_text())
    cache = {}
    for e in entries[::3]:
        w, h = e["img_size"]
        img = Image.open(tiny / e["img"])
        assert img.size == (w, h)
        mask = _read_mask(tiny / e["mask"])
        ys, xs = np.nonzero(mask)
        assert e["bbox"] == [xs.min(), ys.min(), xs.max(), ys.max()]
        r = cache.setdefault((w, h), renderers.Renderer(size=(w, h)))
        alpha = r.render(str(tiny / e["model"]), rig="pose", rot_mat=e["rot_mat"], trans_mat=e["trans_mat"],
                         focal_length=e["focal_length"], img_size=(w, h), rgba=True)[0, ..., 3] >= 128
        iou = (alpha & mask).sum() / (alpha | mask).sum()
        assert iou > 0.9, (e["img"], iou)


def test_generation_is_atomic_and_resumes(tmp_path, monkeypatch, tiny):
    out = tmp_path / "ds"
    real = synth._make_shape
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt("killed")
        return real(*a, **k)

    monkeypatch.setattr(synth, "_make_shape", dying)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(out, "tiny", seed=0, progress=False)
    assert not (out / "pix3d.json").exists()
    assert len(list((tmp_path / "ds.partial" / ".progress").glob("0*.json"))) == 5
    monkeypatch.setattr(synth, "_make_shape", real)
    calls["n"] = 0
    synth.generate(out, "tiny", seed=0, progress=False)
    assert (out / "pix3d.json").read_bytes() == (tiny / "pix3d.json").read_bytes()
    assert not (tmp_path / "ds.partial").exists()
    with pytest.raises(hd.SynthError, match="already holds a dataset"):
        synth.generate(out, "tiny", seed=0, progress=False)
    with pytest.raises(hd.SynthError, match="unknown data.synth_preset='huge'; choose one of "):
        synth.generate(tmp_path / "x", "huge")


def test_cli(tmp_path):
    assert synth.main(["--out", str(tmp_path / "t"), "--preset", "tiny", "--seed", "3", "--quiet"]) == 0
    assert (tmp_path / "t" / "pix3d.json").is_file()
    assert synth.main(["--out", str(tmp_path / "t"), "--preset", "tiny", "--quiet"]) == 2


# -- captions -------------------------------------------------------------------------------------


def test_real_captions_from_metadata(handmade):
    ds = load_pix3d(handmade)
    caps = hd.build_captions(ds)
    bed = caps["model/bed/IKEA_MALM_2/model.obj"]
    assert "IKEA MALM bed" in bed and any("from IKEA" in c for c in bed)
    # the wood material covers more faces than steel: brown
    assert all("brown" in c for c in bed if "IKEA MALM bed" != c)
    assert any("low" in c for c in bed)
    assert any("tall" in c for c in caps["model/bookcase/IKEA_BILLY_1/model.obj"])
    assert cap.product_name("IKEA_MALM_2") == "IKEA MALM" and cap.product_name("SS_002") is None
    assert cap.proportion_words((0.8, 0.3, 0.6)) == ["low"]
    assert cap.proportion_words((2.0, 1.0, 0.5)) == ["wide"]


def test_captions_file_extend_replace_and_errors(handmade, tmp_path):
    ds = load_pix3d(handmade)
    f = tmp_path / "caps.jsonl"
    key = "model/table/IKEA_LACK/model.obj"
    f.write_text(json.dumps({"model": key, "captions": ["a small side table"]}) + "\n\n")
    gen = hd.build_captions(ds)
    ext = hd.build_captions(ds, f, "extend")
    rep = hd.build_captions(ds, f, "replace")
    assert ext[key] == gen[key] + ["a small side table"] and rep[key] == ["a small side table"]
    assert rep["model/bed/IKEA_MALM_2/model.obj"] == gen["model/bed/IKEA_MALM_2/model.obj"]
    f.write_text(json.dumps({"model": "model/x/y/model.obj", "captions": ["x"]}) + "\n")
    with pytest.raises(hd.CaptionsError, match="line 1: model 'model/x/y/model.obj' is not a shape"):
        hd.build_captions(ds, f)
    f.write_text(json.dumps({"model": key, "captions": []}) + "\n")
    with pytest.raises(hd.CaptionsError, match="line 1: 'captions' = \\[\\] must be a non-empty list"):
        hd.build_captions(ds, f)
    with pytest.raises(hd.CaptionsError, match="choose one of extend, replace"):
        hd.build_captions(ds, None, "merge")


def test_caption_report(tiny):
    caps = hd.build_captions(load_pix3d(tiny))
    r = hd.caption_report(caps)
    assert r["shapes"] == 27 and r["captions"] == sum(len(v) for v in caps.values())
    assert r["distinct"] > 0.9 * r["captions"] and r["vocab_size"] > 50
    assert hd.caption_report({"k": ["a red chair", "a red chair"]})["distinct"] == 1
    assert hd.caption_report({"k": ["a red chair", "a red chair"]})["vocab_size"] == 3


# -- prepare --------------------------------------------------------------------------------------


def test_prepare_generates_then_loads(tmp_path, tiny):
    cfg = dict(root=str(tmp_path / "gen"), format=None, up_axis=None, synth_preset="tiny", synth_seed=0,
               split=dict(train=0.7, val=0.1, test=0.2), split_file=None, strict=True,
               exclude_truncated=False, exclude_occluded=False, captions_file=None, captions_mode="extend")
    p = hd.prepare(cfg, seed=0, progress=False)
    assert (Path(cfg["root"]) / "pix3d.json").read_bytes() == (tiny / "pix3d.json").read_bytes()
    assert p.split == make_split(load_pix3d(tiny), seed=0)  # same content, same fingerprint, same split
    assert set(p.captions) == {s.key for s in p.dataset.shapes}
    with pytest.raises(hd.DatasetError, match="no dataset found .* and data.synth_preset is None"):
        hd.prepare(dict(cfg, root=str(tmp_path / "none"), synth_preset=None), seed=0)
