"""Captioning of one evaluation: a retrieval captioner (the train split's caption bank) and the
generative captioner (trained on the train shapes, in a thread of its own), scored with the
process's METEOR and PTB tokenizer JVMs."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from harness.metrics import Block, caption_block
from models.config import CaptionerConfig
from registries import as_dict

from .context import EvalContext, compute_threads, timed

log = logging.getLogger("harness.evaluate")

# eval.captioning: True — caption the run's evaluation, not its re-evaluations; "always" — caption
# re-evaluations too; False — never.
CAPTIONING_CHOICES = (True, False, "always")
# eval.captioner keys that are not training knobs (decoding, caching): never in a cached captioner's key
NON_TRAINING_KEYS = ("beam_size", "length_penalty", "cache")


def captioning_decision(setting, reevaluation: bool) -> tuple[bool, str]:
    """(caption?, what the run record says) for ``eval.captioning`` and the kind of evaluation."""
    if setting not in CAPTIONING_CHOICES:
        import models
        raise models.ConfigError(f"eval.captioning={setting!r} must be true, false or 'always'")
    if setting is False or setting == 0:
        return False, "off (eval.captioning=false)"
    if reevaluation and setting != "always":
        return False, ("skipped: a re-evaluation within the run (eval.captioning='always' captions "
                       "re-evaluations too)")
    return True, "done"


class CaptioningJob:
    """Retrieval captioner (train caption bank) and generative captioner of one evaluation.

    ``start()`` encodes the caption bank and reads the train shapes' features (the caller's thread,
    timed as ``captioning_encode``; the evaluation has encoded those views into the feature cache
    beforehand, as ``encode_train_views``, for the probe as well) and trains the generative captioner
    — or takes it from the cache under ``<features_dir>/captioners`` — in a thread of its own
    (``captioning_train``; absent when cached), so it runs alongside the tasks (photo → shape, the
    probe); on a CPU each side then uses one thread, so they share the two cores instead of contending
    for them. ``finish()`` waits for it, captions the test shapes (``captioning_generate``, beam search
    over all shapes at once) and scores both captioners with the process's JVMs
    (``captioning_score``). ``captioning`` is the sum of these steps (its training overlaps the tasks,
    so the steps add up to more than ``eval_seconds``).

    ``config``: the ``eval.captioner`` section (``models.config.CaptionerConfig``).
    """

    def __init__(self, ctx: EvalContext, config: CaptionerConfig):
        self.ctx, self.config = ctx, config
        self.thread, self.error, self.model, self.hit, self.running = None, None, None, False, False

    def start(self) -> None:
        import models
        from harness.commands.render import shape_items
        from models.captioner import RetrievalCaptioner

        ctx = self.ctx
        prepared = ctx.prepared
        described = ctx.memo.get("described")  # (tasks.text_view): train on shapes captions describe
        self.train_items = [it for it in shape_items(prepared, ctx.render_dir, prepared.split.train)
                            if described is None or it.key in described]
        if not self.train_items:
            return
        t = time.perf_counter()
        bank = RetrievalCaptioner.bank_from_captions({it.key: it.captions for it in self.train_items},
                                                     ctx.keys)
        self.retrieval = RetrievalCaptioner(bank, models.encode_texts(ctx.bundle, bank).numpy())
        train_emb = models.encode_shapes(ctx.bundle, [it.views for it in self.train_items],
                                         cache_dir=ctx.features_dir,
                                         render_config_id=ctx.render_config_id).numpy()
        ctx.timings["captioning_encode"] = time.perf_counter() - t
        train_cfg = {k: v for k, v in as_dict(self.config).items() if k not in NON_TRAINING_KEYS}
        self.beam, self.length_penalty = self.config.beam_size, float(self.config.length_penalty)
        cache_dir = Path(ctx.features_dir) / "captioners" if self.config.cache else None
        captions = [list(it.captions) for it in self.train_items]
        self.thread = threading.Thread(target=self._train, args=(train_emb, captions, cache_dir, train_cfg),
                                       name="captioner", daemon=True)
        self.running = True
        self.thread.start()

    def _train(self, train_emb, captions, cache_dir, train_cfg) -> None:
        t = time.perf_counter()
        try:
            from models.captioner_training import cached_captioner

            self.model, self.hit = cached_captioner(train_emb, captions, cache_dir, seed=self.ctx.seed,
                                                    **train_cfg)
            if not self.hit:
                self.ctx.timings["captioning_train"] = time.perf_counter() - t
        except BaseException as exc:  # noqa: BLE001 - raised again in the evaluating thread
            self.error = exc

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.running = False

    def finish(self, shape_emb) -> tuple[Block, dict, dict]:
        """(the ``cap_ret_*``/``cap_gen_*`` figures, caption samples ``{"references", "ret", "gen"}``,
        the captioner's record) of the test shapes' embeddings; empty without train shapes."""
        if self.thread is None:
            return Block(), {}, {}
        self.join()
        if self.error is not None:
            raise self.error
        ctx, model = self.ctx, self.model
        info = {"from_cache": self.hit, "epochs_run": getattr(model, "epochs_run", None),
                "stopped_early": getattr(model, "stopped_early", None),
                "val_loss": getattr(model, "val_loss", None),
                "train_loss": getattr(model, "train_loss", None), "beam_size": self.beam,
                "length_penalty": self.length_penalty}
        block, predictions, references = self._caption(ctx, shape_emb, ctx.timings)
        timings = ctx.timings
        timings["captioning"] = sum(timings.get(f"captioning_{k}", 0.0)
                                    for k in ("encode", "train", "generate", "score"))
        return block, {"references": references, **predictions}, info

    def figures(self, ctx: EvalContext, shape_emb) -> dict:
        """The ``cap_ret_*``/``cap_gen_*`` figures of other embeddings of ``ctx``'s shapes (a view-count
        or rotation point) from the captioners ``finish`` used: nothing is trained again."""
        return dict(self._caption(ctx, shape_emb, {})[0].metrics)

    def _caption(self, ctx: EvalContext, shape_emb, timings: dict) -> tuple[Block, dict, dict]:
        from harness.metrics import captioning

        keys = ctx.keys
        references = {it.key: list(it.captions) for it in ctx.items}
        predictions = {"ret": dict(zip(keys, self.retrieval.caption(shape_emb), strict=True))}
        # (one thread: the small decoder's ops gain nothing from two, and lose much on a busy CPU)
        with timed(timings, "captioning_generate"), compute_threads(1 if ctx.on_cpu else None):
            generated = self.model.generate(shape_emb, beam_size=self.beam,
                                            length_penalty=self.length_penalty)
            predictions["gen"] = dict(zip(keys, generated, strict=True))
        block = Block()
        with timed(timings, "captioning_score"):
            # one tokenizer JVM and one METEOR JVM for both captioners (the process's, reused)
            scored = captioning.caption_scores_many(predictions, references)
            for prefix, (scores, items) in scored.items():
                block.merge(caption_block(scores, items, prefix, ctx.resamples, ctx.seed, ctx.category_of))
        return block, predictions, references
