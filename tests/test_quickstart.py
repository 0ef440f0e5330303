"""The quickstart's closing table is read back from the store."""
from harness.quickstart import SHOWN, stored_table


def test_stored_table_reads_runs_back_from_the_store(mongo_client):
    mongo_client.drop_database("qs_table")
    db = mongo_client["qs_table"]
    db.runs.insert_one({"_id": 7, "status": "COMPLETED",
                        "config": {"model": {"name": "clip3d-tiny", "pretrained": None, "pooling": "mean"},
                                   "train": {"mode": "full"}},
                        "result": {"metrics": {"i2t_R@1": 0.27777, "i2t_R@5": 0.5556}}})
    lines = stored_table(db, [7, 8]).splitlines()
    assert lines[0].split() == ["run_id", "model", "pretrained", "mode", "pooling", "status", *SHOWN]
    assert lines[1].split()[:8] == ["7", "clip3d-tiny", "-", "full", "mean", "COMPLETED", "0.278", "0.556"]
    assert "NOT IN THE STORE" in lines[2]
    mongo_client.drop_database("qs_table")
