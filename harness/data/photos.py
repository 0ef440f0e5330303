"""Photo → shape queries from a dataset's photos: which photos, their crops, and where crops are kept.

No torch: the evaluate stage encodes the crops (``harness.evaluation.photos``).
"""
from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PhotoJob:
    """One photo query: its shape, its sources and the content-stamped file its crop is kept in."""

    shape: str
    img: Path
    bbox: object
    mask: Path | None
    crop: Path


def crop_photo(img_path: Path, bbox, mask_path: Path | None, size: int, use_mask: bool = True):
    """Pix3D photo cropped to its bbox (square, padded white), masked onto white like the renders."""
    from PIL import Image

    img = Image.open(img_path).convert("RGB")
    if use_mask and mask_path is not None and Path(mask_path).is_file():
        mask = Image.open(mask_path).convert("L").resize(img.size)
        img = Image.composite(img, Image.new("RGB", img.size, (255, 255, 255)), mask)
    if bbox is not None and len(bbox) == 4:
        x0, y0, x1, y1 = (int(round(float(v))) for v in bbox)
        side = max(x1 - x0, y1 - y0, 1)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        box = (cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side)
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        inside = (max(box[0], 0), max(box[1], 0), min(box[2], img.width), min(box[3], img.height))
        canvas.paste(img.crop(inside), (inside[0] - box[0], inside[1] - box[1]))
        img = canvas
    return img.resize((size, size))


def photo_jobs(prepared, keys: set, work: Path, size: int, use_mask: bool) -> list[PhotoJob]:
    """The photos (``harness.data.Photo``) of the shapes ``keys`` whose image file exists, each with the
    file under ``work`` its crop goes to; a photo with a known bad mask is used without its mask."""
    root = Path(prepared.root)
    jobs = []
    for photo in prepared.dataset.photos or []:
        if photo.model not in keys or not photo.img:
            continue
        img_path = Path(photo.img) if Path(photo.img).is_absolute() else root / photo.img
        try:
            img_stat = img_path.stat()
        except OSError:
            continue
        if not stat.S_ISREG(img_stat.st_mode):
            continue
        mask = None if photo.bad_mask or not photo.mask else photo.mask
        mask_path = None if mask is None else (Path(mask) if Path(mask).is_absolute() else root / mask)
        # the sources' size and mtime are in the name: a replaced photo or mask is cropped again
        stamps = [(img_stat.st_size, img_stat.st_mtime_ns)]
        if mask_path is not None:
            try:
                st = mask_path.stat()
                stamps.append((st.st_size, st.st_mtime_ns))
            except OSError:
                pass
        name = hashlib.sha1(f"{img_path}|{mask_path}|{stamps}|{photo.bbox}|{use_mask}|{size}".encode()
                            ).hexdigest()[:16] + ".png"
        jobs.append(PhotoJob(photo.model, img_path, photo.bbox, mask_path, work / name))
    return jobs
