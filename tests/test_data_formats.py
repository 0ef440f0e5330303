"""Dataset formats: the registry, detection and its one no-match error, prepare() for every format,
provided splits, class-level captions, config keys, and Pix3D unchanged (pinned fingerprint/split)."""
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from config_fixtures import default_config
from PIL import Image

import harness.data as hd
from conftest import PYTHON, python_env
from harness.data import FORMATS, DatasetError, detect_format
from harness.data.captions import CLASS_LEVEL, class_captions
from harness.data.splits import make_split

ROOT = Path(__file__).resolve().parents[1]


def data_cfg(root, **kw) -> dict:
    """The default ``data`` section (harness/experiment.py) for ``root``, nothing generated, with ``kw``."""
    return {**default_config()["data"], "root": str(root), "synth_preset": None, **kw}


@pytest.fixture(scope="module")
def synth_roots(tmp_path_factory):
    """The tiny synthetic stand-in of every non-Pix3D format, generated once."""
    base = tmp_path_factory.mktemp("formats")
    return {f: FORMATS[f].generate(base / f, "tiny", 0, progress=False)
            for f in ("modelnet40", "shapenet", "objaverse")}


# -- Pix3D: byte-for-byte the same ----------------------------------------------------------------

def _box_obj(path: Path, ext, colour: str):
    x, y, z = (e / 2 for e in ext)
    v = [(sx * x, sy * y, sz * z) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    quads = [(1, 3, 4, 2), (5, 6, 8, 7), (1, 2, 6, 5), (3, 7, 8, 4), (1, 5, 7, 3), (2, 4, 8, 6)]
    lines = ["mtllib model.mtl", "usemtl m"] + [f"v {a:g} {b:g} {c:g}" for a, b, c in v]
    lines += ["f " + " ".join(map(str, q)) for q in quads]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    (path.parent / "model.mtl").write_text(f"newmtl m\nKd {colour}\n")


GOLDEN = [("chair", "IKEA_POANG", (0.6, 1.0, 0.7), "0.45 0.28 0.14"),
          ("chair", "IKEA_JULES_1", (0.5, 0.9, 0.5), "0.1 0.1 0.1"),
          ("chair", "X_3", (0.5, 0.8, 0.5), "0.8 0.1 0.1"),
          ("chair", "IKEA_EKENAS", (0.7, 0.9, 0.7), "0.9 0.9 0.9"),
          ("table", "IKEA_LACK", (0.9, 0.45, 0.9), "0.9 0.9 0.9"),
          ("table", "IKEA_INGO", (1.2, 0.75, 0.75), "0.45 0.28 0.14"),
          ("table", "IKEA_MELLTORP", (0.75, 0.74, 0.75), "0.9 0.9 0.9"),
          ("bed", "IKEA_MALM_2", (1.6, 0.4, 2.0), "0.9 0.9 0.9")]


@pytest.fixture
def golden_pix3d(tmp_path):
    """A text-only Pix3D root whose fingerprint, split and captions were recorded before the format
    registry existed (so the figures below pin the Pix3D path)."""
    root = tmp_path / "pix3d"
    entries = []
    for i, (cat, name, ext, colour) in enumerate(GOLDEN):
        model = f"model/{cat}/{name}/model.obj"
        _box_obj(root / model, ext, colour)
        img, mask = f"img/{cat}/{i:04d}.png", f"mask/{cat}/{i:04d}.png"
        for rel in (img, mask):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 30), (120, 80, 40)).save(root / rel)
        entries.append({"img": img, "category": cat, "img_size": [40, 30], "mask": mask, "model": model,
                        "model_raw": None, "model_source": "IKEA",
                        "rot_mat": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "trans_mat": [0, 0, 2.5],
                        "focal_length": 35.0, "truncated": False, "occluded": "false",
                        "slightly_occluded": False, "bbox": [2, 3, 30, 25]})
    (root / "pix3d.json").write_text(json.dumps(entries))
    return root


