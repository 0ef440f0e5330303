"""The ``model`` and ``train`` config sections as the models library and the trainer read them.

Frozen and without defaults: the harness's config scope (harness/experiment.py) holds every default
and builds these once (``registries.section``); nothing below it repeats a default.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from registries import section

from .errors import ConfigError

__all__ = ["CaptionerConfig", "ModelConfig", "TrainConfig", "model_config", "train_config"]


@dataclass(frozen=True)
class ModelConfig:
    """Which model: open_clip name or own config, weights tag or file, view pooling, device."""

    name: str
    pretrained: str | None
    pooling: str
    device: str


@dataclass(frozen=True)
class TrainConfig:
    """How to train (the meaning of each knob: harness/experiment.py)."""

    mode: str
    epochs: int
    batch_size: int
    lr: float
    backbone_lr_scale: float
    weight_decay: float
    warmup_steps: int
    grad_clip: float | None
    lora_rank: int
    partial_blocks: int
    patience: int | None
    out: str
    resume: bool
    tensorboard: bool
    features_dir: str


@dataclass(frozen=True)
class CaptionerConfig:
    """The generative captioner of an evaluation (``eval.captioner``; meanings: harness/experiment.py).

    ``beam_size`` and ``length_penalty`` are for generation and ``cache`` says whether trained captioners
    are kept; every other field is a keyword of ``models.captioner_training.train_captioner``."""

    epochs: int
    beam_size: int
    length_penalty: float
    d_model: int
    layers: int
    prefix_len: int
    lr: float
    batch_size: int
    dropout: float
    patience: int | None
    val_fraction: float
    decay_fraction: float
    length_groups: int
    threads: int | None
    cache: bool


def model_config(cfg: ModelConfig | Mapping) -> ModelConfig:
    """``cfg`` as a ModelConfig (a mapping must hold every key; ConfigError otherwise)."""
    return section(ModelConfig, cfg, "model", ConfigError)


def train_config(cfg: TrainConfig | Mapping) -> TrainConfig:
    """``cfg`` as a TrainConfig (a mapping must hold every key; ConfigError otherwise)."""
    return section(TrainConfig, cfg, "train", ConfigError)
