"""Leaderboard: queries on a real embedded store, literal filters (security), every app view (AppTest)."""
import datetime as dt
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import PYTHON, python_env
from leaderboard import demo
from leaderboard import queries as q
from runstore import FINAL_STATUSES, ROW_CACHE

APP = str(Path(__file__).resolve().parents[1] / "leaderboard" / "app.py")
N_RUNS = 24
HOSTILE = ["$where", '{"$gt": ""}', ".*", "(a+)+$", "^", "[", "\\", "a|b", "'; db.runs.drop(); '"]


@pytest.fixture(scope="module")
def filled(store_url):
    """A database with N_RUNS demo runs (curves, artifacts) plus the documents it inserted."""
    import pymongo

    client = pymongo.MongoClient(store_url, serverSelectionTimeoutMS=5000)
    client.drop_database("lb_filled")
    runs = demo.populate(client["lb_filled"], N_RUNS, seed=1, artifact_every=5)
    yield client["lb_filled"], runs
    client.drop_database("lb_filled")
    client.close()


@pytest.fixture
def app_env(monkeypatch, store_url):
    def configure(db, read_only=False, url=store_url):
        monkeypatch.setenv("HARNESS_MONGO_URL", url)
        monkeypatch.setenv("LEADERBOARD_DB", db)
        monkeypatch.setenv("LEADERBOARD_READ_ONLY", "1" if read_only else "0")
        from streamlit.testing.v1 import AppTest

        return AppTest.from_file(APP, default_timeout=60)

    return configure


def no_exceptions(at):
    assert not at.exception, [e.value for e in at.exception]


# ---- queries -----------------------------------------------------------------------------------


def test_load_runs_projects_rows_and_metrics(filled):
    db, runs = filled
    frame = q.load_runs(db, now=dt.datetime(2027, 1, 1))
    completed = [r for r in runs if r["status"] == "COMPLETED"]
    assert len(frame) == N_RUNS and frame.attrs["skipped"] == 0
    row = frame.set_index("run_id").loc[completed[0]["_id"]]
    assert row["i2t_R@1"] == pytest.approx(completed[0]["result"]["metrics"]["i2t_R@1"])
    assert row["model"] == completed[0]["config"]["model"]["name"]
    assert row["dataset"].endswith("@" + completed[0]["result"]["provenance"]["dataset_fingerprint"][:8])
    assert row["tp_encode_images_per_s"] > 0 and row["params"] > 0
    assert "i2t_medR" in frame.attrs["metrics"] and "tp_eval_seconds" in frame.attrs["throughput"]
    assert q.metric_columns(frame)[0] == "i2t_R@1"
    running = [r["_id"] for r in runs if r["status"] == "RUNNING"]
    assert set(frame[frame["state"] == q.PROBABLY_DEAD]["run_id"]) == set(running)
    assert "captured_out" not in frame and "per_category" not in frame  # projected away
    keys = [list(map(tuple, info.get("key", []))) for info in db.runs.index_information().values()]
    assert len(db.runs.index_information()) >= 4, keys  # _id + status, start_time, experiment.name


def test_rows_say_how_a_run_got_its_weights():
    base = next(r for r in demo.make_runs(4, seed=5) if r["status"] == "COMPLETED")
    fresh, _ = q.run_row(base)
    reused, _ = q.run_row({**base, "info": {**base["info"], "reused_checkpoint": "ck/last.pt"}})
    resumed, _ = q.run_row({**base, "info": {**base["info"], "resumed_from": {"step": 40, "epoch": 2}}})
    assert (fresh["training"], reused["training"], resumed["training"]) == (
        "", "reused checkpoint", "resumed at step 40")


def test_malformed_documents_are_skipped_and_counted(mongo_client):
    mongo_client.drop_database("lb_malformed")
    db = mongo_client["lb_malformed"]
    good = next(r for r in demo.make_runs(6, seed=3) if r["status"] == "COMPLETED")
    good["_id"] = 1
    db.runs.insert_many([
        good,
        {"_id": 2, "status": "COMPLETED", "config": "not a dict"},
        {"_id": 3, "status": "COMPLETED", "config": {"model": {"name": "x"}}},  # no result
        {"_id": 4, "status": "COMPLETED", "config": {"model": {"name": "x"}}, "result": {"metrics": [1]}},
        {"_id": 5, "status": "FAILED", "config": {"model": {"name": "x"}}},  # kept: failed runs show
    ])
    for _ in range(2):  # the second load reads the skips from the row cache
        frame = q.load_runs(db)
        assert sorted(frame["run_id"]) == [1, 5]
        assert frame.attrs["skipped"] == 3
        assert frame.attrs["skip_reasons"] == {"config is not a dict or has no model.name": 1,
                                               "completed run without result": 1,
                                               "result.metrics is not a dict": 1}
    assert db[ROW_CACHE].count_documents({}) == 5


