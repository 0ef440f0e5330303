"""The embedded store answers like MongoDB where the Sacred ecosystem looks (runstore/embedded.py).

A pymongo client against the session's embedded server (nx-27017 started through runstore.embedded),
each expectation taken from MongoDB's documented semantics:
- hello / isMaster: https://www.mongodb.com/docs/manual/reference/command/hello/ (real servers report
  minWireVersion 0);
- sort order: https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/;
- $subtract / $add: https://www.mongodb.com/docs/manual/reference/operator/aggregation/subtract/ (date −
  date → milliseconds, date − number → date) and .../aggregation/add/.
"""
import datetime as dt
import random
import subprocess

import pymongo
import pytest
from bson import Binary, Decimal128, Int64, ObjectId

from conftest import PYTHON, python_env
from runstore import EmbeddedServer, StoreError, embedded, semantics

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


@pytest.fixture
def db(mongo_client, request):
    name = "sem_" + request.node.name[:40].replace("[", "_").replace("]", "").replace("-", "_")
    mongo_client.drop_database(name)
    yield mongo_client[name]
    mongo_client.drop_database(name)


def ids(cursor):
    return [d["_id"] for d in cursor]


def seed_twelve(coll):
    order = list(range(1, 13))
    random.Random(3).shuffle(order)  # insertion order must not matter
    coll.insert_many([{"_id": i, "start_time": T0 + dt.timedelta(hours=i),
                       "heartbeat": T0 + dt.timedelta(hours=i, minutes=i, seconds=5),
                       "status": "RUNNING" if i == 7 else "COMPLETED", "n": i} for i in order])


# ---- handshake ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["hello", "isMaster", "ismaster"])
def test_handshake_reports_min_wire_version_0_like_mongodb(mongo_client, command):
    reply = mongo_client.admin.command(command)
    assert reply["ok"] == 1
    assert reply["minWireVersion"] == 0  # nx-27017 says 17: Node driver 3.x (Omniboard) refuses > 13
    assert reply["maxWireVersion"] >= 13
    if command == "hello":
        assert reply["isWritablePrimary"] is True
    else:
        assert reply["ismaster"] is True


def test_launcher_is_recorded_in_the_state_file(store_dir):
    import json

    state = json.loads((store_dir / EmbeddedServer.STATE).read_text())
    assert state["launcher"] == embedded.LAUNCHER


# ---- sort order --------------------------------------------------------------------------------


def test_find_sorts_integer_ids_numerically(db):
    seed_twelve(db.runs)
    assert ids(db.runs.find({}, {"_id": 1}).sort("_id", 1)) == list(range(1, 13))
    assert ids(db.runs.find({}, {"_id": 1}).sort("_id", -1)) == list(range(12, 0, -1))
    # Sacred's id allocation: the largest id is the first one, descending
    assert ids(db.runs.find({}, {"_id": 1}).sort("_id", -1).limit(1)) == [12]
    page = db.runs.find({"status": "COMPLETED"}, {"_id": 1}).sort("_id", 1).skip(8).limit(3)
    assert ids(page) == [10, 11, 12]
    assert ids(db.runs.find({}, {"_id": 1}).sort([("status", 1), ("_id", -1)]))[:3] == [12, 11, 10]


def test_find_one_and_update_takes_the_numerically_first_id(db):
    db.queue.insert_many([{"_id": i, "status": "QUEUED" if i in (2, 10, 11) else "DONE"}
                          for i in range(1, 13)])
    claimed = db.queue.find_one_and_update({"status": "QUEUED"}, {"$set": {"status": "CLAIMED"}},
                                           sort=[("_id", 1)], return_document=pymongo.ReturnDocument.AFTER)
    assert claimed["_id"] == 2 and claimed["status"] == "CLAIMED"
    newest = db.queue.find_one({}, sort=[("_id", -1)])
    assert newest["_id"] == 12


def test_numbers_of_every_type_compare_numerically(db):
    values = [10, 2.5, Int64(3), 2.75, -1, 0.5, 100, Int64(2**40)]  # nx-27017 cannot store Decimal128
    db.nums.insert_many([{"_id": n, "v": v} for n, v in enumerate(values)])
    assert [d["v"] for d in db.nums.find().sort("v", 1)] == [-1, 0.5, 2.5, 2.75, 3, 10, 100, 2**40]
    descending = [d["v"] for d in db.nums.aggregate([{"$sort": {"v": -1}}])]
    assert descending == [2**40, 100, 10, 3, 2.75, 2.5, 0.5, -1]
    db.ids.insert_many([{"_id": v} for v in (10, 2.5, 9, 100, -3)])
    assert ids(db.ids.find().sort("_id", 1)) == [-3, 2.5, 9, 10, 100]


