"""Run status as users should see it: a RUNNING run whose heartbeat stopped is probably dead."""
from __future__ import annotations

import datetime as dt

DEAD_AFTER_S = 120  # Sacred beats every 10 s: two silent minutes mean the process is gone
PROBABLY_DEAD = "PROBABLY_DEAD"
# Statuses of a run that has ended: its record no longer changes.
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "INTERRUPTED", "TIMEOUT"})


def naive_utc(value):
    if isinstance(value, str):  # written through $set to nx-27017, which stores datetimes as text
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def is_dead(doc: dict, now: dt.datetime | None = None, threshold_s: float = DEAD_AFTER_S) -> bool:
    """True for a RUNNING run whose last sign of life (heartbeat, else start) is older than the threshold.

    now: naive UTC (Sacred's convention) or aware; default: the current time.
    """
    if doc.get("status") != "RUNNING":
        return False
    last = naive_utc(doc.get("heartbeat") or doc.get("start_time"))
    if not isinstance(last, dt.datetime):
        return False
    now = naive_utc(now) if now is not None else dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return (now - last).total_seconds() > threshold_s


def effective_status(doc: dict, now: dt.datetime | None = None, threshold_s: float = DEAD_AFTER_S) -> str:
    """The run's status as users should see it: ``PROBABLY_DEAD`` for a silent RUNNING run (kill -9)."""
    if is_dead(doc, now, threshold_s):
        return PROBABLY_DEAD
    return doc.get("status") or "UNKNOWN"
