"""Typed config sections: a config mapping checked once and frozen into a dataclass.

The layer that reads a config section declares it as a frozen dataclass without defaults (the
defaults live in one place, the harness's config scope); :func:`section` builds it from a mapping,
:func:`as_dict` gives the plain dict back for recording and keys (detectron2's ``configurable``
idea: the config becomes typed arguments once, at the top).
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["as_dict", "section"]

DEFAULTS_HINT = "configs come from harness.experiment's defaults (a partial dict misses keys)"


def section(cls: type, mapping: Mapping, name: str, error: type[Exception] = ValueError):
    """``cls`` (a frozen dataclass) built from ``mapping``, whose keys must be exactly its fields.

    name: the section's config path (``train``; ``""`` at the top), named in the errors.
    A missing or an unknown key raises ``error`` naming ``<name>.<key>``. Lists become tuples and
    dicts read-only mappings (all the way down), or nested sections where a field's type is one.
    """
    if isinstance(mapping, cls):
        return mapping
    if not isinstance(mapping, Mapping):
        raise error(f"config {name or 'root'}={mapping!r} must be a dict of {', '.join(_fields(cls))}")
    fields = _fields(cls)
    unknown = sorted(str(k) for k in mapping if k not in fields)
    if unknown:
        raise error(f"unknown config key {_path(name, unknown[0])}; {name or 'the config'} has: "
                    f"{', '.join(fields)}")
    missing = [k for k in fields if k not in mapping]
    if missing:
        raise error(f"missing config key {_path(name, missing[0])}; {DEFAULTS_HINT}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key in fields:
        kind, value = hints.get(key), mapping[key]
        if dataclasses.is_dataclass(kind) and isinstance(kind, type):
            values[key] = section(kind, value, _path(name, key), error)
        else:
            values[key] = _frozen(value)
    return cls(**values)


def as_dict(obj):
    """The plain value of a section (or of anything inside one): dicts and lists all the way down."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: as_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: as_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_dict(v) for v in obj]
    return obj


def _fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _path(name: str, key: str) -> str:
    return f"{name}.{key}" if name else key


def _frozen(value):
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value
