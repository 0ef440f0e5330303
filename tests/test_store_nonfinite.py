"""A NaN or infinity in a run never poisons the store: nx-27017 fails every filtered query of a collection
holding one ("malformed JSON"), so the push path stores null for a non-finite number."""
import datetime as dt
import math
import uuid

from test_tracking import unique_db

from runstore import SpoolRun, push_run
from runstore.push import json_safe


def test_json_safe_replaces_nan_and_infinity_everywhere():
    value = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (2, "x"), "e": None,
             "t": dt.datetime(2026, 1, 1)}
    assert json_safe(value) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2, "x"], "e": None,
                                "t": dt.datetime(2026, 1, 1)}


def test_a_run_holding_nan_keeps_its_collection_queryable(mongo_client, tmp_path):
    db = mongo_client[unique_db()]
    try:
        run = SpoolRun.create(tmp_path / "spool", {
            "meta": {"run_uid": uuid.uuid4().hex}, "status": "COMPLETED", "config": {"seed": 7},
            "info": {"per_shape": {"shapes": ["a", "b"], "i2t_R@1": [1.0, math.nan]}},
            "result": {"metrics": {"i2t_medR": math.inf, "i2t_R@1": 0.5}}, "artifacts": []})
        run.append_metrics({"train.loss": {"steps": [0, 1], "values": [2.0, math.nan],
                                           "timestamps": [dt.datetime(2026, 1, 1)] * 2}})
        run_id = push_run(db, run)
        doc = db.runs.find_one({"config.seed": 7})  # a filtered query: fails with a NaN stored
        assert doc["_id"] == run_id and doc["info"]["per_shape"]["i2t_R@1"] == [1.0, None]
        assert doc["result"]["metrics"] == {"i2t_medR": None, "i2t_R@1": 0.5}
        assert db.runs.count_documents({"status": "COMPLETED"}) == 1
        assert db.metrics.find_one({"run_id": run_id, "name": "train.loss"})["values"] == [2.0, None]
    finally:
        mongo_client.drop_database(db.name)