# BSON comparison order: null (and missing) < numbers < strings < objects < binary < ObjectId
# < booleans < dates. Arrays are left out: as a sort key MongoDB uses their smallest / largest element.
MIXED = [
    ("missing", None),
    ("null", None),
    ("number", 5),
    ("string", "abc"),
    ("object", {"a": 1}),
    ("binary", Binary(b"\x00\x01")),
    ("objectid", ObjectId("5f0000000000000000000000")),
    ("bool", False),
    ("date", dt.datetime(2020, 1, 1)),
]


def test_mixed_types_sort_in_bson_order(db):
    docs = [{"_id": name} if name == "missing" else {"_id": name, "v": value} for name, value in MIXED]
    shuffled = list(docs)
    random.Random(1).shuffle(shuffled)
    db.mixed.insert_many(shuffled)
    ascending = ids(db.mixed.find().sort([("v", 1), ("_id", 1)]))
    # missing and null are equal as sort keys; _id breaks the tie
    assert ascending == ["missing", "null", "number", "string", "object", "binary", "objectid", "bool",
                         "date"]
    descending = ids(db.mixed.find().sort([("v", -1), ("_id", 1)]))
    assert descending == ["date", "bool", "objectid", "binary", "object", "string", "number", "missing",
                          "null"]
    # the same order in an aggregation's $sort
    assert [d["_id"] for d in db.mixed.aggregate([{"$sort": {"v": 1, "_id": 1}}])] == ascending


def test_mixed_id_types_sort_in_bson_order(db):
    values = [dt.datetime(2020, 1, 1), True, ObjectId("5f0000000000000000000000"), {"a": 1}, "s", 20, 3.5]
    shuffled = list(values)
    random.Random(2).shuffle(shuffled)
    db.mixed_ids.insert_many([{"_id": v} for v in shuffled])
    assert ids(db.mixed_ids.find().sort("_id", 1)) == [
        3.5, 20, "s", {"a": 1}, ObjectId("5f0000000000000000000000"), True, dt.datetime(2020, 1, 1)]


def test_dates_and_strings_sort_by_value(db):
    db.d.insert_many([{"_id": n, "t": T0 - dt.timedelta(days=n), "s": s}
                      for n, s in enumerate(["b", "B", "a", "ä", "aa"])])
    assert ids(db.d.find().sort("t", 1)) == [4, 3, 2, 1, 0]
    # strings compare by code point (UTF-8 byte order), no collation: "B" < "a" < "aa" < "b" < "ä"
    assert [d["s"] for d in db.d.find().sort("s", 1)] == ["B", "a", "aa", "b", "ä"]


# ---- aggregations ------------------------------------------------------------------------------


def test_aggregate_keeps_integer_ids_and_sorts_them_numerically(db):
    seed_twelve(db.runs)
    out = list(db.runs.aggregate([{"$project": {"n": 1}}, {"$sort": {"_id": -1}}, {"$limit": 3}]))
    assert out == [{"_id": 12, "n": 12}, {"_id": 11, "n": 11}, {"_id": 10, "n": 10}]
    assert all(type(d["_id"]) is int for d in out)  # the SQL engines returned "12" (text)
    out = list(db.runs.aggregate([{"$sort": {"_id": 1}}, {"$skip": 9}, {"$project": {"_id": 1}}]))
    assert out == [{"_id": 10}, {"_id": 11}, {"_id": 12}]  # $project after $sort/$limit is applied
    group = {"_id": None, "ids": {"$push": "$_id"}, "top": {"$max": "$_id"}}
    out = list(db.runs.aggregate([{"$match": {"n": {"$gte": 9}}}, {"$group": group}]))
    assert sorted(out[0]["ids"]) == [9, 10, 11, 12] and out[0]["top"] == 12


