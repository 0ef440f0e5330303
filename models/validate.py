"""Config validation for the models layer: called by harness/config.py before any heavy work."""
from __future__ import annotations

from registries import choose

from .errors import ConfigError
from .modes import MODES
from .pooling import LEARNED_POOLINGS, POOLINGS
from .registry import check_model_name, check_weights_available

DEVICES = ("auto", "cpu", "cuda")


def _positive(train_cfg: dict, key: str, kind=float, allow_zero: bool = False) -> None:
    value = train_cfg.get(key)
    if value is None:
        return
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"train.{key}={value!r} is not a number") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise ConfigError(f"train.{key}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


def validate_config(model_cfg: dict, train_cfg: dict, n_train_shapes: int | None = None) -> None:
    """Raise one clear error (allowed values listed) for a bad model/train config; loads nothing.

    Checks the model name and pretrained tag/file, the mode, the pooling (learned poolings need a
    trainable mode), lr > 0, positive sizes, and batch_size <= the number of train shapes.
    """
    model_cfg = model_cfg or {}
    train_cfg = train_cfg or {}
    mode = train_cfg.get("mode", "full")
    MODES.lookup(mode)
    pooling = model_cfg.get("pooling", "mean")
    POOLINGS.lookup(pooling)
    if pooling in LEARNED_POOLINGS and not MODES[mode].trains:
        raise ConfigError(f"model.pooling={pooling!r} is learned and needs a trainable train.mode; "
                          f"with mode {mode!r} choose one of "
                          f"{', '.join(p for p in POOLINGS if p not in LEARNED_POOLINGS)}")
    device = model_cfg.get("device", "auto")
    if not str(device).startswith("cuda:"):
        choose("model.device", device, DEVICES, ConfigError)
    if "name" in model_cfg:
        check_model_name(model_cfg["name"], model_cfg.get("pretrained"))
        check_weights_available(model_cfg["name"], model_cfg.get("pretrained"))
    if MODES[mode].trains:
        _positive(train_cfg, "lr")
        _positive(train_cfg, "epochs", int)
        _positive(train_cfg, "batch_size", int)
        _positive(train_cfg, "lora_rank", int)
        _positive(train_cfg, "partial_blocks", int)
        _positive(train_cfg, "backbone_lr_scale", allow_zero=True)
        _positive(train_cfg, "weight_decay", allow_zero=True)
        _positive(train_cfg, "warmup_steps", int, allow_zero=True)
        _positive(train_cfg, "grad_clip", allow_zero=True)
        _positive(train_cfg, "patience", int)
        batch = int(train_cfg.get("batch_size", 32))
        if batch < 2:
            raise ConfigError(f"train.batch_size={batch} must be >= 2 (a contrastive batch needs negatives)")
        if n_train_shapes is not None and batch > n_train_shapes:
            raise ConfigError(f"train.batch_size={batch} is larger than the train split ({n_train_shapes} "
                              f"shapes); use train.batch_size<={n_train_shapes}")
