"""The parts of one evaluation, orchestrated by ``harness.commands.evaluate.evaluate_stage``.

``EvalContext`` (what every part reads), ``TASKS`` / ``score`` / ``Encoded`` (the task registry: one
entry per protocol, an EvalContext and the embeddings in, a Block out), ``sweeps`` (view-count and
rotation re-evaluations), ``samples`` (per-query logs), ``photo_block`` / ``encode_photos`` (photo → shape),
``CaptioningJob`` / ``captioning_decision`` (retrieval and generative captioners), ``attach_artifacts``
(retrieval examples, caption table). Aggregation into metrics/CIs is ``harness.metrics.blocks``
(no torch); the photo records and crops are ``harness.data.photos``.
"""
from .captioning import CAPTIONING_CHOICES, CaptioningJob, captioning_decision
from .config import EvalConfig
from .context import EvalContext
from .photos import encode_photos, photo_block
from .report import attach_artifacts
from .tasks import TASKS, Encoded, Task, score

__all__ = ["CAPTIONING_CHOICES", "CaptioningJob", "EvalConfig", "EvalContext", "attach_artifacts",
           "captioning_decision", "encode_photos", "photo_block", "TASKS", "Encoded", "Task", "score"]
