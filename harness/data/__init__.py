"""Dataset layer: Pix3D reader, shape-disjoint splits, captions, the synthetic Pix3D-format generator.

Public API: ``load_pix3d``, ``make_split``, ``build_captions``, ``caption_report``, ``prepare`` and
``synth.generate`` (CLI ``python -m harness.data.synth``). See docs/data.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from . import captions
from .captions import CaptionsError, build_captions, caption_report
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


def prepare(data_cfg: dict, seed: int = 0, progress: bool = True) -> Prepared:
    """Load (generating ``data.synth_preset`` first when ``data.root`` has no pix3d.json), split, caption.

    data_cfg: the Sacred ``data`` dict (root, synth_preset, synth_seed, split, split_file, strict,
    exclude_truncated, exclude_occluded, captions_file, captions_mode).
    """
    root = Path(data_cfg["root"])
    if not (root / "pix3d.json").is_file():
        preset = data_cfg.get("synth_preset")
        if not preset:
            raise Pix3DError(f"{root}/pix3d.json not found and data.synth_preset is None: point data.root at "
                             "a Pix3D download or set data.synth_preset (tiny | small | pix3d)")
        from .synth import generate
        generate(root, preset, int(data_cfg.get("synth_seed", 0)), progress=progress)
    ds = load_pix3d(root, strict=data_cfg.get("strict", True),
                    exclude_truncated=data_cfg.get("exclude_truncated", False),
                    exclude_occluded=data_cfg.get("exclude_occluded", False))
    split = make_split(ds, fractions=data_cfg.get("split"), seed=seed, split_file=data_cfg.get("split_file"))
    caps = build_captions(ds, data_cfg.get("captions_file"), data_cfg.get("captions_mode", "extend"))
    return Prepared(ds.root, ds, split, caps)


__all__ = [
    "CATEGORIES", "KNOWN_BAD_MASKS", "Dataset", "LoadReport", "Photo", "Shape", "Pix3DError", "load_pix3d",
    "Split", "SplitError", "SplitLeakError", "make_split", "CaptionsError", "build_captions",
    "caption_report", "captions", "synth", "PRESETS", "SynthError", "generate", "Prepared", "prepare",
]
