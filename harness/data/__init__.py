"""Dataset layer: Pix3D reader, shape-disjoint splits, captions, the synthetic Pix3D-format generator.

Public API: ``load_pix3d``, ``make_split``, ``build_captions``, ``caption_report``, ``prepare`` and
``synth.generate`` (CLI ``python -m harness.data.synth``). See docs/data.md.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from . import captions
from .captions import CaptionsError, build_captions, caption_report
from .config import DataConfig
from .pix3d import CATEGORIES, KNOWN_BAD_MASKS, Dataset, LoadReport, Photo, Pix3DError, Shape, load_pix3d
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
    """Load (generating ``data.synth_preset`` first when ``data.root`` has no pix3d.json), split, caption.

    data_cfg: the ``data`` section (a mapping is converted once and must hold every key of
    :class:`DataConfig`).
    """
    from harness.config import data_config

    data = data_config(data_cfg)
    root = Path(data.root)
    if not (root / "pix3d.json").is_file():
        if not data.synth_preset:
            raise Pix3DError(f"{root}/pix3d.json not found and data.synth_preset is None: point data.root at "
                             "a Pix3D download or set data.synth_preset (tiny | small | pix3d)")
        from .synth import generate
        generate(root, data.synth_preset, int(data.synth_seed), progress=progress)
    ds = load_pix3d(root, strict=data.strict, exclude_truncated=data.exclude_truncated,
                    exclude_occluded=data.exclude_occluded)
    fractions = dict(data.split) if data.split is not None else None
    split = make_split(ds, fractions=fractions, seed=seed, split_file=data.split_file)
    caps = build_captions(ds, data.captions_file, data.captions_mode)
    return Prepared(ds.root, ds, split, caps)


__all__ = [
    "CATEGORIES", "KNOWN_BAD_MASKS", "Dataset", "LoadReport", "Photo", "Shape", "Pix3DError", "load_pix3d",
    "Split", "SplitError", "SplitLeakError", "make_split", "CaptionsError", "build_captions",
    "caption_report", "captions", "DataConfig", "synth", "PRESETS", "SynthError", "generate", "Prepared",
    "prepare",
]
