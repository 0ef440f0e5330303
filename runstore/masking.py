"""Credentials never leave the process: every MongoDB URL password is masked wherever it is printed,
logged or stored (run documents, captured output, Sacred's recorded options)."""
from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"(?P<scheme>mongodb(?:\+srv)?://)(?P<user>[^:@/\s]*):(?P<password>[^@/\s]*)@")


def mask_url(url: str | None) -> str | None:
    """Return ``url`` with any password replaced by ``***`` (``mongodb://user:***@host``)."""
    if url is None:
        return None
    return mask_secrets(str(url))


def mask_secrets(text: str) -> str:
    """Mask the password of every MongoDB URL inside arbitrary text (logs, captured output)."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def mask_doc(value):
    """A copy of ``value`` (dicts, lists, strings) with the password of every MongoDB URL masked."""
    if isinstance(value, str):
        return mask_secrets(value) if "@" in value else value
    if isinstance(value, dict):
        return {k: mask_doc(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_doc(v) for v in value]
    return value
