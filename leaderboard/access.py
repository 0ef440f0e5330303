"""Who may edit tags and notes, and the record of every edit (no Streamlit, no torch: testable alone).

Rules (docs/leaderboard.md, "Serving it to a team"):

- ``--read-only`` / ``LEADERBOARD_READ_ONLY=1``: nobody edits.
- ``LEADERBOARD_EDIT_TOKEN`` set (``name:secret``, several separated by commas): an edit needs one
  of the secrets, typed into the sidebar; it is compared in constant time (``hmac.compare_digest``)
  and the edit is recorded under that token's name. This holds wherever the app listens.
- No token, served on loopback only (127.0.0.1, ::1, localhost: the default): the local user edits,
  recorded as ``local:<OS user>``.
- No token, served beyond loopback (``--host 0.0.0.0``, or ``streamlit run`` without
  ``server.address``, which listens on every interface): editing is off.

Every saved edit is one document in the ``leaderboard_edits`` collection beside ``runs``:
``{run_id, who, when (naive UTC, like Sacred's times), changes: {"omniboard.tags": [...], ...},
before: {...}}``.
"""
from __future__ import annotations

import datetime as dt
import getpass
import hmac
import ipaddress
import os
from dataclasses import dataclass, field

ENV_TOKEN = "LEADERBOARD_EDIT_TOKEN"
EDITS = "leaderboard_edits"
LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


def is_loopback(address: str | None) -> bool:
    """True when a server bound to ``address`` is reachable from this machine only.

    An empty or missing address means every interface (Streamlit's default), so False.
    """
    if not address:
        return False
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def parse_tokens(value: str | None) -> dict[str, str]:
    """``"alice:s3cret,bob:0ther"`` → ``{"alice": "s3cret", "bob": "0ther"}``.

    A bare secret (no ``name:``) is named ``token``. Empty entries are ignored; a secret may contain
    ``:`` (only the first one separates the name) but not ``,``.
    """
    tokens: dict[str, str] = {}
    for n, entry in enumerate(part.strip() for part in (value or "").split(",")):
        if not entry:
            continue
        name, sep, secret = entry.partition(":")
        if not sep:
            name, secret = "token", entry
        name = name.strip() or f"token{n + 1}"
        if secret:
            tokens[name] = secret
    return tokens


@dataclass(frozen=True)
class EditPolicy:
    """Whether this app may edit, and who an edit is attributed to."""

    address: str | None
    read_only: bool = False
    tokens: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, address: str | None, read_only: bool = False, environ=None) -> EditPolicy:
        environ = os.environ if environ is None else environ
        return cls(address=address, read_only=read_only, tokens=parse_tokens(environ.get(ENV_TOKEN)))

    @property
    def shared(self) -> bool:
        return not is_loopback(self.address)

    @property
    def needs_token(self) -> bool:
        return not self.read_only and bool(self.tokens)

    @property
    def enabled(self) -> bool:
        """Editing is possible at all (with the token, where one is needed)."""
        return not self.read_only and (bool(self.tokens) or not self.shared)

    def why_disabled(self) -> str | None:
        if self.read_only:
            return "Read-only mode: editing is disabled."
        if not self.enabled:
            where = self.address or "every interface"
            return (f"Editing is off: this leaderboard is served beyond loopback ({where}) "
                    f"and no {ENV_TOKEN} is set.")
        return None

    def authorize(self, token: str | None) -> str | None:
        """The editor's name when an edit is allowed with ``token``, else None.

        Every configured secret is compared (in constant time), whichever matches.
        """
        if not self.enabled:
            return None
        if not self.tokens:
            return f"local:{_os_user()}"
        given = (token or "").encode()
        match = None
        for name, secret in self.tokens.items():
            if hmac.compare_digest(given, secret.encode()) and match is None:
                match = name
        return match


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a container without a passwd entry
        return str(os.getuid())


def exposure_lines(host: str, port: int, store: str, db: str, policy: EditPolicy) -> list[str]:
    """What ``python -m leaderboard --host HOST`` exposes, for the operator (store URL masked)."""
    where = "every interface of this machine" if host in ("", ALL_INTERFACES, "::") else host
    lines = [f"Sharing the leaderboard on {where}, port {port}: anyone who can reach it can read every run "
             f"in {store}, database {db!r} (configs, results, captured output, artifacts)."]
    if policy.read_only:
        lines.append("Tags and notes: read-only (--read-only).")
    elif policy.tokens:
        names = ", ".join(sorted(policy.tokens))
        lines.append(f"Tags and notes: editable by holders of {ENV_TOKEN} ({names}); every edit is recorded "
                     f"with the token's name and the time in the {EDITS!r} collection.")
    else:
        lines.append(f"Tags and notes: editing is off (set {ENV_TOKEN}=name:secret to allow it for "
                     f"token holders).")
    return lines


def record_edit(db, run_id, who: str, changes: dict, before: dict, now: dt.datetime | None = None) -> None:
    """Append one edit to the audit collection (naive UTC time, like Sacred's)."""
    when = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    db[EDITS].insert_one({"run_id": run_id, "who": str(who), "when": when, "changes": changes,
                          "before": before})


def clean_tags(tags) -> list[str]:
    if isinstance(tags, str):
        tags = tags.split(",")
    return [str(t).strip() for t in tags if str(t).strip()]


def save_tags_and_notes(db, run_id, tags, notes: str, who: str) -> dict:
    """Store the changed ones of tags and notes (``omniboard.tags``/``omniboard.notes``) and record the edit.

    ``leaderboard.queries.set_tags``/``set_notes`` write them and drop the run's cached leaderboard
    row (``forget_rows``). Returns the changes (empty: nothing changed, nothing written or recorded).
    """
    from leaderboard import queries as q

    run_id = int(run_id) if hasattr(run_id, "item") and not isinstance(run_id, str) else run_id
    doc = db.runs.find_one({"_id": run_id}, {"omniboard": 1}) or {}
    board = doc.get("omniboard") if isinstance(doc.get("omniboard"), dict) else {}
    old_tags, old_notes = list(board.get("tags") or []), board.get("notes")
    new_tags, new_notes = clean_tags(tags), str(notes)
    changes, before = {}, {}
    if new_tags != old_tags:
        q.set_tags(db, run_id, new_tags)
        changes["omniboard.tags"], before["omniboard.tags"] = new_tags, old_tags
    if new_notes != (old_notes or ""):
        q.set_notes(db, run_id, new_notes)
        changes["omniboard.notes"], before["omniboard.notes"] = new_notes, old_notes
    if changes:
        record_edit(db, run_id, who, changes, before)
    return changes
