"""ModelNet40 / ModelNet10: ``<root>/<class>/{train,test}/<class>_NNNN.off``, Z-up, no captions.

The official split comes from the folders (``provided_split``: val is carved from train by the
seed); captions are class-level templates. Every OFF header is read (a few KB per file) so a broken
file is reported at load time and ModelNet's merged ``OFF490 518 0`` headers are counted.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..pix3d import FINGERPRINT_CACHE
from ..records import NO_PHOTOS, Dataset, LoadReport, Shape
from .base import (
    DatasetError,
    Format,
    content_hashes,
    fingerprint_of,
    register,
    resolve_up_axis,
    sorted_dirs,
    synthetic_layout,
)

FORMAT = "modelnet40"
FOLDERS = ("train", "test")
MERGED = "merged OFF header"


def _off_files(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if e.is_file() and e.name.lower().endswith(".off"))
    except (FileNotFoundError, NotADirectoryError):
        return []


def detect(root: Path) -> bool:
    """A ModelNet root has class folders holding train/ or test/ with .off files (the first class
    that has either folder decides, so a detection costs a few stats)."""
    for d in sorted_dirs(Path(root)):
        for split in FOLDERS:
            folder = Path(d.path) / split
            if folder.is_dir():
                with os.scandir(folder) as it:
                    return any(e.name.lower().endswith(".off") for e in it)
    return False


def _check_header(path: Path, key: str, report: LoadReport, strict: bool) -> bool:
    """Read the file's header: count a merged one; a broken one raises (strict) or is skipped."""
    from renderers.errors import MeshLoadError
    from renderers.off import off_header

    try:
        header = off_header(path)
    except (MeshLoadError, OSError) as err:
        if strict:
            raise DatasetError(f"{err} (fix or remove the file, or set data.strict=False to skip it)",
                               path=str(path)) from err
        report.skipped.append({"path": key, "reason": str(err)})
        return False
    if header.merged:
        report.quirk(MERGED, key)
    return True


def load_modelnet(root, up_axis: str = "z", strict: bool = True) -> Dataset:
    """Load a ModelNet10/40 root: one shape per OFF file, the folder's split, category = class folder.

    strict: a file whose OFF header is broken raises DatasetError (False: skipped, in report.skipped).
    """
    root = Path(root).resolve()
    report = LoadReport()
    shapes, provided = [], {}
    for d in sorted_dirs(root):
        folders = [s for s in FOLDERS if (root / d.name / s).is_dir()]
        if not folders:
            report.quirk("class folder without train/ or test/", d.name)
            continue
        for split in folders:
            for name in _off_files(root / d.name / split):
                key = f"{d.name}/{split}/{name}"
                report.entries += 1
                if not _check_header(root / key, key, report, strict):
                    continue
                stem = name[:-4]
                shapes.append(Shape(key=key, category=d.name, name=stem, variant=stem, mesh_path=root / key,
                                    photos=NO_PHOTOS, up_axis=up_axis))
                provided[key] = split
    if not shapes:
        raise DatasetError(f"{root}: no readable .off file under <class>/train or <class>/test "
                           "(a ModelNet10/40 root holds one folder per class)", path=str(root))
    report.loaded = len(shapes)
    hashes = content_hashes(root, [s.key for s in shapes], FINGERPRINT_CACHE)
    for s in shapes:
        s.content_hash = hashes[s.key]
    fp = fingerprint_of(FORMAT, [], sorted(hashes.items()))
    return Dataset(root=root, shapes=shapes, photos=[], fingerprint=fp, report=report, format=FORMAT,
                   provided_split=provided, native_captions={})


def load(root: Path, data) -> Dataset:
    return load_modelnet(root, up_axis=resolve_up_axis(data, ENTRY), strict=data.strict)


ENTRY = register(Format(
    name=FORMAT, description="ModelNet10/40: CAD models in class folders, official train/test split",
    looks_for="<class>/train/*.off or <class>/test/*.off", up_axis="z", has_photos=False, detect=detect,
    load=load, generate=synthetic_layout(FORMAT), presets=("tiny", "small")))