def _same_frames(a: pd.DataFrame, b: pd.DataFrame) -> None:
    columns = sorted(a.columns)
    assert sorted(b.columns) == columns
    pd.testing.assert_frame_equal(a.sort_values("run_id").reset_index(drop=True)[columns],
                                  b.sort_values("run_id").reset_index(drop=True)[columns])
    assert a.attrs == b.attrs


def test_row_cache_holds_finished_runs_and_follows_changes(mongo_client):
    mongo_client.drop_database("lb_cache")
    db = mongo_client["lb_cache"]
    runs = demo.make_runs(30, seed=5)
    db.runs.insert_many(runs)
    now = dt.datetime(2027, 1, 1)
    first = q.load_runs(db, now=now)
    finished = {r["_id"] for r in runs if r["status"] in FINAL_STATUSES}
    unfinished = {r["_id"] for r in runs} - finished
    assert unfinished and finished
    assert {e["_id"] for e in db[ROW_CACHE].find({}, {"_id": 1})} == finished  # running runs still change
    second = q.load_runs(db, now=now)
    _same_frames(first, second)

    # a running run that finishes shows its result; a tag set from the leaderboard shows at once
    running = next(r for r in runs if r["_id"] in unfinished)
    done = next(r for r in runs if r["status"] == "COMPLETED")
    db.runs.replace_one({"_id": running["_id"]}, {**running, "status": "COMPLETED", "result": done["result"]})
    q.set_tags(db, done["_id"], "best, checked")
    frame = q.load_runs(db, now=now).set_index("run_id")
    assert frame.loc[running["_id"], "state"] == "COMPLETED"
    assert frame.loc[running["_id"], "i2t_R@1"] == pytest.approx(done["result"]["metrics"]["i2t_R@1"])
    assert frame.loc[done["_id"], "tags"] == "best, checked"

    # deleted runs leave the table and the cache; rows of an older cache version are rebuilt
    gone = sorted(finished - {done["_id"]})[:3]
    db.runs.delete_many({"_id": {"$in": gone}})
    db[ROW_CACHE].update_one({"_id": done["_id"]}, {"$set": {"v": q.ROW_CACHE_VERSION - 1}})
    frame = q.load_runs(db, now=now)
    assert len(frame) == 27 and not set(gone) & set(frame["run_id"])
    assert not set(gone) & {e["_id"] for e in db[ROW_CACHE].find({}, {"_id": 1})}
    assert frame.set_index("run_id").loc[done["_id"], "tags"] == "best, checked"
    _same_frames(frame, q.rows_to_frame(db.runs.find({}), now=now))  # the cache changes nothing
    assert db[ROW_CACHE].count_documents({"v": q.ROW_CACHE_VERSION}) == len(finished) - 3 + 1


def test_row_cache_unwritable_store_still_loads(mongo_client, monkeypatch):
    import pymongo.collection
    import pymongo.errors

    mongo_client.drop_database("lb_cache_ro")
    db = mongo_client["lb_cache_ro"]
    db.runs.insert_many(demo.make_runs(8, seed=2))
    original = pymongo.collection.Collection.insert_many

    def refuse(self, documents, *args, **kwargs):
        if self.name == ROW_CACHE:
            raise pymongo.errors.OperationFailure("not authorized on lb_cache_ro to execute insert", 13)
        return original(self, documents, *args, **kwargs)

    monkeypatch.setattr(pymongo.collection.Collection, "insert_many", refuse)
    frame = q.load_runs(db)
    assert len(frame) == 8 and db[ROW_CACHE].count_documents({}) == 0
    _same_frames(frame, q.load_runs(db))