def test_subtract_of_two_dates_is_milliseconds(db):
    seed_twelve(db.runs)
    out = list(db.runs.aggregate([{"$addFields": {"duration": {"$subtract": ["$heartbeat", "$start_time"]}}},
                                  {"$project": {"duration": 1}}, {"$sort": {"_id": 1}}]))
    assert [d["duration"] for d in out] == [(60 * i + 5) * 1000 for i in range(1, 13)]
    assert all(type(d["duration"]) is int for d in out)  # a 64-bit integer, as MongoDB's NumberLong


def test_subtract_and_add_with_dates_numbers_and_nulls(db):
    db.x.insert_one({"_id": 1, "t": T0, "u": T0 + dt.timedelta(milliseconds=1500), "n": 250, "z": None})
    (out,) = db.x.aggregate([{"$project": {
        "date_minus_date": {"$subtract": ["$u", "$t"]},
        "date_minus_number": {"$subtract": ["$t", 1000]},
        "number_minus_number": {"$subtract": ["$n", 50]},
        "date_minus_null": {"$subtract": ["$t", "$z"]},
        "date_minus_missing": {"$subtract": ["$t", "$nope"]},
        "date_plus_numbers": {"$add": ["$t", 1000, "$n"]},
        "numbers": {"$add": [1, 2.5, "$n"]},
        "negative": {"$subtract": ["$t", "$u"]},
    }}])
    assert out["date_minus_date"] == 1500
    assert out["date_minus_number"] == T0 - dt.timedelta(seconds=1)
    assert out["number_minus_number"] == 200
    assert out["date_minus_null"] is None and out["date_minus_missing"] is None
    assert out["date_plus_numbers"] == T0 + dt.timedelta(milliseconds=1250)
    assert out["numbers"] == 253.5
    assert out["negative"] == -1500


def test_subtract_number_minus_date_is_an_error(db):
    db.x.insert_one({"_id": 1, "t": T0})
    with pytest.raises(pymongo.errors.OperationFailure, match="subtract"):
        list(db.x.aggregate([{"$project": {"bad": {"$subtract": [5, "$t"]}}}]))
    with pytest.raises(pymongo.errors.OperationFailure, match="only one date"):
        list(db.x.aggregate([{"$project": {"bad": {"$add": ["$t", "$t"]}}}]))


def test_omniboards_runs_pipeline(db):
    """The pipeline Omniboard 2.16.1 sends for its run table (server/runs.response.js)."""
    seed_twelve(db.runs)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    pipeline = [
        {"$project": {"_id": 1, "heartbeat": 1, "start_time": 1, "status": 1, "n": 1}},
        {"$addFields": {
            "duration": {"$subtract": ["$heartbeat", "$start_time"]},
            "status": {"$cond": {"if": {"$and": [
                {"$eq": ["$status", "RUNNING"]},
                {"$gt": [{"$subtract": [now, {"$ifNull": ["$heartbeat", "$start_time"]}]}, 120000]}]},
                "then": "PROBABLY_DEAD", "else": "$status"}}}},
        {"$sort": {"_id": -1}}, {"$skip": 0}, {"$limit": 50},
    ]
    out = list(db.runs.aggregate(pipeline))
    assert [d["_id"] for d in out] == list(range(12, 0, -1))
    assert [d["duration"] for d in out] == [(60 * i + 5) * 1000 for i in range(12, 0, -1)]
    assert {d["_id"]: d["status"] for d in out if d["status"] != "COMPLETED"} == {7: "PROBABLY_DEAD"}
    # its run page: a leading $match on the id
    (one,) = db.runs.aggregate([{"$match": {"_id": 10}}, *pipeline[:2]])
    assert one["_id"] == 10 and one["duration"] == 605000


def test_expr_in_find_does_date_arithmetic(db):
    seed_twelve(db.runs)
    longer = {"$gt": [{"$subtract": ["$heartbeat", "$start_time"]}, 600000]}
    slow = db.runs.find({"$expr": longer}, {"_id": 1})
    assert sorted(ids(slow)) == [10, 11, 12]


