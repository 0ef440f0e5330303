"""Synthetic multi-view items for the models tests: coloured shapes drawn with PIL, captions naming them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from models import ShapeItem

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 210, 20),
           "purple": (140, 30, 160), "orange": (240, 130, 10), "black": (20, 20, 20), "cyan": (20, 200, 210)}
KINDS = ("square", "disc")


def make_items(root: Path, n_shapes: int = 16, n_views: int = 3, size: int = 32,
               seed: int = 0) -> list[ShapeItem]:
    """``n_shapes`` shapes, each ``n_views`` PNGs (shifted/scaled drawings), captions naming colour + kind."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    items = []
    for s in range(n_shapes):
        colour, kind = names[s % len(names)], KINDS[(s // len(names)) % len(KINDS)]
        folder = Path(root) / kind / f"shape{s:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        views = []
        for v in range(n_views):
            img = Image.new("RGB", (size, size), (255, 255, 255))
            draw = ImageDraw.Draw(img)
            r = size * (0.25 + 0.1 * rng.random())
            cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
            box = (cx - r, cy - r, cx + r, cy + r)
            (draw.rectangle if kind == "square" else draw.ellipse)(box, fill=COLOURS[colour])
            path = folder / f"view_{v:02d}.png"
            img.save(path)
            views.append(str(path))
        items.append(ShapeItem(f"model/{kind}/shape{s:03d}/model.obj", kind, tuple(views),
                               (f"a {colour} {kind}", f"{kind} painted {colour}")))
    return items