def test_rank_uses_declared_direction_and_ci_intervals():
    frame = pd.DataFrame({"run_id": [1, 2, 3], "i2t_R@1": [0.5, 0.7, 0.6], "i2t_medR": [3.0, 9.0, 1.0],
                          "ci95": [{"i2t_R@1": [0.45, 0.55]}, {"i2t_R@1": [0.68, 0.72]},
                                   {"i2t_R@1": [0.52, 0.68]}]})
    ranked = q.rank_runs(frame, "i2t_R@1")
    assert ranked["run_id"].tolist() == [2, 3, 1]
    # run 3's CI [0.52, 0.68] touches run 2's [0.68, 0.72] and run 1's [0.45, 0.55]: rank 1-3
    assert ranked["rank_interval"].tolist() == ["1–2", "1–3", "2–3"]  # touching CIs overlap
    assert q.direction("i2t_medR") == "lower" and q.direction("i2t_R@1") == "higher"
    assert q.rank_runs(frame, "i2t_medR")["run_id"].tolist() == [3, 1, 2]
    with pytest.raises(KeyError, match="metric 'nope' is not in the runs"):
        q.rank_runs(frame, "nope")


def test_group_runs_mean_ci_and_n():
    frame = pd.DataFrame({"model": ["a"] * 3 + ["b"], "pretrained": "-", "mode": "full", "pooling": "mean",
                          "dataset": "small", "m": [0.1, 0.2, 0.3, 0.9]})
    groups = q.group_runs(frame, ["m"]).set_index("model")
    assert groups.loc["a", "n"] == 3 and groups.loc["a", "m"] == pytest.approx(0.2)
    assert groups.loc["a", "m ±"] == pytest.approx(4.303 * 0.1 / np.sqrt(3))
    assert np.isnan(groups.loc["b", "m ±"])
    assert q.rank_groups(groups.reset_index(), "m")["model"].tolist() == ["b", "a"]


def test_pareto_front_and_best_per_column():
    x = [1, 2, 3, 4, np.nan]
    y = [0.9, 0.5, 0.7, 0.1, 1.0]
    assert q.pareto_front(x, y).tolist() == [True, False, True, True, False]
    assert q.pareto_front(x, y, x_higher=False).tolist() == [True, False, False, False, False]
    frame = pd.DataFrame({"i2t_R@1": [0.2, 0.8], "i2t_medR": [4.0, 2.0]}, index=[10, 11])
    assert q.best_per_column(frame, ["i2t_R@1", "i2t_medR"]) == {"i2t_R@1": 11, "i2t_medR": 11}


def test_paired_bootstrap_aligns_shapes_and_follows_direction():
    a = {"shapes": ["s1", "s2", "s3", "s4"], "m": [1.0, 1.0, 0.0, 0.0], "i2t_medR": [1.0, 1.0, 1.0, 1.0],
         "w": [1.0] * 4}
    b = {"shapes": ["s4", "s3", "s2", "s1", "s9"], "m": [0.0, 0.0, 1.0, 1.0, 1.0],
         "i2t_medR": [5.0, 5.0, 5.0, 5.0, 5.0], "w": [0.0] * 5}
    # aligned by shape key the two runs are identical on "m" (s9 is not shared): exactly one half
    assert q.prob_better(a, b, "m") == (0.5, 4)
    assert q.prob_better(a, b, "w") == (1.0, 4)
    assert q.prob_better(a, b, "i2t_medR") == (1.0, 4)  # lower medR is better
    with pytest.raises(ValueError, match="no per-shape scores for 'x'"):
        q.prob_better(a, b, "x")


def test_curves_per_category_config_diff_and_smoothing(filled):
    db, runs = filled
    ids = [runs[0]["_id"], runs[1]["_id"]]
    curves = q.load_curves(db, ids, ["train.loss"])
    assert set(curves["run_id"]) == set(ids) and set(curves["name"]) == {"train.loss"}
    assert len(curves) == 2 * 50 and curves["seconds"].min() == 0
    assert q.curve_names(db, ids) == ["train.loss", "train.lr", "val.loss"]
    completed = [r["_id"] for r in runs if r["status"] == "COMPLETED"][:3]
    table = q.load_per_category(db, completed, "i2t_R@1")
    assert table.shape == (3, len(demo.CATEGORIES))
    assert q.load_per_category(db, completed[::-1], "i2t_R@1").index.tolist() == completed[::-1]
    diff = q.config_diff({1: {"model": {"name": "a"}, "seed": 0}, 2: {"model": {"name": "b"}, "seed": 0}})
    assert diff.index.tolist() == ["model.name"]
    assert q.smooth([1.0, 3.0], 0.0).tolist() == [1.0, 3.0]
    assert q.smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])


