"""The default command end to end: render → train → evaluate recorded as one run in the store."""
import re
import subprocess

import pytest

from conftest import PYTHON, python_env

KEY = re.compile(r"^[A-Za-z0-9_@-]+$")


def _walk_keys(value, path="result"):
    if isinstance(value, dict):
        for key, sub in value.items():
            assert KEY.match(key), f"{path}: key {key!r} has characters MongoDB paths or the schema forbid"
            yield from _walk_keys(sub, f"{path}.{key}")
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _walk_keys(sub, f"{path}[{i}]")
    else:
        yield path, value


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, store_dir, store_url):
    """One real `python -m harness with tiny ...` run in a fresh work dir, recorded in the test store."""
    import pymongo

    work = tmp_path_factory.mktemp("pipeline")
    cmd = [PYTHON, "-m", "harness", "with", "tiny", "train.mode=full", "train.epochs=2", "train.lr=0.0007",
           "seed=3", "eval.bootstrap=50", "eval.views=[1,4]", "eval.rotation=so3", "eval.log_samples=True"]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=900,
                         env=python_env(HARNESS_STORE_DIR=store_dir))
    assert out.returncode == 0, out.stderr[-3000:]
    client = pymongo.MongoClient(store_url, serverSelectionTimeoutMS=5000)
    doc = client.clip3d.runs.find_one({"config.seed": 3, "config.train.lr": 0.0007},
                                      sort=[("_id", -1)])
    assert doc is not None, "the run was not recorded in the store"
    yield doc, client.clip3d, work, out
    client.close()


def test_run_record_follows_the_schema(tiny_run):
    doc, _, _, _ = tiny_run
    assert doc["status"] == "COMPLETED"
    assert "\r" not in doc["captured_out"]  # tqdm redraws are filtered out of the captured output
    result = doc["result"]
    assert set(result) >= {"metrics", "ci95", "per_category", "throughput", "provenance"}
    for path, value in _walk_keys(result):
        assert value is None or isinstance(value, (str, int, float, bool)), f"{path} is {type(value)}"
    metrics = result["metrics"]
    for name in ("i2t_R@1", "i2t_R@5", "i2t_R@10", "i2t_mAP", "i2t_medR", "t2i_R@1", "t2i_R@5",
                 "photo2shape_R@1", "cap_ret_BLEU-4", "cap_ret_METEOR", "cap_ret_ROUGE_L", "cap_ret_CIDEr",
                 "cap_gen_CIDEr"):
        assert name in metrics, name
        assert 0 <= metrics[name] or name.endswith("medR")
    for name in ("i2t_R@1", "t2i_R@5"):
        lo, hi = result["ci95"][name]
        assert lo <= metrics[name] <= hi
    assert set(result["per_category"]) <= {"bed", "bookcase", "chair", "desk", "misc", "sofa", "table",
                                           "tool", "wardrobe"}
    assert result["throughput"]["device"] == "cpu"
    assert result["throughput"]["train_samples_per_s"] > 0
    prov = result["provenance"]
    assert prov["model"] == "clip3d-tiny" and prov["seed"] == 3
    assert len(prov["weights_sha256"]) == 64
    assert prov["render_config_id"].startswith("ring12-64x64-")
    assert prov["dataset_fingerprint"] and prov["split"]


def test_overrides_reach_every_part(tiny_run):
    doc, _, _, _ = tiny_run
    cfg = doc["config"]
    assert cfg["train"]["lr"] == 0.0007 and cfg["train"]["mode"] == "full"
    assert cfg["seed"] == 3 and cfg["render"]["size"] == 64 and cfg["data"]["synth_preset"] == "tiny"
    assert doc["result"]["provenance"]["seed"] == 3
    assert doc["info"]["params"]["trainable"] == doc["info"]["params"]["total"] > 0


def test_curves_and_artifacts_are_recorded(tiny_run):
    doc, db, _, _ = tiny_run
    names = {m["name"] for m in doc["info"].get("metrics", [])}
    assert any(n.startswith("train.") for n in names), names
    curve = db.metrics.find_one({"run_id": doc["_id"], "name": "train.loss"})
    assert curve is not None and len(curve["values"]) == len(curve["steps"]) > 0
    artifacts = {a["name"] for a in doc["artifacts"]}
    assert any("contact" in a for a in artifacts), artifacts
    assert any("retrieval" in a for a in artifacts), artifacts
    assert any("caption" in a for a in artifacts), artifacts


def test_protocol_fields_through_the_cli(tiny_run, tmp_path):
    """eval.views, eval.rotation and eval.log_samples given on the command line reach the record."""
    import gridfs

    from harness.evaluation.samples import read_samples

    doc, db, _, _ = tiny_run
    result = doc["result"]
    m = result["metrics"]
    for name in ("zs_top1", "zs_photo_top1", "t2s_RR@1", "t2s_NDCG@5", "probe_top1"):
        assert 0 <= m[name] <= 1, name
    assert list(result["by_views"]) == ["1", "4"]
    assert all(isinstance(v, float) for v in result["by_views"]["4"].values())
    assert {"i2t_R@1", "zs_top1", "t2s_RR@1", "photo2shape_R@1"} <= set(result["by_views"]["1"])
    assert set(result["by_rotation"]) == {"so3"} and "zs_top1" in result["by_rotation"]["so3"]
    assert result["provenance"]["rotation"]["so3"]["failed"] == 0
    assert result["throughput"]["eval_rotation_seconds"] > 0
    (artifact,) = [a for a in doc["artifacts"] if a["name"] == "samples.jsonl.gz"]
    path = tmp_path / "samples.jsonl.gz"
    path.write_bytes(gridfs.GridFS(db).get(artifact["file_id"]).read())
    lines = read_samples(path)
    i2t = [ln for ln in lines if ln["task"] == "i2t"]
    assert len(i2t) == result["provenance"]["counts"]["shapes"]
    assert sum(ln["rank"] == 1 for ln in i2t) / len(i2t) == pytest.approx(m["i2t_R@1"])


def test_rerun_reuses_dataset_and_renders(tiny_run, store_dir):
    _, _, work, first = tiny_run
    out = subprocess.run([PYTHON, "-m", "harness", "render", "with", "tiny"], cwd=work, capture_output=True,
                         text=True, timeout=600, env=python_env(HARNESS_STORE_DIR=store_dir))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "synth tiny" not in out.stderr  # not generated again
    assert re.search(r"skipped['\"]?: ?27|27 skipped|already", out.stdout + out.stderr), out.stdout[-2000:]


def test_torchrun_ddp_train_records_one_run(tiny_run, store_dir, mongo_client):
    """`torchrun --nproc_per_node 2 -m harness train` on gloo: both ranks train, rank 0 records."""
    _, _, work, _ = tiny_run
    before = mongo_client.clip3d.runs.count_documents({"command": "train"})
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "harness", "train", "with", "tiny", "train.epochs=1", "train.batch_size=4", "seed=11"]
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=900,
                         env=python_env(HARNESS_STORE_DIR=store_dir, OMP_NUM_THREADS=1))
    assert out.returncode == 0, out.stderr[-3000:]
    docs = list(mongo_client.clip3d.runs.find({"command": "train", "config.seed": 11}))
    assert len(docs) == 1 and docs[0]["status"] == "COMPLETED"
    assert mongo_client.clip3d.runs.count_documents({"command": "train"}) == before + 1
    assert docs[0]["info"]["params"]["trainable"] > 0