def test_set_keeps_dates_and_object_ids(db):
    """Sacred's own MongoObserver writes heartbeat/stop_time with $set; they must stay dates."""
    db.runs.insert_one({"_id": 1, "status": "RUNNING", "start_time": T0})
    oid = ObjectId()
    db.runs.update_one({"_id": 1}, {"$set": {"heartbeat": T0 + dt.timedelta(seconds=90), "info.when": T0,
                                             "artifact": oid, "status": "COMPLETED"}})
    doc = db.runs.find_one({"_id": 1})
    assert doc["heartbeat"] == T0 + dt.timedelta(seconds=90) and isinstance(doc["heartbeat"], dt.datetime)
    assert doc["info"] == {"when": T0}
    assert doc["artifact"] == oid
    (out,) = db.runs.aggregate([{"$project": {"d": {"$subtract": ["$heartbeat", "$start_time"]}}}])
    assert out["d"] == 90000
    assert db.runs.count_documents({"heartbeat": {"$gt": T0}}) == 1


# ---- the launcher itself (no server) -----------------------------------------------------------


def test_python_sort_key_follows_bson_order():
    key = semantics.bson_sort_key
    ordered = [None, float("nan"), -1, 2.5, 3, "B", "a", {"a": 1}, {"a": 1, "b": 0}, {"b": 0}, [1, 2],
               Binary(b"\x01"), b"\x00\x00", ObjectId("5f0000000000000000000000"),
               ObjectId("6f0000000000000000000000"), False, True, dt.datetime(2020, 1, 1),
               dt.datetime(2020, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-1)))]
    shuffled = list(ordered)
    random.Random(4).shuffle(shuffled)
    assert [key(v) for v in sorted(shuffled, key=key)] == [key(v) for v in ordered]
    assert key(Decimal128("2.5")) == key(2.5) and key(Int64(3)) == key(3)


def test_arithmetic_follows_mongodb():
    assert semantics.arithmetic("$subtract", [T0 + dt.timedelta(seconds=2), T0]) == 2000
    aware = (T0 + dt.timedelta(hours=1)).replace(tzinfo=dt.timezone.utc)
    assert semantics.arithmetic("$subtract", [aware, T0]) == 3600000  # naive dates are UTC
    assert semantics.arithmetic("$subtract", [T0, 1.6]) == T0 - dt.timedelta(milliseconds=2)
    assert semantics.arithmetic("$add", [T0, 1, 2]) == T0 + dt.timedelta(milliseconds=3)
    assert semantics.arithmetic("$add", [None, T0]) is None
    with pytest.raises(semantics.ExpressionError):
        semantics.arithmetic("$subtract", [1, 2, 3])
    with pytest.raises(semantics.ExpressionError):
        semantics.arithmetic("$add", ["a", 1])


def test_an_untested_version_is_refused_with_the_versions_named(monkeypatch, tmp_path, clean_env):
    monkeypatch.setattr(embedded, "installed_versions", lambda: {"nx-27017": "0.9.0", "neosqlite": "1.17.2"})
    with pytest.raises(embedded.UntestedVersionError, match=r"nx-27017 0\.9\.0 \(tested: 0\.8\.1\)"):
        embedded.check_versions()
    with pytest.raises(StoreError, match=r"nx-27017 0\.9\.0"):
        EmbeddedServer(tmp_path / "store").start()
    assert not (tmp_path / "store" / EmbeddedServer.STATE).exists()
    monkeypatch.setenv(embedded.ALLOW_UNTESTED_ENV, "1")  # explicit opt-in: a warning, no error
    assert embedded.check_versions()["nx-27017"] == "0.9.0"


def test_launcher_main_refuses_an_untested_version_before_serving(tmp_path):
    code = ("import sys; from runstore import embedded, semantics; "
            "embedded.installed_versions = lambda: {'nx-27017': '0.7.0', 'neosqlite': None}; "
            "sys.exit(embedded.main(['--help']))")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120, env=python_env())
    assert out.returncode == 3, out.stderr
    assert "nx-27017 0.7.0 (tested: 0.8.1)" in out.stderr and "neosqlite (not installed)" in out.stderr
    assert "HARNESS_MONGO_URL" in out.stderr


def test_installed_versions_are_the_tested_ones():
    found = embedded.installed_versions()
    for name, tested in embedded.TESTED_VERSIONS.items():
        assert found[name] in tested, f"{name} {found[name]} is installed; tested: {tested}"


def test_a_server_started_without_the_fixes_is_reported(tmp_path, capsys, clean_env):
    server = EmbeddedServer(tmp_path / "old")
    server.start()
    try:
        import json

        state = json.loads(server.state_file.read_text())
        state.pop("launcher")
        server.state_file.write_text(json.dumps(state))
        server.start()
        assert "without the current MongoDB-compatibility fixes" in capsys.readouterr().err
    finally:
        server.stop()