# ---- security: filter text is literal ---------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_filter_text_is_matched_literally(text):
    frame = pd.DataFrame({"run_id": [1, 2], "experiment": "e", "model": ["m", "m"], "pretrained": "-",
                          "mode": "full", "pooling": "mean", "dataset": "d", "state": "COMPLETED",
                          "tags": ["", ""],
                          "notes": [f"has {text} inside", "plain aaaaaaaaaaaaaaaaaaaaaaaa!"]})
    out = q.filter_runs(frame, text=text)
    assert out["run_id"].tolist() == [1]  # only the row holding the literal text, never a pattern match


def test_user_text_never_reaches_mongodb(filled):
    db, _ = filled
    sent = []

    class Recorder:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            target = getattr(self.inner, name)
            if name in {"find", "find_one", "aggregate", "update_one", "create_index", "count_documents",
                        "estimated_document_count", "insert_many", "delete_many"}:
                def wrapped(*args, **kwargs):
                    sent.append(repr((name, args, kwargs)))
                    return target(*args, **kwargs)
                return wrapped
            return Recorder(target)

        def __getitem__(self, name):
            return Recorder(self.inner[name])

    class DbProxy(Recorder):
        name = db.name
        client = db.client

    frame = q.load_runs(DbProxy(db))
    for text in HOSTILE:
        assert q.filter_runs(frame, text=text).empty
    assert sent and not any("$where" in s or "$regex" in s or "$gt" in s for s in sent)
    with pytest.raises(TypeError, match="must be an int or a string"):
        q.load_run(db, {"$gt": ""})


def test_tags_and_notes_are_stored_as_literal_values(filled):
    db, runs = filled
    run_id = runs[2]["_id"]
    q.set_tags(db, run_id, 'best, $where, {"$gt": ""}')
    q.set_notes(db, run_id, "$set me")
    doc = db.runs.find_one({"_id": run_id})
    assert doc["omniboard"] == {"tags": ["best", "$where", '{"$gt": ""}'], "notes": "$set me"}
    frame = q.load_runs(db)
    assert q.filter_runs(frame, tags=["$where"])["run_id"].tolist() == [run_id]


def test_leaderboard_never_imports_torch(store_url):
    code = ("import sys; import leaderboard, leaderboard.demo; from streamlit.testing.v1 import AppTest; "
            f"at = AppTest.from_file({APP!r}, default_timeout=60); at.run(); "
            "assert not at.exception, at.exception; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=180,
                         env=python_env(HARNESS_MONGO_URL=store_url, LEADERBOARD_DB="lb_filled"))
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_python_m_leaderboard_cli_help():
    out = subprocess.run([PYTHON, "-m", "leaderboard", "--help"], capture_output=True, text=True, timeout=60,
                         env=python_env())
    assert out.returncode == 0 and "--read-only" in out.stdout and "--url" in out.stdout


# ---- the app (AppTest) ---------------------------------------------------------------------------


def test_app_leaderboard_ranking_grouping_filters_csv(filled, app_env):
    db, runs = filled
    at = app_env("lb_filled")
    at.run()
    no_exceptions(at)
    assert at.selectbox(key="rank_metric").value == "i2t_R@1"
    table = at.dataframe[0].value
    assert len(table) == N_RUNS and table["rank"].tolist() == list(range(1, N_RUNS + 1))
    assert table["i2t_R@1"].iloc[0] == table["i2t_R@1"].max()
    assert at.get("download_button")[0].label == "Download CSV"

    at.selectbox(key="rank_metric").set_value("i2t_medR").run()
    table = at.dataframe[0].value
    assert table["i2t_medR"].iloc[0] == table["i2t_medR"].min()  # lower is better for medR
    assert "lower is better" in " ".join(c.value for c in at.caption)

    at.toggle(key="group_seeds").set_value(True).run()
    no_exceptions(at)
    grouped = at.dataframe[0].value
    assert {"n", "i2t_medR ±"} <= set(grouped.columns) and grouped["n"].sum() == N_RUNS

    at.toggle(key="group_seeds").set_value(False).run()
    at.sidebar.multiselect(key="f_state").set_value([q.PROBABLY_DEAD]).run()
    dead = {r["_id"] for r in runs if r["status"] == "RUNNING"}
    assert set(at.dataframe[0].value["run_id"]) == dead
    at.sidebar.multiselect(key="f_state").set_value([]).run()
    model = runs[0]["config"]["model"]["name"]
    at.sidebar.multiselect(key="f_model").set_value([model]).run()
    assert set(at.dataframe[0].value["model"]) == {model}
    at.sidebar.multiselect(key="f_model").set_value([]).run()
    for text in ['{"$ne": null}', "(x+)+$", ".*"]:  # match nothing literally
        at.sidebar.text_input(key="f_text").set_value(text).run()
        no_exceptions(at)
        assert [i.value for i in at.info] == ["No run matches the filters."]
    at.sidebar.text_input(key="f_text").set_value("").run()
    at.sidebar.date_input(key="f_dates").set_value((dt.date(2030, 1, 1), dt.date(2030, 1, 2))).run()
    assert [i.value for i in at.info] == ["No run matches the filters."]


