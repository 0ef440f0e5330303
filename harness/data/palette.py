"""Named colours: the palette the synthetic generator paints with, and nearest-name lookup for MTL Kd.

One table serves both directions so a caption's colour word for a synthetic shape is exactly the name
its parts were painted with, and a real mesh's Kd maps to the same vocabulary.
"""
from __future__ import annotations

import numpy as np

# name -> linear-ish RGB in [0, 1] as written to MTL Kd. Names are what a person would say.
PALETTE: dict[str, tuple[float, float, float]] = {
    "black": (0.05, 0.05, 0.05),
    "white": (0.92, 0.92, 0.90),
    "grey": (0.50, 0.50, 0.50),
    "dark grey": (0.25, 0.25, 0.26),
    "silver": (0.75, 0.76, 0.78),
    "brown": (0.45, 0.28, 0.14),
    "dark brown": (0.26, 0.15, 0.08),
    "light brown": (0.70, 0.52, 0.33),
    "beige": (0.86, 0.78, 0.62),
    "red": (0.75, 0.10, 0.10),
    "orange": (0.92, 0.50, 0.10),
    "yellow": (0.93, 0.83, 0.15),
    "green": (0.20, 0.55, 0.20),
    "olive": (0.45, 0.45, 0.15),
    "teal": (0.10, 0.50, 0.50),
    "blue": (0.15, 0.30, 0.75),
    "navy": (0.08, 0.10, 0.35),
    "purple": (0.45, 0.20, 0.55),
    "pink": (0.92, 0.55, 0.65),
}

# Material families the generator draws from; each restricts the colours that look plausible for it.
MATERIAL_COLOURS: dict[str, tuple[str, ...]] = {
    "wooden": ("brown", "dark brown", "light brown", "beige"),
    "metal": ("silver", "grey", "dark grey", "black"),
    "fabric": ("red", "blue", "navy", "green", "grey", "beige", "teal", "purple", "pink", "olive",
               "orange", "yellow", "dark grey"),
    "painted": ("white", "black", "red", "blue", "green", "yellow", "grey", "navy", "teal"),
}

_NAMES = list(PALETTE)
_RGB = np.array([PALETTE[n] for n in _NAMES], dtype=np.float64)


def nearest_colour(rgb) -> str:
    """Name of the palette colour nearest to ``rgb`` (three floats in [0, 1], e.g. an MTL Kd)."""
    v = np.clip(np.asarray(rgb, dtype=np.float64).reshape(3), 0.0, 1.0)
    return _NAMES[int(np.argmin(((_RGB - v) ** 2).sum(axis=1)))]