def test_leading_match_and_project_keep_their_meaning(db):
    """The launcher hands a leading $match and a plain $project to find() (SQL, fewer fields copied)."""
    db.p.insert_many([{"_id": i, "a": {"b": i, "c": "x" * 50}, "d": [i, {"e": i}], "f": i % 2}
                      for i in range(1, 13)])
    out = list(db.p.aggregate([{"$match": {"f": 1}}, {"$project": {"a.b": 1, "d": 1}},
                               {"$sort": {"_id": -1}}, {"$limit": 2}]))
    assert out == [{"_id": 11, "a": {"b": 11}, "d": [11, {"e": 11}]},
                   {"_id": 9, "a": {"b": 9}, "d": [9, {"e": 9}]}]
    out = list(db.p.aggregate([{"$project": {"_id": 0, "f": 1}}, {"$group": {"_id": "$f", "n": {"$sum": 1}}},
                               {"$sort": {"_id": 1}}]))
    assert out == [{"_id": 0, "n": 6}, {"_id": 1, "n": 6}]
    out = list(db.p.aggregate([{"$project": {"d": 1}}, {"$unwind": "$d"}, {"$count": "n"}]))
    assert out == [{"n": 24}]
    (root,) = db.p.aggregate([{"$match": {"_id": 3}}, {"$addFields": {"a.b": 30, "copy": "$$ROOT"}}])
    assert root["a"]["b"] == 30 and root["copy"]["a"]["b"] == 3  # $$ROOT: the document before the stages


def test_projections_of_nested_paths(db):
    """find's projection and $project keep nested paths nested (nx-27017 returned {"a.b": ...})."""
    db.n.insert_one({"_id": 1, "a": {"b": 1, "c": 2}, "l": [{"x": 1, "y": 2}, {"y": 3}, 7], "s": 5,
                     "t": "keep"})
    included = db.n.find_one({}, {"a.b": 1, "l.x": 1, "s.z": 1})
    assert included == {"_id": 1, "a": {"b": 1}, "l": [{"x": 1}, {}]}
    excluded = db.n.find_one({}, {"a.c": 0, "l.y": 0, "_id": 0})
    assert excluded == {"a": {"b": 1}, "l": [{"x": 1}, {}, 7], "s": 5, "t": "keep"}
    assert db.n.find_one({}, {"_id": 1}) == {"_id": 1}
    assert db.n.find_one({}, {"_id": 0, "t": 1}) == {"t": "keep"}
    assert list(db.n.find({}, ["a.b"])) == [{"_id": 1, "a": {"b": 1}}]
    (out,) = db.n.aggregate([{"$project": {"a.b": 1, "twice": {"$multiply": ["$s", 2]}}}])
    assert out == {"_id": 1, "a": {"b": 1}, "twice": 10}


def test_sacreds_own_mongo_observer_counts_past_ten(store_url, mongo_client):
    """Sacred's MongoObserver allocates "largest _id + 1" and writes with $set: both work now."""
    from sacred import Experiment
    from sacred.observers import MongoObserver

    mongo_client.drop_database("sem_sacred")
    for n in range(12):
        ex = Experiment("plain_sacred", save_git_info=False)
        ex.add_config(n=n)

        @ex.main
        def main(_run, n):
            _run.log_scalar("loss", 1.0 / (1 + n))
            return n

        ex.observers.append(MongoObserver(url=store_url, db_name="sem_sacred"))
        ex.run(options={"--loglevel": "ERROR"})
    db = mongo_client["sem_sacred"]
    assert [d["_id"] for d in db.runs.find({}, {"_id": 1}).sort("_id", 1)] == list(range(1, 13))
    doc = db.runs.find_one({"_id": 12})
    assert doc["status"] == "COMPLETED" and doc["result"] == 11
    assert isinstance(doc["start_time"], dt.datetime) and isinstance(doc["heartbeat"], dt.datetime)
    spans = db.runs.aggregate([{"$project": {"d": {"$subtract": ["$stop_time", "$start_time"]}}}])
    durations = [d["d"] for d in spans]
    assert len(durations) == 12 and all(isinstance(d, int) and d >= 0 for d in durations)
    mongo_client.drop_database("sem_sacred")