@pytest.mark.parametrize("fmt", [None, "pix3d"])
def test_pix3d_path_is_unchanged(golden_pix3d, fmt):
    p = hd.prepare(data_cfg(golden_pix3d, format=fmt, split=dict(train=0.5, val=0.25, test=0.25)), seed=3,
                   progress=False)
    assert p.dataset.format == "pix3d" and p.dataset.fingerprint == "b110851edcce853b"
    assert p.split.split_id == "716e4f3af689"
    assert p.split.test == ("model/chair/IKEA_JULES_1/model.obj", "model/table/IKEA_MELLTORP/model.obj")
    assert p.split.val == ("model/chair/X_3/model.obj", "model/table/IKEA_LACK/model.obj")
    digest = hashlib.sha256(json.dumps(p.captions, sort_keys=True).encode()).hexdigest()
    assert digest == "572c697c40bbab01b58fedc5209a87374733bc4f07ca9ffab2fa3ab3e180f474"
    assert p.captions["model/chair/X_3/model.obj"] == ["a red chair", "a red chair from IKEA"]
    assert {s.up_axis for s in p.dataset.shapes} == {"y"}
    assert p.dataset.categories == ["bed", "chair", "table"]
    assert "quirks" not in p.dataset.report.as_dict()  # the run record's report is as before
    assert hd.caption_report(p.captions, p.dataset)["sources"] == {"pix3d-metadata": 8}


def test_up_axis_override_leaves_the_fingerprint(golden_pix3d):
    p = hd.prepare(data_cfg(golden_pix3d, up_axis="z"), seed=0, progress=False)
    assert {s.up_axis for s in p.dataset.shapes} == {"z"} and p.dataset.fingerprint == "b110851edcce853b"
    with pytest.raises(DatasetError, match=r"unknown data.up_axis='w'; choose one of x, y, z"):
        hd.prepare(data_cfg(golden_pix3d, up_axis="w"), seed=0, progress=False)


# -- registry and detection -----------------------------------------------------------------------

def test_registry_lists_every_format_with_its_interface():
    assert list(FORMATS)[:1] == ["pix3d"] and set(FORMATS) == {"pix3d", "modelnet40", "shapenet", "objaverse"}
    for name, fmt in FORMATS.items():
        assert fmt.name == name and fmt.looks_for and fmt.description and fmt.up_axis in hd.UP_AXES
        assert callable(fmt.detect) and callable(fmt.load) and callable(fmt.generate)
        assert "tiny" in fmt.presets
    assert FORMATS["modelnet40"].up_axis == "z" and FORMATS["pix3d"].has_photos
    assert not any(FORMATS[f].has_photos for f in ("modelnet40", "shapenet", "objaverse"))
    with pytest.raises(DatasetError, match="unknown data.format='modelnet'; choose one of pix3d, modelnet40"):
        FORMATS.lookup("modelnet")


def test_detection(synth_roots, golden_pix3d, tmp_path):
    for name, root in synth_roots.items():
        assert detect_format(root).name == name
    assert detect_format(golden_pix3d).name == "pix3d"
    assert detect_format(tmp_path / "absent") is None
    (tmp_path / "empty").mkdir()
    assert detect_format(tmp_path / "empty") is None
    both = tmp_path / "both"
    (both / "glbs").mkdir(parents=True)
    (both / "pix3d.json").write_text("[]")
    (both / "glbs" / "000-000").mkdir()
    (both / "glbs" / "000-000" / "a.glb").write_bytes(b"glTF")
    with pytest.raises(DatasetError, match=r"matches several dataset formats \(pix3d, objaverse\); "
                                           r"set data.format"):
        detect_format(both)


def test_a_root_matching_no_format_gets_one_error_listing_each(tmp_path):
    (tmp_path / "junk" / "stuff").mkdir(parents=True)
    with pytest.raises(DatasetError) as err:
        hd.prepare(data_cfg(tmp_path / "junk"), seed=0, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"no dataset found at {tmp_path / 'junk'}: it matches no format (looked for ")
    for fmt in FORMATS.values():
        assert f"{fmt.name}: {fmt.looks_for}" in msg
    assert "data.synth_preset is None" in msg and "point data.root at a dataset" in msg
    with pytest.raises(DatasetError, match=r"no modelnet40 dataset at .*looks for <class>/train/\*.off"):
        hd.prepare(data_cfg(tmp_path / "junk", format="modelnet40"), seed=0, progress=False)


def test_bad_format_and_up_axis_are_config_errors():
    from harness.config import ConfigError, validate_data
    with pytest.raises(ConfigError, match="unknown data.format='obj'; choose one of pix3d, modelnet40"):
        validate_data(data_cfg("x", format="obj"))
    with pytest.raises(ConfigError, match="unknown data.up_axis='-z'; choose one of x, y, z"):
        validate_data(data_cfg("x", up_axis="-z"))
    validate_data(data_cfg("x", format="objaverse", up_axis="z"))
    assert default_config()["data"]["format"] is None and default_config()["data"]["up_axis"] is None


