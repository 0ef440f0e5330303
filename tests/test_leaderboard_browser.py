"""Real browser: Debian chromium (driven by playwright) against `streamlit run leaderboard/app.py`."""
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import PYTHON, python_env
from leaderboard import demo

CHROMIUM = "/usr/bin/chromium"
APP = Path(__file__).resolve().parents[1] / "leaderboard" / "app.py"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is absent (apt-get install chromium; CI installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_server(mongo_client, store_url, tmp_path):
    mongo_client.drop_database("lb_browser")
    demo.populate(mongo_client["lb_browser"], 12, seed=5, artifact_every=3)
    port = free_port()
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen(
        [PYTHON, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        stdout=log, stderr=subprocess.STDOUT,
        env=python_env(HARNESS_MONGO_URL=store_url, LEADERBOARD_DB="lb_browser"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (tmp_path / "streamlit.log").read_text()[-3000:]
                pytest.fail(f"streamlit did not become healthy:\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        mongo_client.drop_database("lb_browser")


def settle(page) -> None:
    """Wait until Streamlit finished the rerun: no stale elements left, the status widget gone."""
    from playwright.sync_api import expect

    expect(page.locator("[data-testid='stStatusWidget']")).to_have_count(0, timeout=60000)
    expect(page.locator("[data-stale='true']")).to_have_count(0, timeout=60000)


def test_browser_ranks_switches_metric_and_opens_run_detail(app_server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(app_server, wait_until="domcontentloaded")
            expect(page.get_by_text("clip3d-bench leaderboard").first).to_be_visible(timeout=60000)
            expect(page.get_by_text("Ranked by i2t_R@1").first).to_be_visible(timeout=60000)
            expect(page.locator("[data-testid='stDataFrame']").first).to_be_visible(timeout=30000)
            settle(page)
            page.screenshot(path=str(tmp_path / "leaderboard.png"), full_page=True)

            # change the ranking metric through the selectbox
            page.locator("[data-testid='stSelectbox']").filter(has_text="Ranking metric").click()
            page.keyboard.type("medR")  # the list is long and virtualised: filter it, as a user does
            page.get_by_role("option", name="i2t_medR", exact=True).click()
            ranked = page.get_by_text("Ranked by i2t_medR (lower is better)").first
            expect(ranked).to_be_visible(timeout=30000)
            settle(page)

            # open the run detail view
            page.locator("[data-testid='stSidebar']").get_by_text("Run detail", exact=True).click()
            expect(page.get_by_text("Run 1 — ").first).to_be_visible(timeout=30000)
            expect(page.get_by_role("tab", name="Artifacts")).to_be_visible()
            page.get_by_role("tab", name="Artifacts").click()
            expect(page.get_by_text("Download contact_sheet.png").first).to_be_visible(timeout=30000)
            settle(page)
            expect(page.locator("[data-testid='stImage'] img").first).to_be_visible(timeout=30000)
            shot = tmp_path / "run_detail.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("LEADERBOARD_SCREENSHOT_DIR"):  # keep the pictures for a human look
        target = Path(os.environ["LEADERBOARD_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        for png in tmp_path.glob("*.png"):
            (target / png.name).write_bytes(png.read_bytes())
