"""The ``data`` config section as the data layer reads it (every default: harness/experiment.py)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DataConfig:
    """Where the dataset is, how it is generated, filtered, split and captioned."""

    root: str
    format: str | None  # pix3d | modelnet40 | shapenet | objaverse (harness.data.FORMATS); None: detect
    up_axis: str | None  # x | y | z; None: the format's
    synth_preset: str | None
    synth_seed: int
    split: Mapping  # {"train": fraction, "val": ..., "test": ...}
    split_file: str | None
    strict: bool
    exclude_truncated: bool
    exclude_occluded: bool
    captions_file: str | None  # JSONL (any format), or the format's own CSV (Text2Shape, Cap3D)
    captions_mode: str
