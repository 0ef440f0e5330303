"""Incense (PyPI ``incense``) and a plain pymongo client against the embedded store, as on MongoDB."""
import datetime as dt

import gridfs

from interop.conftest import DB, DEAD, N_SEEDED, seeded_duration_ms


def test_incense_loads_a_runs_config_metrics_and_artifacts(store_url, interop_db):
    from incense import ExperimentLoader

    db, real_id = interop_db
    loader = ExperimentLoader(mongo_uri=store_url, db_name=DB)
    exp = loader.find_by_id(real_id)
    assert exp.id == real_id
    assert exp.config["model"]["name"] == "clip3d-tiny" and exp.config["train"]["epochs"] == 2
    stored = {m["name"]: m for m in db.metrics.find({"run_id": real_id})}
    assert set(exp.metrics.keys()) == set(stored) and "train.loss" in stored
    loss = exp.metrics["train.loss"]
    assert list(loss.index) == stored["train.loss"]["steps"]
    assert list(loss.values) == stored["train.loss"]["values"]
    fs = gridfs.GridFS(db)
    artifacts = {a["name"]: a["file_id"] for a in db.runs.find_one({"_id": real_id})["artifacts"]}
    assert set(exp.artifacts) == set(artifacts) and "render_contact_sheet.png" in artifacts
    for name, file_id in artifacts.items():
        assert exp.artifacts[name].content == fs.get(file_id).read(), name
    assert exp.artifacts["render_contact_sheet.png"].content.startswith(b"\x89PNG")
    # Incense's "latest" is the largest _id: numeric order, not text order ("9" > "13")
    assert [e.id for e in loader.find_latest(n=3, attr="_id")] == [real_id, 12, 11]
    assert loader.find_latest().id == real_id  # by start_time
    assert sorted(e.id for e in loader.find_by_name("seeded")) == list(range(1, N_SEEDED + 1))


def test_pymongo_sorts_and_aggregates_as_mongodb_would(interop_db):
    db, real_id = interop_db
    assert [d["_id"] for d in db.runs.find({}, {"_id": 1}).sort("_id", 1)] == list(range(1, real_id + 1))
    assert db.runs.find_one(sort=[("_id", -1)])["_id"] == real_id
    real = db.runs.find_one({"_id": real_id})
    out = list(db.runs.aggregate([
        {"$project": {"duration": {"$subtract": ["$heartbeat", "$start_time"]}, "status": 1}},
        {"$sort": {"duration": -1}}]))
    durations = {d["_id"]: d["duration"] for d in out}
    assert durations[real_id] == (real["heartbeat"] - real["start_time"]) // dt.timedelta(milliseconds=1)
    seeded = range(1, N_SEEDED + 1)
    assert {i: durations[i] for i in seeded} == {i: seeded_duration_ms(i) for i in seeded}
    assert [d["duration"] for d in out] == sorted(durations.values(), reverse=True)
    groups = db.runs.aggregate([{"$group": {"_id": "$status", "n": {"$sum": 1}}}])
    by_status = {d["_id"]: d["n"] for d in groups}
    assert by_status == {"COMPLETED": N_SEEDED, "RUNNING": 1}
    dead = db.runs.find_one({"_id": DEAD})
    since = db.runs.aggregate([{"$match": {"_id": DEAD}},
                               {"$project": {"age": {"$subtract": [dt.datetime(2027, 1, 1), "$heartbeat"]}}}])
    assert next(since)["age"] == (dt.datetime(2027, 1, 1) - dead["heartbeat"]) // dt.timedelta(milliseconds=1)
