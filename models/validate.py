"""Config validation for the models layer: called by harness/config.py before any heavy work."""
from __future__ import annotations

from registries import choose

from .config import ModelConfig, TrainConfig
from .errors import ConfigError
from .modes import MODES
from .pooling import LEARNED_POOLINGS, POOLINGS
from .registry import check_model_name, check_weights_available

DEVICES = ("auto", "cpu", "cuda")


def _positive(train: TrainConfig, key: str, kind=float, allow_zero: bool = False) -> None:
    value = getattr(train, key)
    if value is None:
        return
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"train.{key}={value!r} is not a number") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise ConfigError(f"train.{key}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


def _check_mode_and_pooling(mode: str, pooling: str) -> None:
    MODES.lookup(mode)
    POOLINGS.lookup(pooling)
    if pooling in LEARNED_POOLINGS and not MODES[mode].trains:
        raise ConfigError(f"model.pooling={pooling!r} is learned and needs a trainable train.mode; "
                          f"with mode {mode!r} choose one of "
                          f"{', '.join(p for p in POOLINGS if p not in LEARNED_POOLINGS)}")


def _check_numbers(train: TrainConfig, n_train_shapes: int | None) -> None:
    if not MODES[train.mode].trains:
        return
    _positive(train, "lr")
    _positive(train, "epochs", int)
    _positive(train, "batch_size", int)
    _positive(train, "lora_rank", int)
    _positive(train, "partial_blocks", int)
    _positive(train, "backbone_lr_scale", allow_zero=True)
    _positive(train, "weight_decay", allow_zero=True)
    _positive(train, "warmup_steps", int, allow_zero=True)
    _positive(train, "grad_clip", allow_zero=True)
    _positive(train, "patience", int)
    batch = int(train.batch_size)
    if batch < 2:
        raise ConfigError(f"train.batch_size={batch} must be >= 2 (a contrastive batch needs negatives)")
    if n_train_shapes is not None and batch > n_train_shapes:
        raise ConfigError(f"train.batch_size={batch} is larger than the train split ({n_train_shapes} "
                          f"shapes); use train.batch_size<={n_train_shapes}")


def validate_train(train: TrainConfig, pooling: str, n_train_shapes: int | None = None) -> None:
    """Raise one clear error for a bad train config with view pooling ``pooling`` (what the trainer
    checks for a model it is given: mode, learned pooling, lr > 0, sizes, batch vs. split)."""
    _check_mode_and_pooling(train.mode, pooling)
    _check_numbers(train, n_train_shapes)


def validate_config(model: ModelConfig, train: TrainConfig, n_train_shapes: int | None = None) -> None:
    """Raise one clear error (allowed values listed) for a bad model/train config; loads nothing.

    Checks the model name and pretrained tag/file, the mode, the pooling (learned poolings need a
    trainable mode), lr > 0, positive sizes, and batch_size <= the number of train shapes.
    """
    _check_mode_and_pooling(train.mode, model.pooling)
    if not str(model.device).startswith("cuda:"):
        choose("model.device", model.device, DEVICES, ConfigError)
    check_model_name(model.name, model.pretrained)
    check_weights_available(model.name, model.pretrained)
    _check_numbers(train, n_train_shapes)
