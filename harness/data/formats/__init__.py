"""Dataset formats: one module per on-disk layout, each registering one ``Format`` in ``FORMATS``.

Adding a format is writing one module here that ends with ``register(Format(...))``: every module of
this package is imported below, Pix3D first (the default, and the first detection tried).
See docs/data.md, "Formats".
"""
from __future__ import annotations

import importlib
import pkgutil

from .base import (
    FORMATS,
    UP_AXES,
    DatasetError,
    Format,
    detect_format,
    looked_for,
    no_dataset_error,
    register,
    resolve_up_axis,
)

_MODULES = ["pix3d"] + sorted(m.name for m in pkgutil.iter_modules(__path__)
                              if m.name not in ("base", "pix3d"))
for _name in _MODULES:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["FORMATS", "UP_AXES", "DatasetError", "Format", "detect_format", "looked_for",
           "no_dataset_error", "register", "resolve_up_axis"]
