"""The config, read once: validated before any heavy work, then frozen into typed sections.

Every check raises ConfigError naming the key, the value and what is allowed, so a typo on the
command line (a bad value, or an unknown key such as ``train.epohcs``) costs a second, not a render
or a training run. :func:`load_config` turns the checked Sacred config into a :class:`Config` of
frozen sections (``DataConfig``, ``RenderConfig``, ``ModelConfig``, ``TrainConfig``, ``EvalConfig``
with its ``CaptionerConfig``, ``StoreConfig``), each declared by the layer that reads it, without
defaults: every default lives in harness/experiment.py.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from harness.data.config import DataConfig
from harness.evaluation.config import EvalConfig
from harness.tracking import StoreConfig
from models.config import ModelConfig, TrainConfig
from models.errors import ConfigError  # one exception type for every config error
from registries import choose, section
from renderers.config import RenderConfig

__all__ = ["Config", "ConfigError", "data_config", "load_config", "resolve", "validate"]
log = logging.getLogger("harness")


@dataclass(frozen=True)
class Config:
    """The whole run config, typed and frozen (``registries.as_dict`` gives the plain dict back)."""

    seed: int
    data: DataConfig
    render: RenderConfig
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    store: StoreConfig


def sections(cfg: Config | Mapping) -> Config:
    """``cfg`` as a Config, without validating values: a missing or unknown key is a ConfigError."""
    return section(Config, cfg, "", ConfigError)


def load_config(cfg: Config | Mapping, check: bool = True) -> Config:
    """The typed config of a command: ``cfg`` validated (:func:`resolve`) and frozen, once.

    A Config comes back as it is. check=False: keys and the render section only (the render
    command, which needs neither weights nor a valid train config).
    """
    if isinstance(cfg, Config):
        return cfg
    if check:
        return sections(resolve(cfg))
    sections(cfg)  # an unknown key fails first
    cfg = resolve_render_size(dict(cfg))
    validate_render(cfg["render"])
    return sections(cfg)


def data_config(cfg: DataConfig | Mapping) -> DataConfig:
    """``cfg`` as a DataConfig (a mapping must hold every key of the ``data`` section)."""
    return section(DataConfig, cfg, "data", ConfigError)


def _positive(key: str, value, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive {'integer' if integer else 'number'}")


def validate_data(data: dict) -> None:
    split = data.get("split")
    if not isinstance(split, dict) or set(split) != {"train", "val", "test"}:
        raise ConfigError(f"data.split={split!r} must be a dict with keys train, val, test")
    for name, frac in split.items():
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac <= 1:
            raise ConfigError(f"data.split.{name}={frac!r} must be a fraction between 0 and 1")
    if abs(sum(split.values()) - 1.0) > 1e-6:
        raise ConfigError(f"data.split fractions sum to {sum(split.values()):g}; they must sum to 1")
    if split["train"] <= 0 or split["test"] <= 0:
        raise ConfigError("data.split.train and data.split.test must be above 0")
    choose("data.captions_mode", data.get("captions_mode"), ["extend", "replace"], ConfigError)
    from harness.data.formats import FORMATS, UP_AXES

    if data.get("format") is not None:
        choose("data.format", data.get("format"), list(FORMATS), ConfigError)
    if data.get("up_axis") is not None:
        choose("data.up_axis", data.get("up_axis"), UP_AXES, ConfigError)


def validate_render(render: dict) -> None:
    from renderers import RIGS

    choose("render.rig", render.get("rig"), [name for name in RIGS if name != "pose"], ConfigError)
    _positive("render.size", render.get("size"), integer=True)
    _positive("render.msaa", render.get("msaa"), integer=True)
    shard = str(render.get("shard"))
    m = re.fullmatch(r"(\d+)/(\d+)", shard)
    if not m or int(m[2]) < 1 or int(m[1]) >= int(m[2]):
        raise ConfigError(f"render.shard={shard!r} must be 'i/n' with 0 <= i < n (e.g. 0/1, 2/4)")
    bg = render.get("background")
    if not isinstance(bg, (list, tuple)) or len(bg) not in (3, 4) or not all(
            isinstance(c, (int, float)) and 0 <= c <= 1 for c in bg):
        raise ConfigError(f"render.background={bg!r} must be 3 or 4 numbers in [0, 1]")


def validate_eval(ev: dict) -> None:
    ks = ev.get("ks")
    if not isinstance(ks, (list, tuple)) or not ks:
        raise ConfigError(f"eval.ks={ks!r} must be a non-empty list of positive integers")
    for k in ks:
        _positive("eval.ks[]", k, integer=True)
    resamples = ev.get("bootstrap")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ConfigError(f"eval.bootstrap={ev.get('bootstrap')!r} must be an integer >= 0 (0: no CIs)")
    choose("eval.split", ev.get("split"), ["test", "val"], ConfigError)
    from harness.evaluation.captioning import captioning_decision

    captioning_decision(ev.get("captioning"), reevaluation=False)  # a bad value fails here, before work
    from harness.evaluation.zero_shot import templates_of

    templates_of(ev.get("zs_templates"))
    from harness.evaluation.sweeps import rotation_kinds, view_counts

    view_counts(ev.get("views"))
    rotation_kinds(ev.get("rotation"))
    seed = ev.get("rotation_seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"eval.rotation_seed={seed!r} must be an integer >= 0")
    cap = ev.get("captioner") or {}
    for key in ("epochs", "beam_size", "d_model", "layers", "prefix_len", "batch_size"):
        _positive(f"eval.captioner.{key}", cap.get(key), integer=True)
    _positive("eval.captioner.lr", cap.get("lr"))
    penalty = cap.get("length_penalty")
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float)):
        raise ConfigError(f"eval.captioner.length_penalty={penalty!r} must be a number (1.0: the caption "
                          f"with the best mean per-token log-probability; 0: the best summed one)")


def resolve_render_size(cfg: dict, warn: bool = True) -> dict:
    """``cfg`` with ``render.size`` set: the model's input size when None (views are never resized
    on the way into the model); an explicit size that differs is kept, with one warning."""
    from models import input_size

    native = input_size(cfg["model"]["name"])
    size = cfg["render"].get("size")
    if size is None:
        return {**cfg, "render": {**cfg["render"], "size": native}}
    if warn and not isinstance(size, bool) and isinstance(size, int) and size != native:
        log.warning("render.size=%d differs from the input size of model %s (%d px): views will be "
                    "resized to %d px (leave render.size unset to render at the model's size)",
                    size, cfg["model"]["name"], native, native)
    return cfg


def resolve(cfg: dict) -> dict:
    """Validate the whole config and fill in what the model decides (render.size): call once per
    command, before any heavy work (:func:`load_config` does, and freezes the result)."""
    sections(cfg)  # a missing or unknown key (a typo: train.epohcs=3) fails first
    cfg = resolve_render_size(cfg)  # an unknown model.name fails here, first
    validate(cfg)
    return cfg


def validate(cfg: dict) -> None:
    """Check the whole config; raise ConfigError on the first bad value."""
    from models import validate_config as validate_model

    validate_data(cfg["data"])
    validate_render(cfg["render"])
    validate_model(section(ModelConfig, cfg["model"], "model", ConfigError),
                   section(TrainConfig, cfg["train"], "train", ConfigError))
    validate_eval(cfg["eval"])
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,63}", str(cfg["store"].get("db"))):
        raise ConfigError(f"store.db={cfg['store'].get('db')!r} must be 1-63 letters, digits, _ or -")