# -- prepare() on every format ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["modelnet40", "shapenet", "objaverse"])
def test_prepare_generates_every_format_on_first_use(tmp_path, synth_roots, fmt):
    p = hd.prepare(data_cfg(tmp_path / fmt, format=fmt, synth_preset="tiny"), seed=0, progress=False)
    again = hd.prepare(data_cfg(synth_roots[fmt]), seed=0, progress=False)  # detected, not generated
    assert p.dataset.format == again.dataset.format == fmt
    assert p.dataset.fingerprint == again.dataset.fingerprint  # same seed: the same bytes
    assert [s.key for s in p.dataset.shapes] == [s.key for s in again.dataset.shapes]
    assert p.split == again.split and p.dataset.photos == [] and p.captions == again.captions
    assert set(p.captions) == {s.key for s in p.dataset.shapes} and all(p.captions.values())
    assert all(s.photos == () for s in p.dataset.shapes)
    assert {s.up_axis for s in p.dataset.shapes} == {FORMATS[fmt].up_axis}
    assert set(p.split.train).isdisjoint(p.split.test) and p.split.test and p.split.train
    assert (tmp_path / fmt / "synth.json").is_file() and not (tmp_path / f"{fmt}.partial").exists()


def test_modelnet_keeps_its_official_split_and_carves_val_by_seed(synth_roots):
    p = hd.prepare(data_cfg(synth_roots["modelnet40"]), seed=0, progress=False)
    assert all("/test/" in k for k in p.split.test)
    assert all("/train/" in k for k in p.split.train + p.split.val)
    assert len(p.split.test) == 10 and len(p.split.val) == 5 and len(p.split.train) == 15
    assert p.split.split_id.startswith("provided-")
    other = make_split(p.dataset, dict(train=0.7, val=0.1, test=0.2), seed=1)
    assert other.test == p.split.test and other.val != p.split.val  # the seed moves val only
    assert make_split(p.dataset, dict(train=0.7, val=0.1, test=0.2), seed=0) == p.split
    no_val = make_split(p.dataset, dict(train=0.8, val=0.0, test=0.2), seed=0)
    assert no_val.val == () and len(no_val.train) == 20


def test_class_level_captions_are_marked_in_the_report(synth_roots):
    p = hd.prepare(data_cfg(synth_roots["modelnet40"]), seed=0, progress=False)
    key = "night_stand/train/night_stand_0001.off"
    assert p.captions[key] == ["a 3D model of a night stand", "a night stand", "a rendering of a night stand"]
    report = hd.caption_report(p.captions, p.dataset)
    assert report["sources"] == {CLASS_LEVEL: 30} and report["class_level_shapes"] == 30
    assert class_captions("airplane")[0] == "a 3D model of an airplane"
    o = hd.prepare(data_cfg(synth_roots["objaverse"]), seed=0, progress=False)
    r = hd.caption_report(o.captions, o.dataset)
    assert r["sources"] == {"cap3d": 19, CLASS_LEVEL: 4} and r["class_level_shapes"] == 4


def test_jsonl_captions_extend_any_format_and_csv_goes_to_its_reader(synth_roots, tmp_path):
    root = synth_roots["modelnet40"]
    f = tmp_path / "extra.jsonl"
    f.write_text(json.dumps({"model": "chair/train/chair_0001.off", "captions": ["a tall red chair"]}) + "\n")
    p = hd.prepare(data_cfg(root, captions_file=str(f)), seed=0, progress=False)
    assert p.captions["chair/train/chair_0001.off"][-1] == "a tall red chair"
    csv = tmp_path / "caps.csv"
    csv.write_text("x,a chair\n")
    with pytest.raises(DatasetError, match=r"a CSV of captions is read by the objaverse, shapenet formats, "
                                           r"not modelnet40; give a JSONL file"):
        hd.prepare(data_cfg(root, captions_file=str(csv)), seed=0, progress=False)


def test_synth_cli_writes_each_layout(tmp_path):
    env = python_env()
    out = subprocess.run([PYTHON, "-m", "harness.data.synth", "--format", "modelnet40", "--preset",
                          "tiny", "--out", str(tmp_path / "m"), "--quiet"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "wrote tiny modelnet40 dataset" in out.stdout
    assert detect_format(tmp_path / "m").name == "modelnet40"
    bad = subprocess.run([PYTHON, "-m", "harness.data.synth", "--format", "ply", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "unknown data.format='ply'" in bad.stderr
    again = subprocess.run([PYTHON, "-m", "harness.data.synth", "--format", "modelnet40", "--out",
                            str(tmp_path / "m")],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert again.returncode == 2 and "exists and is not empty" in again.stderr
