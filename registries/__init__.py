"""Named registries: one lookup and one "unknown X; choose one of ..." message for every choice the
project offers by name (training modes, view poolings, camera rigs; next datasets and tasks), and
``section`` / ``as_dict``: a config section checked once into a frozen dataclass, and back.

The bottom layer: imports nothing of the project, so ``models``, ``renderers`` and ``harness`` all
use it (as fvcore's ``Registry`` serves detectron2's components).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .sections import as_dict, section

__all__ = ["Registry", "as_dict", "choose", "section", "unknown"]


def unknown(key: str, value, allowed: Iterable) -> str:
    """The one message for a value that is not among ``allowed`` (``key`` names the config key)."""
    return f"unknown {key}={value!r}; choose one of {', '.join(map(str, allowed))}"


def choose(key: str, value, allowed: Iterable, error: type[Exception] = ValueError):
    """``value`` when it is one of ``allowed``, else ``error`` with the :func:`unknown` message."""
    allowed = list(allowed)
    try:
        if value in allowed:
            return value
    except TypeError:  # unhashable / uncomparable input is unknown too
        pass
    raise error(unknown(key, value, allowed))


class Registry(dict):
    """``{name: entry}`` for the config key ``key``; ``lookup`` raises ``error`` naming the choices.

    A plain dict otherwise (``name in REG``, ``REG[name]``, iteration in registration order).
    """

    def __init__(self, key: str, entries=(), error: type[Exception] = ValueError):
        super().__init__(entries)
        self.key, self.error = key, error

    def register(self, name: str) -> Callable:
        """Decorator: ``@REG.register("name")`` adds the decorated object under ``name``."""
        def add(obj):
            if name in self:
                raise ValueError(f"{self.key}: {name!r} is registered twice")
            self[name] = obj
            return obj
        return add

    def lookup(self, name):
        """The entry registered as ``name``, or one clear error listing every name."""
        return self[choose(self.key, name, self, self.error)]