def test_app_pareto_heatmap_compare_views(filled, app_env):
    at = app_env("lb_filled")
    at.run()
    at.sidebar.radio(key="view").set_value("Pareto").run()
    no_exceptions(at)
    assert at.selectbox(key="pareto_x").value == "tp_encode_images_per_s"
    assert any("Pareto front:" in c.value for c in at.caption)
    at.selectbox(key="pareto_x").set_value("params").run()
    no_exceptions(at)

    at.sidebar.radio(key="view").set_value("Per category").run()
    no_exceptions(at)
    heat = at.dataframe[0].value
    assert list(heat.columns) == demo.CATEGORIES and len(heat) == 8

    at.sidebar.radio(key="view").set_value("Compare").run()
    no_exceptions(at)
    chosen = at.multiselect(key="cmp_runs").value
    assert len(chosen) == 2
    assert len(at.dataframe[0].value) >= 1
    boot = at.dataframe[1].value
    assert 0.0 <= boot["P(A better)"].iloc[0] <= 1.0 and boot["shapes"].iloc[0] == 40
    at.radio(key="cmp_axis").set_value("seconds").run()
    at.checkbox(key="cmp_log").check().run()
    at.slider(key="cmp_smooth").set_value(0.9).run()
    no_exceptions(at)
    at.multiselect(key="cmp_runs").set_value(chosen[:1]).run()
    assert "Select at least two runs." in [i.value for i in at.info]


def test_app_rotation_column_borda_rank_and_views_chart(filled, app_env):
    from leaderboard import protocols

    db, runs = filled
    at = app_env("lb_filled")
    at.run()
    table = at.dataframe[0].value
    assert "rot_so3/i2t_R@1" in table.columns  # the ranked metric under rotation, beside it
    at.selectbox(key="rank_metric").set_value("rot_so3/i2t_R@1").run()  # rankable like any metric
    no_exceptions(at)
    table = at.dataframe[0].value
    assert table["rot_so3/i2t_R@1"].iloc[0] == table["rot_so3/i2t_R@1"].max()

    at.selectbox(key="rank_metric").set_value("i2t_R@1").run()
    at.toggle(key="borda").set_value(True).run()
    no_exceptions(at)
    table = at.dataframe[0].value
    assert "borda" in table.columns and table["borda"].is_monotonic_decreasing
    columns = list(table.columns)
    shown = columns[columns.index("mode") + 1:columns.index("pooling")]  # the ranked columns
    assert shown[0] == "i2t_R@1" and "rot_so3/i2t_R@1" in shown and "zs_top1" not in shown  # (no demo zs)
    want = protocols.borda(q.load_runs(db), shown, {m: q.direction(m) == "higher" for m in shown})
    assert (dict(zip(table["run_id"], table["borda"], strict=True))
            == dict(zip(want["run_id"], want["borda"], strict=True)))
    assert table["rank"].tolist() == sorted(table["rank"])
    assert any("Borda count" in c.value for c in at.caption)
    at.toggle(key="borda").set_value(False).run()

    at.sidebar.radio(key="view").set_value("Views").run()
    no_exceptions(at)
    assert at.selectbox(key="views_metric").value == "i2t_R@1"
    swept = [r for r in runs if "by_views" in r.get("result", {})]
    views = at.dataframe[0].value
    assert len(views) == len(swept) and list(views.columns) == ["1 views", "2 views", "4 views", "12 views"]
    assert any("4 views" in str(c) or "runs;" in c.value for c in at.caption)


