"""clip3d-bench models: the library (registry, modes, poolings, loss, data, features, captioner, probe).

``harness/`` drives it; nothing here imports the harness, Sacred or the dataset reader.
"""
from .config import ModelConfig, TrainConfig, model_config, train_config
from .data import ShapeItem, epoch_plan, make_items
from .errors import (
                     ConfigError,
                     ModelsError,
                     UnknownModelError,
                     UnknownPretrainedError,
                     WeightsMismatchError,
                     WeightsUnavailableError,
)
from .features import FeatureCache, encode_images, encode_shapes, encode_texts, encode_views
from .loss import clip_loss, positive_mask
from .modes import MODES, get_mode
from .pooling import LEARNED_POOLINGS, POOLINGS, make_pooling, pool_views
from .probe import linear_probe
from .registry import (
                     OWN_MODELS,
                     ClipBundle,
                     count_params,
                     create_model,
                     input_size,
                     list_models,
                     list_pretrained,
                     resolve_device,
                     state_sha256,
)
from .validate import validate_config, validate_train

__all__ = [
    "ClipBundle", "ConfigError", "FeatureCache", "LEARNED_POOLINGS", "MODES", "ModelConfig", "ModelsError",
    "OWN_MODELS", "POOLINGS", "ShapeItem", "TrainConfig", "UnknownModelError", "UnknownPretrainedError",
    "WeightsMismatchError", "WeightsUnavailableError", "clip_loss", "count_params", "create_model",
    "encode_images", "encode_shapes", "encode_texts", "encode_views", "epoch_plan", "get_mode", "input_size",
    "linear_probe", "list_models", "list_pretrained", "make_items", "make_pooling", "model_config",
    "pool_views", "positive_mask", "resolve_device", "state_sha256", "train_config", "validate_config",
    "validate_train",
]
