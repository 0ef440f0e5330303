"""Errors of the run store."""


class StoreError(RuntimeError):
    """The run store cannot be used as configured."""


class StoreUnreachable(StoreError):
    """No MongoDB answered at the resolved URL within the time limit."""


class RunIdError(StoreError):
    """No free integer run id could be allocated (another writer kept taking them)."""