def test_app_views_without_sweeps_says_how(mongo_client, app_env):
    mongo_client.drop_database("lb_nosweep")
    docs = [d for d in demo.make_runs(4, seed=1) if "by_views" not in d.get("result", {})]
    mongo_client["lb_nosweep"].runs.insert_many(docs)
    at = app_env("lb_nosweep")
    at.run()
    at.sidebar.radio(key="view").set_value("Views").run()
    no_exceptions(at)
    assert any("eval.views=[1,2,4,12]" in i.value for i in at.info)
    mongo_client.drop_database("lb_nosweep")


def test_app_run_detail_saves_tags_and_notes(filled, app_env):
    db, runs = filled
    with_artifact = runs[0]["_id"]  # run 1 carries artifacts (artifact_every=5)
    at = app_env("lb_filled")
    at.run()
    at.sidebar.radio(key="view").set_value("Run detail").run()
    at.selectbox(key="detail_run").set_value(with_artifact).run()
    no_exceptions(at)
    assert at.subheader[0].value.startswith(f"Run {with_artifact} — ")
    assert [i.captions for i in at.get("image")] == [["contact_sheet.png"]]
    assert [b.label for b in at.get("download_button")] == ["Download contact_sheet.png",
                                                            "Download history.csv"]
    at.text_input(key=f"tags_{with_artifact}").set_value("good, checked")
    at.text_area(key=f"notes_{with_artifact}").set_value("looks right")
    at.button(key="save_meta").click().run()
    no_exceptions(at)
    assert db.runs.find_one({"_id": with_artifact})["omniboard"] == {"tags": ["good", "checked"],
                                                                    "notes": "looks right"}
    at.sidebar.radio(key="view").set_value("Leaderboard").run()
    at.sidebar.multiselect(key="f_tag").set_value(["checked"]).run()
    assert at.dataframe[0].value["run_id"].tolist() == [with_artifact]


def test_app_read_only_disables_editing(filled, app_env):
    at = app_env("lb_filled", read_only=True)
    at.run()
    at.sidebar.radio(key="view").set_value("Run detail").run()
    no_exceptions(at)
    assert at.button(key="save_meta").disabled
    assert all(t.disabled for t in at.text_input if t.key.startswith("tags_"))
    assert "Read-only mode: editing is disabled." in [c.value for c in at.caption]


def test_app_store_unreachable_shows_masked_url(app_env):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    at = app_env("lb_x", url=f"mongodb://alice:s3cret@127.0.0.1:{port}/")
    at.run()
    no_exceptions(at)
    text = at.error[0].value + " ".join(m.value for m in at.markdown)
    assert "The run store is unreachable" in text
    assert f"mongodb://alice:***@127.0.0.1:{port}" in text and "s3cret" not in text
    assert "python -m runstore start" in text


def test_app_empty_store_and_malformed_documents(mongo_client, app_env):
    mongo_client.drop_database("lb_empty")
    at = app_env("lb_empty")
    at.run()
    no_exceptions(at)
    assert "python -m harness.quickstart" in at.info[0].value

    db = mongo_client["lb_bad"]
    db.runs.drop()
    good = next(r for r in demo.make_runs(6, seed=2) if r["status"] == "COMPLETED")
    db.runs.insert_many([good, {"_id": 999, "status": "COMPLETED", "config": [1, 2]},
                         {"_id": 998, "status": "COMPLETED", "config": {"model": {"name": "old"}}}])
    at = app_env("lb_bad")
    at.run()
    no_exceptions(at)
    assert at.warning[0].value.startswith("Skipped 2 malformed or older run document(s)")
    assert at.dataframe[0].value["run_id"].tolist() == [good["_id"]]
    at.sidebar.checkbox(key="auto_refresh").check().run()
    no_exceptions(at)

    db = mongo_client["lb_running"]
    db.runs.drop()
    db.runs.insert_one({**demo.make_runs(1)[0], "status": "RUNNING", "result": None})
    at = app_env("lb_running")
    at.run()
    no_exceptions(at)
    assert "No run has finished with results yet." in [i.value for i in at.info]
