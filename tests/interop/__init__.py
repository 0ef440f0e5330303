"""Opt-in interop suite: ``tox -e interop`` (the default ``tox`` does not collect it, see tox.ini)."""
