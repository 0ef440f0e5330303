"""Every dataset format through the CLI on its synthetic layout: render → train → evaluate → record, and
the leaderboard filtering by dataset. What each format is evaluated with follows what it has:
zero-shot where categories exist (all), text retrieval and captioning where captions describe the
shapes (Text2Shape, Cap3D; not ModelNet's class names), photo → shape only where photos exist (Pix3D)."""
import subprocess

import pytest

from conftest import PYTHON, python_env

FORMATS = ("modelnet40", "shapenet", "objaverse")
DB = "formats_cli"


@pytest.fixture(scope="module")
def format_runs(tmp_path_factory, store_dir, store_url):
    """``python -m harness with tiny <format> train.mode=full ...`` for each format, run side by side."""
    import pymongo

    procs = {}
    for fmt in FORMATS:
        work = tmp_path_factory.mktemp(fmt)
        cmd = [PYTHON, "-m", "harness", "with", "tiny", fmt, "train.mode=full", "train.epochs=1",
               "eval.bootstrap=20", "eval.log_samples=True", "render.workers=1", f"store.db={DB}"]
        procs[fmt] = subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=python_env(HARNESS_STORE_DIR=store_dir))
    outs = {fmt: proc.communicate(timeout=900) for fmt, proc in procs.items()}
    client = pymongo.MongoClient(store_url, serverSelectionTimeoutMS=5000)
    docs = {}
    for fmt, (_, stderr) in outs.items():
        assert procs[fmt].returncode == 0, f"{fmt}:\n{stderr[-3000:]}"
        docs[fmt] = client[DB].runs.find_one({"config.data.format": fmt}, sort=[("_id", -1)])
        assert docs[fmt] is not None and docs[fmt]["status"] == "COMPLETED", fmt
    yield docs, client[DB], outs
    client.drop_database(DB)
    client.close()


def test_modelnet40_is_classified_zero_shot_not_retrieved_by_class_names(format_runs):
    docs, _, outs = format_runs
    result = docs["modelnet40"]["result"]
    m, prov = result["metrics"], result["provenance"]
    assert prov["dataset_format"] == "modelnet40" and prov["split"].startswith("provided-")
    assert 0 <= m["zs_top1"] <= m["zs_top5"] <= 1 and "zs_top1" in result["ci95"]
    assert 0 <= m["probe_top1"] <= 1
    # its captions only name the class: no text retrieval, no captioning, and the record says why
    assert not any(k.startswith(("i2t_", "t2i_", "t2s_", "cap_", "photo2shape_", "zs_photo")) for k in m)
    assert prov["text_tasks"].startswith("skipped: the evaluated shapes' captions only name their class")
    assert prov["captioning"] == "skipped: class-level captions only"
    assert prov["counts"]["described_shapes"] == 0 and prov["counts"]["shapes"] > 0
    assert "render_contact_sheet.png" in {a["name"] for a in docs["modelnet40"]["artifacts"]}
    stdout, stderr = outs["modelnet40"]
    assert "text retrieval and captioning skipped: the evaluated shapes' captions only name" in stderr
    assert any(line.split()[:2] == ["zs", "top1"] for line in stdout.splitlines() if line.strip())


@pytest.mark.parametrize("fmt", ["shapenet", "objaverse"])
def test_captioned_formats_get_text_retrieval_and_captioning(format_runs, fmt):
    docs, _, _ = format_runs
    result = docs[fmt]["result"]
    m, prov = result["metrics"], result["provenance"]
    assert prov["dataset_format"] == fmt
    for name in ("i2t_R@1", "t2i_R@5", "t2s_RR@1", "t2s_NDCG@5", "zs_top1", "probe_top1", "cap_gen_CIDEr",
                 "cap_ret_CIDEr"):
        assert name in m, (fmt, name)
    assert not any(k.startswith(("photo2shape_", "zs_photo")) for k in m)  # no photos
    counts = prov["counts"]
    assert 0 < counts["described_shapes"] <= counts["shapes"]
    assert "text_tasks" not in prov and prov["captioning"] == "done"


def test_the_leaderboard_tells_the_datasets_apart(format_runs):
    from leaderboard import queries as q

    _, db, _ = format_runs
    frame = q.load_runs(db)
    labels = dict(zip(frame["run_id"], frame["dataset"], strict=True))
    assert len(set(labels.values())) == len(FORMATS)
    for label in set(labels.values()):
        picked = q.filter_runs(frame, datasets=[label])
        assert len(picked) == 1 and picked["dataset"].iloc[0] == label
    modelnet = frame[frame["dataset"].str.startswith("modelnet40")]
    assert modelnet["zs_top1"].notna().all() and modelnet["i2t_R@1"].isna().all()
