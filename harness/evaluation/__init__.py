"""The parts of one evaluation, orchestrated by ``harness.commands.evaluate.evaluate_stage``.

``EvalContext`` (what every part reads), ``photo_block`` / ``encode_photos`` (photo → shape),
``CaptioningJob`` / ``captioning_decision`` (retrieval and generative captioners), ``attach_artifacts``
(retrieval examples, caption table). Aggregation into metrics/CIs is ``harness.metrics.blocks``
(no torch); the photo records and crops are ``harness.data.photos``.
"""
from .captioning import CAPTIONING_CHOICES, CaptioningJob, captioning_decision
from .config import EvalConfig
from .context import EvalContext
from .photos import encode_photos, photo_block
from .report import attach_artifacts

__all__ = ["CAPTIONING_CHOICES", "CaptioningJob", "EvalConfig", "EvalContext", "attach_artifacts",
           "captioning_decision", "encode_photos", "photo_block"]
