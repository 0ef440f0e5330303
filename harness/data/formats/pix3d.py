"""Pix3D (and the Pix3D-format synthetic datasets): ``pix3d.json`` + ``model/<cat>/<NAME>/*.obj`` + photos.

The reader is :func:`harness.data.pix3d.load_pix3d`, unchanged: same shapes, fingerprint and split.
"""
from __future__ import annotations

from pathlib import Path

from ..pix3d import load_pix3d
from .base import Format, register, resolve_up_axis

FORMAT = "pix3d"


def detect(root: Path) -> bool:
    """A Pix3D root holds pix3d.json."""
    return (Path(root) / "pix3d.json").is_file()


def load(root: Path, data):
    """load_pix3d with the ``data`` section's filters; ``data.up_axis`` (when set) on every shape."""
    ds = load_pix3d(root, strict=data.strict, exclude_truncated=data.exclude_truncated,
                    exclude_occluded=data.exclude_occluded)
    up = resolve_up_axis(data, ENTRY)
    if up != "y":
        for s in ds.shapes:
            s.up_axis = up
    return ds


def generate(out, preset: str, seed: int, progress: bool = True, overwrite: bool = False):
    """The Pix3D-format synthetic dataset (``harness.data.synth``)."""
    from ..synth import generate as synth_generate
    return synth_generate(out, preset, seed, progress=progress, overwrite=overwrite)


ENTRY = register(Format(
    name=FORMAT, description="Pix3D: IKEA furniture meshes with aligned photos (pix3d.json)",
    looks_for="pix3d.json at the root", up_axis="y", has_photos=True, detect=detect, load=load,
    generate=generate, presets=("tiny", "small", "pix3d")))
