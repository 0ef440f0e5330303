"""Contact sheet: a grid of rendered views (rows = shapes, columns = views) for a quick look."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from .batch import read_manifest


def contact_sheet(render_dir, keys, views=(0, 3, 6, 9), size: int = 96, label: bool = True) -> Image.Image:
    """One row per shape key with the chosen view indices, each tile ``size`` px; missing or failed
    views are grey tiles (a failed shape's row says ``failed``)."""
    manifest = read_manifest(render_dir)
    keys, views = list(keys), list(views)
    label_h = 12 if label else 0
    sheet = Image.new("RGB", (max(1, len(views)) * size, max(1, len(keys)) * (size + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, key in enumerate(keys):
        entry = manifest.get(key, {})
        y = r * (size + label_h)
        if label:
            text = key if entry.get("status") == "ok" else f"{key} ({entry.get('status', 'missing')})"
            draw.text((2, y), text[-(len(views) * size // 6):], fill=(0, 0, 0))
        files = entry.get("views", []) if entry.get("status") == "ok" else []
        for c, v in enumerate(views):
            tile = Image.new("RGB", (size, size), (200, 200, 200))
            if v < len(files) and (Path(render_dir) / files[v]).is_file():
                with Image.open(Path(render_dir) / files[v]) as im:
                    tile = im.convert("RGB").resize((size, size), Image.BILINEAR)
            sheet.paste(tile, (c * size, y + label_h))
    return sheet
