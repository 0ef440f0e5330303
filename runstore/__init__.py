"""clip3d-bench run store: where runs live and how they get there, nothing lost.

The bottom layer under ``harness`` (whose Sacred observer writes through it) and ``leaderboard``
(which reads through it): the embedded nx-27017 server and URL resolution (``server``, with its
MongoDB-compatibility fixes in ``embedded``), credential masking, run status, the local spool, the
idempotent push / sync with Sacred's integer ids, spool pruning and the leaderboard's row-cache rule.
Imports neither Sacred nor torch. CLI: ``python -m runstore start|stop|status|url [--dir DIR]``.
"""
from .errors import RunIdError, StoreError, StoreUnreachable
from .masking import mask_doc, mask_secrets, mask_url
from .push import DEFAULT_DB, SyncReport, format_bytes, push_run, sync
from .rows import ROW_CACHE, forget_rows
from .server import EmbeddedServer, connect, describe, resolve_store_dir, resolve_url, status
from .spool import DEFAULT_SPOOL, SpoolRun, spooled_runs
from .status import DEAD_AFTER_S, FINAL_STATUSES, PROBABLY_DEAD, effective_status, is_dead

__all__ = [
    "DEAD_AFTER_S", "DEFAULT_DB", "DEFAULT_SPOOL", "FINAL_STATUSES", "PROBABLY_DEAD", "ROW_CACHE",
    "EmbeddedServer", "RunIdError", "SpoolRun", "StoreError", "StoreUnreachable", "SyncReport", "connect",
    "describe", "effective_status", "forget_rows", "format_bytes", "is_dead", "mask_doc", "mask_secrets",
    "mask_url", "push_run", "resolve_store_dir", "resolve_url", "spooled_runs", "status", "sync",
]
