"""The ``eval`` config section as the evaluate stage reads it (every default: harness/experiment.py)."""
from __future__ import annotations

from dataclasses import dataclass

from models.config import CaptionerConfig


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate on and how: split, Recall@K cut-offs, bootstrap resamples, which tasks."""

    split: str
    ks: tuple
    bootstrap: int
    same_caption_match: bool
    photo2shape: bool
    captioning: bool | str  # True | False | "always" (re-evaluations too)
    checkpoint: str | None
    photo_mask: bool
    zs_templates: str | tuple  # a named set of harness.evaluation.zero_shot.TEMPLATE_SETS, or templates
    views: tuple | int | None  # view counts of the view sweep (harness.evaluation.sweeps)
    rotation: str | tuple | None  # "z" | "so3" | both: the rotation-robustness evaluation
    rotation_seed: int
    log_samples: bool
    captioner: CaptionerConfig
