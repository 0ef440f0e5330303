"""The dataset-format registry: one :class:`Format` per on-disk layout, and detection of a root's format.

A format is data: how to recognise a root (``detect`` + the ``looks_for`` text shown when nothing
matches), how to load it (``load(root, data_cfg) -> Dataset``), its meshes' up axis, whether it has
photos, and the generator of its synthetic stand-in (``data.synth_preset``).
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from registries import Registry, choose

UP_AXES = ("x", "y", "z")  # the renderer turns a shape's up axis to +y


class DatasetError(ValueError):
    """A dataset root or one of its files is unusable; the message names the file, the line or field,
    the value and what to do (``path``, ``line``, ``field``, ``value`` carry the same)."""

    def __init__(self, message, path=None, line=None, field=None, value=None):
        super().__init__(message)
        self.path, self.line, self.field, self.value = path, line, field, value


@dataclass(frozen=True)
class Format:
    """One dataset layout: recognised by ``detect``, read by ``load``."""

    name: str
    description: str
    looks_for: str  # what ``detect`` checks, as the no-match error lists it
    up_axis: str  # of the format's meshes (data.up_axis overrides it)
    has_photos: bool
    detect: Callable  # (root: Path) -> bool, cheap: a few stats, never a full listing
    load: Callable  # (root: Path, data: DataConfig) -> Dataset
    generate: Callable  # (out, preset, seed, progress) -> Path: the synthetic stand-in
    presets: tuple  # synthetic presets of ``generate``
    caption_suffixes: tuple = ()  # data.captions_file suffixes the format reads itself (its native CSV)


FORMATS = Registry("data.format", error=DatasetError)


def register(fmt: Format) -> Format:
    """Add ``fmt`` to :data:`FORMATS` under its name (one call at the end of each format module)."""
    return FORMATS.register(fmt.name)(fmt)


def synthetic_layout(name: str) -> Callable:
    """The ``generate`` of a format whose stand-in ``harness.data.synth_formats`` writes: ``(out, preset,
    seed, progress=True, overwrite=False) -> root`` (imported on first use: loading needs none of it)."""
    def generate(out, preset: str, seed: int, progress: bool = True, overwrite: bool = False):
        from ..synth_formats import generate_layout
        return generate_layout(name, out, preset, seed, progress=progress, overwrite=overwrite)
    generate.__doc__ = f"A synthetic {name} layout (``harness.data.synth_formats``)."
    return generate


def looked_for() -> str:
    """What every format looks for, one ``name: what`` clause each (for the no-match error)."""
    return "; ".join(f"{f.name}: {f.looks_for}" for f in FORMATS.values())


def detect_format(root) -> Format | None:
    """The one format whose layout ``root`` holds; None when it holds none (or does not exist).

    A root matching several formats raises DatasetError naming them (set data.format to choose).
    """
    root = Path(root)
    if not root.is_dir():
        return None
    found = [f for f in FORMATS.values() if f.detect(root)]
    if len(found) > 1:
        names = ", ".join(f.name for f in found)
        raise DatasetError(f"{root} matches several dataset formats ({names}); set data.format to one "
                           "of them", path=str(root), field="data.format")
    return found[0] if found else None


def no_dataset_error(root, fmt: Format | None, synth_preset) -> DatasetError:
    """The one error for a root holding no dataset (of ``fmt``, or of any format when None)."""
    if fmt is None:
        what = f"no dataset found at {root}: it matches no format (looked for {looked_for()})"
    else:
        what = f"no {fmt.name} dataset at {root} (data.format={fmt.name!r} looks for {fmt.looks_for})"
    fix = ("point data.root at a dataset, or set data.synth_preset to generate a synthetic one there"
           if synth_preset is None else "")
    return DatasetError(f"{what}{' and data.synth_preset is None' if synth_preset is None else ''}"
                        f"{': ' + fix if fix else ''}", path=str(root), field="data.root", value=str(root))


def resolve_up_axis(data, fmt: Format) -> str:
    """``data.up_axis`` when set (checked), else the format's."""
    up = getattr(data, "up_axis", None)
    return fmt.up_axis if up is None else choose("data.up_axis", up, UP_AXES, DatasetError)


def fingerprint_of(fmt: str, index_files, entries, cache: dict | None = None) -> str:
    """16 hex digits over the format's name, its index files' content hashes and ``entries`` (sorted
    ``(key, identity)`` pairs: a mesh content hash, or a digest of a listing at Objaverse scale).

    cache: a ``renderers.content`` hash cache (index files are re-read only when they changed).
    """
    from renderers.content import file_sha256

    h = hashlib.sha256(f"clip3d-{fmt}\0".encode())
    for path in index_files:
        h.update(f"{Path(path).name}\0{file_sha256(path, cache)}\0".encode())
    h.update("\n".join(f"{k}\0{v}" for k, v in entries).encode())
    return h.hexdigest()[:16]


def content_hashes(root: Path, keys, cache_name: str) -> dict[str, str]:
    """Each mesh's content hash (bytes + materials + textures) through the hash cache at the root:
    a warm load only stats the files (the same cache file as Pix3D's)."""
    from renderers.content import load_cache, mesh_content_hash, save_cache

    cache = load_cache(root / cache_name)
    out = {key: mesh_content_hash(root / key, cache) for key in keys}
    save_cache(root / cache_name, cache)
    return out


def sorted_dirs(path: Path) -> list[os.DirEntry]:
    """The visible sub-directories of ``path`` ([] when it is not a directory), by name."""
    try:
        with os.scandir(path) as it:
            return sorted((e for e in it if e.is_dir() and not e.name.startswith((".", "__"))),
                          key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
