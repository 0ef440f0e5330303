"""Dataset layer: dataset formats (Pix3D, ModelNet40, ShapeNetCore + Text2Shape, Objaverse + Cap3D),
shape-disjoint splits, captions, synthetic stand-ins of every layout.

Public API: ``prepare``, ``FORMATS`` / ``detect_format`` (one registry of formats), ``load_pix3d``,
``make_split``, ``build_captions``, ``caption_report`` and ``synth.generate`` (CLI
``python -m harness.data.synth``). See docs/data.md.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from . import captions
from .captions import CaptionsError, build_captions, caption_report
from .config import DataConfig
from .formats import FORMATS, UP_AXES, DatasetError, Format, detect_format
from .formats.base import no_dataset_error, resolve_up_axis
from .pix3d import CATEGORIES, KNOWN_BAD_MASKS, Photo, Pix3DError, load_pix3d
from .records import Dataset, LoadReport, Shape
from .splits import Split, SplitError, SplitLeakError, make_split


def __getattr__(name):
    # synth is imported lazily so ``python -m harness.data.synth`` does not import it twice
    if name in ("synth", "PRESETS", "SynthError", "generate"):
        import importlib
        synth = importlib.import_module(__name__ + ".synth")
        return synth if name == "synth" else getattr(synth, name)
    raise AttributeError(f"module 'harness.data' has no attribute {name!r}")


class Prepared(NamedTuple):
    """What every stage needs from the data layer."""

    root: Path
    dataset: Dataset
    split: Split
    captions: dict


def prepare(data_cfg: DataConfig | Mapping, seed: int = 0, progress: bool = True) -> Prepared:
    """Load (generating ``data.synth_preset`` first when ``data.root`` holds no dataset), split, caption.

    data_cfg: the ``data`` section (a mapping is converted once and must hold every key of
    :class:`DataConfig`). ``data.format`` None detects the format from the root's contents; an empty
    root is generated in ``data.format`` (Pix3D when None).
    """
    from harness.config import data_config

    data = data_config(data_cfg)
    root = Path(data.root)
    fmt = FORMATS.lookup(data.format) if data.format is not None else detect_format(root)
    if fmt is None or not fmt.detect(root):
        if not data.synth_preset:
            raise no_dataset_error(root, fmt, data.synth_preset)
        fmt = fmt or FORMATS["pix3d"]
        fmt.generate(root, data.synth_preset, int(data.synth_seed), progress=progress)
    resolve_up_axis(data, fmt)  # a bad data.up_axis fails before any listing
    captions_file = data.captions_file
    if captions_file and Path(captions_file).suffix.lower() == ".csv":
        if Path(captions_file).suffix.lower() not in fmt.caption_suffixes:
            readers = ", ".join(f.name for f in FORMATS.values() if ".csv" in f.caption_suffixes)
            raise DatasetError(f"data.captions_file={captions_file!r}: a CSV of captions is read by the "
                               f"{readers} formats, not {fmt.name}; give a JSONL file of "
                               '{"model": path, "captions": [...]} lines', field="data.captions_file",
                               value=captions_file)
        captions_file = None  # the format's loader read it
    ds = fmt.load(root, data)
    fractions = dict(data.split) if data.split is not None else None
    split = make_split(ds, fractions=fractions, seed=seed, split_file=data.split_file)
    caps = build_captions(ds, captions_file, data.captions_mode)
    return Prepared(ds.root, ds, split, caps)


__all__ = [
    "FORMATS", "UP_AXES", "DatasetError", "Format", "detect_format",
    "CATEGORIES", "KNOWN_BAD_MASKS", "Dataset", "LoadReport", "Photo", "Shape", "Pix3DError", "load_pix3d",
    "Split", "SplitError", "SplitLeakError", "make_split", "CaptionsError", "build_captions",
    "caption_report", "captions", "DataConfig", "synth", "PRESETS", "SynthError", "generate", "Prepared",
    "prepare",
]
