"""Exception types of the models library: each names the input and says how to fix it."""


class ModelsError(ValueError):
    """Base class of every error the models library raises for bad input."""


class UnknownModelError(ModelsError):
    """A model name that neither open_clip nor models/model_configs knows."""


class UnknownPretrainedError(ModelsError):
    """A pretrained tag that open_clip does not list for the model (and is not a local file)."""


class WeightsUnavailableError(ModelsError):
    """Pretrained weights are not in the local cache and the hub cannot be reached."""


class WeightsMismatchError(ModelsError):
    """A weights file that is not a checkpoint of the requested model."""


class ConfigError(ModelsError):
    """An impossible model or train configuration value (unknown mode, pooling, lr <= 0, ...)."""
