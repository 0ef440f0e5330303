"""Omniboard 2.16.1 (npm) against the embedded store: its REST API and its run table in Chromium.

Omniboard computes a run's duration in its aggregation (``$subtract: ["$heartbeat", "$start_time"]``,
server/runs.response.js) and sorts by ``_id`` on the server, so both show the store's semantics.
"""
import datetime as dt
import json
import os
import re
import urllib.parse
import urllib.request

import gridfs
import pytest
from bson import ObjectId

from interop.conftest import DEAD, N_SEEDED, get_json, seeded_duration_ms

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SELECT = "_id,status,duration,start_time,heartbeat,experiment,config"


def ms(delta: dt.timedelta) -> int:
    return delta // dt.timedelta(milliseconds=1)


def runs(base, **params):
    return get_json(f"{base}/api/v1/Runs?{urllib.parse.urlencode(params)}")


def test_omniboard_lists_runs_in_numeric_order_with_durations(omniboard, interop_db):
    db, real_id = interop_db
    real = db.runs.find_one({"_id": real_id})
    assert real_id == N_SEEDED + 1  # the harness's id allocator counted past 9 and 10
    listed = runs(omniboard, select=SELECT, sort_by="_id", order_by=1, limit=50)
    assert [r["_id"] for r in listed] == list(range(1, N_SEEDED + 2))
    durations = {r["_id"]: r["duration"] for r in listed}
    seeded = range(1, N_SEEDED + 1)
    assert {i: durations[i] for i in seeded} == {i: seeded_duration_ms(i) for i in seeded}
    assert durations[real_id] == ms(real["heartbeat"] - real["start_time"]) > 0
    status = {r["_id"]: r["status"] for r in listed}
    assert status[DEAD] == "PROBABLY_DEAD" and status[real_id] == "COMPLETED"
    assert {r["experiment"]["name"] for r in listed} == {"seeded", "clip3d"}

    # the run table's default: newest first, 50 a page
    newest = runs(omniboard, select="_id", sort_by="_id", order_by=-1, limit=5)
    assert [r["_id"] for r in newest] == [13, 12, 11, 10, 9]
    second_page = runs(omniboard, select="_id", sort_by="_id", order_by=-1, skip=10, limit=5)
    assert [r["_id"] for r in second_page] == [3, 2, 1]
    # sorting and filtering on the computed duration
    longest = runs(omniboard, select="_id,duration", sort_by="duration", order_by=-1, limit=3)
    assert [r["_id"] for r in longest] == [12, 11, 10]
    slow = runs(omniboard, select="_id,duration", sort_by="_id", order_by=1,
                query=json.dumps({"duration": {"$gt": seeded_duration_ms(9)}}))
    assert [r["_id"] for r in slow] == [10, 11, 12]
    assert get_json(f"{omniboard}/api/v1/Runs/count")["count"] == N_SEEDED + 1


def test_omniboard_opens_the_real_run(omniboard, interop_db):
    db, real_id = interop_db
    run = get_json(f"{omniboard}/api/v1/Runs/{real_id}?select={SELECT},artifacts,info")  # one document
    assert run["_id"] == real_id and run["config"]["model"]["name"] == "clip3d-tiny"
    assert run["duration"] > 0 and run["status"] == "COMPLETED"
    files = get_json(f"{omniboard}/api/v1/files/artifacts/{real_id}")
    names = sorted(f["filename"].rsplit("/", 1)[-1] for f in files)
    assert names == sorted(a["name"] for a in db.runs.find_one({"_id": real_id})["artifacts"])
    assert "render_contact_sheet.png" in names
    sheet = next(f for f in files if f["filename"].endswith("/render_contact_sheet.png"))
    with urllib.request.urlopen(f"{omniboard}/api/v1/files/download/{sheet['_id']}/render_contact_sheet.png",
                                timeout=60) as reply:
        data = reply.read()
    assert data == gridfs.GridFS(db).get(ObjectId(sheet["_id"])).read() and data.startswith(b"\x89PNG")
    query = urllib.parse.quote(json.dumps({"run_id": real_id}))
    metrics = get_json(f"{omniboard}/api/v1/Metrics?query={query}")
    assert "train.loss" in {m["name"] for m in metrics}


def duration_text(milliseconds: int) -> re.Pattern:
    """How Omniboard's table writes a duration (``12m 5s``; pretty-ms keeps one decimal of seconds)."""
    minutes, rest = divmod(milliseconds, 60000)
    seconds = rest / 1000
    choices = {f"{int(seconds)}", f"{int(seconds) + 1}", f"{seconds:.1f}".rstrip("0").rstrip(".")}
    body = "|".join(re.escape(c) for c in sorted(choices))
    head = f"{minutes}m " if minutes else ""
    return re.compile(rf"(?<![\d.]){head}(?:{body})(?:\.\d)?s\b")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent (apt-get install chromium)")
def test_omniboard_run_table_in_chromium(omniboard, interop_db, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    db, real_id = interop_db
    real = db.runs.find_one({"_id": real_id})
    shot = artifacts_dir / "omniboard_run_table.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        # Omniboard orders its columns like the fields of the run documents (on MongoDB as here), and
        # its table renders only the columns in view: wide enough for all of them
        page = browser.new_page(viewport={"width": 3000, "height": 1300})
        try:
            page.goto(omniboard, wait_until="networkidle")
            expect(page.get_by_text(f"{N_SEEDED + 1} experiments")).to_be_visible(timeout=60000)
            expect(page.get_by_text("12m 5s")).to_be_visible(timeout=60000)
            page.wait_for_timeout(500)
        finally:
            page.screenshot(path=str(shot), full_page=True)  # also when the table did not show
            text = page.inner_text("body")
            browser.close()
    (artifacts_dir / "omniboard_run_table.txt").write_text(text)
    assert shot.stat().st_size > 10000
    # each row starts with its expand arrow and its id; newest first, numerically
    shown = [int(m) for m in re.findall(r"►\s*(\d+)\s*\n", text)]
    assert shown == list(range(N_SEEDED + 1, 0, -1)), shown
    for i in range(1, N_SEEDED + 1):
        assert duration_text(seeded_duration_ms(i)).search(text), (i, seeded_duration_ms(i))
    assert duration_text(ms(real["heartbeat"] - real["start_time"])).search(text)
    assert "0ms" not in text
    assert "clip3d" in text and "seeded" in text
