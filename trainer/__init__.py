"""clip3d-bench trainer: the training loop, checkpoints, schedule and DDP setup for ``models``.

Kept apart from the ``models`` library as open_clip keeps ``open_clip_train`` apart from
``open_clip``: ``models`` never imports this package; ``harness`` drives both.
"""
from .checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint, trainable_state
from .distributed import dist_info, init_distributed
from .loop import STEP_CURVES, StopTraining, TrainResult, fit_attention_pooling, train
from .recall import recall_at_k
from .schedule import warmup_cosine

__all__ = [
    "CHECKPOINT_FORMAT", "STEP_CURVES", "StopTraining", "TrainResult", "dist_info", "fit_attention_pooling",
    "init_distributed", "load_checkpoint", "recall_at_k", "save_checkpoint", "train", "trainable_state",
    "warmup_cosine",
]
