"""Pure tests of run status (heartbeats, probably-dead runs) and secret masking in run documents."""
import datetime as dt

from runstore import PROBABLY_DEAD, effective_status, is_dead, mask_doc

NOW = dt.datetime(2026, 1, 1, 12, 0, 0)


def test_effective_status_running_dead_and_finished():
    running = {"status": "RUNNING", "heartbeat": NOW - dt.timedelta(seconds=30)}
    assert effective_status(running, NOW) == "RUNNING"
    assert not is_dead(running, NOW)
    assert effective_status(running, NOW + dt.timedelta(minutes=2)) == PROBABLY_DEAD
    assert is_dead(running, NOW, threshold_s=10)
    done = {"status": "COMPLETED", "heartbeat": NOW - dt.timedelta(days=1)}
    assert effective_status(done, NOW) == "COMPLETED"
    assert effective_status({"status": "QUEUED"}, NOW) == "QUEUED"
    assert effective_status({}, NOW) == "UNKNOWN"


def test_effective_status_without_heartbeat_uses_start_time_and_reads_text_dates():
    never_beat = {"status": "RUNNING", "heartbeat": None, "start_time": NOW - dt.timedelta(minutes=5)}
    assert effective_status(never_beat, NOW) == PROBABLY_DEAD
    # nx-27017 keeps top-level datetimes written with $set (Sacred's own observer) as text
    as_text = {"status": "RUNNING", "heartbeat": str(NOW - dt.timedelta(minutes=3))}
    assert effective_status(as_text, NOW) == PROBABLY_DEAD
    aware = NOW.replace(tzinfo=dt.timezone.utc) + dt.timedelta(seconds=5)
    assert effective_status({"status": "RUNNING", "heartbeat": NOW}, aware) == "RUNNING"


def test_mask_doc_masks_every_url_password_deeply():
    doc = {"config": {"store": {"url": "mongodb://alice:s3cret@db.example:27017/x"}},
           "meta": {"options": {"--mongo_db": "mongodb+srv://bob:pw@cluster/x"}},
           "captured_out": "connecting to mongodb://alice:s3cret@db.example:27017 ...",
           "list": ["mongodb://u:p@h", 3, None]}
    masked = mask_doc(doc)
    text = repr(masked)
    assert "s3cret" not in text and ":pw@" not in text and ":p@" not in text
    assert masked["config"]["store"]["url"] == "mongodb://alice:***@db.example:27017/x"
    assert masked["list"][1:] == [3, None]
    assert doc["config"]["store"]["url"].endswith("s3cret@db.example:27017/x")  # input untouched
