"""Captioning metrics: BLEU-1..4, METEOR 1.5, ROUGE_L, CIDEr exactly as pycocoevalcap computes them.

The process's tokenizer and METEOR JVMs (``harness.metrics.jvm``: one each, reused by every
evaluation) do the Java parts. Predictions and references are tokenized line by line (so identical
output), METEOR runs while the pure-Python scorers do. The figures are those of pycocoevalcap's own
scorers (tested). SPICE is left out: it needs a separate download.
"""
from __future__ import annotations

from .jvm import (
    JAVA_INSTALL_HINT,
    BatchMeteor,
    JavaNotFoundError,
    JvmDiedError,
    JvmPool,
    PtbTokenizerJvm,
    java_executable,
    jvm_pool,
    ptb_tokenize_once,
)

__all__ = ["CAPTION_METRICS", "JAVA_INSTALL_HINT", "BatchMeteor", "CaptionInputError", "JavaNotFoundError",
           "JvmDiedError", "JvmPool", "PtbTokenizerJvm", "caption_scores", "caption_scores_many",
           "java_executable", "jvm_pool", "metric_impl", "ptb_tokenize_once", "tokenize", "tokenize_many"]

CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr")


class CaptionInputError(ValueError):
    """Predictions and references do not line up."""


def metric_impl() -> dict:
    """Provenance of the caption metrics: implementation, version, tokenizer."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        v = version("pycocoevalcap")
    except PackageNotFoundError:  # pragma: no cover - dependency is required
        v = None
    return {"captioning": "pycocoevalcap", "pycocoevalcap": v, "meteor": "METEOR 1.5 (-l en -norm)",
            "tokenizer": "PTBTokenizer (Stanford CoreNLP 3.4.1, lowercased, punctuation removed)",
            "bleu": "closest reference length", "spice": "not computed"}


def _check(predictions: dict, references: dict) -> list:
    if set(predictions) != set(references):
        missing = sorted(map(str, set(references) - set(predictions)))[:5]
        extra = sorted(map(str, set(predictions) - set(references)))[:5]
        raise CaptionInputError(f"predictions and references need the same ids; missing predictions "
                                f"for {missing}, no references for {extra}")
    ids = list(references)
    for i in ids:
        refs = references[i]
        if isinstance(refs, str) or not refs:
            raise CaptionInputError(f"references[{i!r}] must be a non-empty list of strings, got {refs!r}")
        if not isinstance(predictions[i], str):
            raise CaptionInputError(f"predictions[{i!r}] must be one string, got {predictions[i]!r}")
    if not ids:
        raise CaptionInputError("caption_scores needs at least one prediction, got none")
    return ids


def tokenize(predictions: dict, references: dict) -> tuple[dict, dict]:
    """PTB-tokenize predictions and references in one JVM run; ``(res, gts)`` as pycocoevalcap wants."""
    res, gts = tokenize_many({"_": predictions}, references)
    return res["_"], gts


def tokenize_many(prediction_sets: dict, references: dict) -> tuple[dict, dict]:
    """PTB-tokenize several prediction sets and their references with the process's tokenizer JVM
    (line by line, so each caption gets exactly the tokens a separate run would give)."""
    java_executable()
    ids = list(references)
    # Newlines would split a caption over two tokenizer lines; empty lines are dropped by the tokenizer.
    clean = lambda s: s.replace("\n", " ").strip() or "<empty>"  # noqa: E731
    joint = {("res", name, i): [clean(preds[i])] for name, preds in prediction_sets.items() for i in ids}
    joint.update({("gts", i): [clean(r) for r in references[i]] for i in ids})
    tok = jvm_pool().tokenize(joint)
    res = {name: {i: tok[("res", name, i)] for i in ids} for name in prediction_sets}
    return res, {i: tok[("gts", i)] for i in ids}


def caption_scores(predictions: dict, references: dict, per_item: bool = False):
    """Corpus BLEU-1..4, METEOR, ROUGE_L, CIDEr of ``predictions {id: str}`` vs ``references {id: [str]}``.

    All references of an id are used. With ``per_item`` also returns ``{metric: {id: score}}``
    (sentence-level scores; the corpus ROUGE_L and CIDEr are their mean, BLEU and METEOR are not).
    """
    out = caption_scores_many({"_": predictions}, references)["_"]
    return out if per_item else out[0]


def caption_scores_many(prediction_sets: dict, references: dict) -> dict:
    """``{name: (scores, per_item)}`` for several prediction sets (e.g. two captioners) on the same
    references, each scored as its own corpus, with the process's tokenizer and METEOR JVMs."""
    if not prediction_sets:
        raise CaptionInputError("caption_scores_many needs at least one prediction set, got none")
    for preds in prediction_sets.values():
        ids = _check(preds, references)
    java_executable()
    pool = jvm_pool()
    for attempt in (1, 2):
        try:
            # The METEOR JVM may still be loading its paraphrase table: take it first, tokenize and
            # run the pure-Python scorers while it loads and scores.
            with pool.meteor() as meteor:
                res_sets, gts = tokenize_many(prediction_sets, references)
                return {name: _score_set(meteor, gts, res, ids) for name, res in res_sets.items()}
        except JvmDiedError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _score_set(meteor: BatchMeteor, gts: dict, res: dict, ids: list) -> tuple[dict, dict]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    meteor.submit(gts, res)
    out, items = {}, {}
    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        out[f"BLEU-{n + 1}"] = float(bleu[n])
        items[f"BLEU-{n + 1}"] = dict(zip(ids, map(float, bleu_items[n]), strict=True))
    for metric, scorer in (("ROUGE_L", Rouge()), ("CIDEr", Cider())):
        score, scores = scorer.compute_score(gts, res)
        out[metric], items[metric] = float(score), dict(zip(ids, map(float, scores), strict=True))
    score, scores = meteor.collect()
    out["METEOR"], items["METEOR"] = float(score), dict(zip(ids, map(float, scores), strict=True))
    return {k: out[k] for k in CAPTION_METRICS}, items
