"""The leaderboard's row cache rules: a finished run's table row is kept in ``leaderboard_rows``
beside ``runs``; whoever changes the document of a finished run drops its row (always safe: the
next load rebuilds it)."""
from __future__ import annotations

ROW_CACHE = "leaderboard_rows"


def forget_rows(db, run_ids) -> None:
    """Drop the leaderboard's cached rows of these runs: the next load rebuilds them from ``runs``."""
    db[ROW_CACHE].delete_many({"_id": {"$in": list(run_ids)}})
