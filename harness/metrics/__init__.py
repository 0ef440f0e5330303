"""Evaluation metrics: retrieval, photo → shape, captioning, bootstrap CIs. Pure numpy; no Sacred, no torch.

Public API::

    evaluate_retrieval(image_emb, text_emb, image_shape, text_shape, ks=(1, 5, 10)) -> dict
    retrieval_ranks(...) -> {"i2t": QueryRanks, "t2i": QueryRanks}; summarize(ranks, ks, prefix)
    photo_to_shape(photo_emb, shape_emb, photo_shape, shape_keys, ks) -> dict; photo_ranks(...)
    per_category(ranks_by_direction, category_of, ks) -> {category: {metric: value}}
    caption_scores(predictions, references) -> {"BLEU-1".."BLEU-4", "METEOR", "ROUGE_L", "CIDEr"}
    bootstrap_ci(values, keys, stat, resamples, seed) -> [lo, hi]; paired_bootstrap(a, b, ...) -> P(A>B)
    METRIC_DIRECTIONS, direction(name), higher_is_better(name)
    Block; retrieval_block(ranks, ks, resamples, seed, category_of), caption_block(...) -> Block;
    per_shape_record(per_shape) (a run record's figures from per-query scores)
    zero_shot_accuracy(query_emb, class_emb, labels, ks=(1, 3, 5)) -> {"top1", ..., "mean_per_class"}
    text_to_shape(text_emb, shape_emb, text_shape, shape_keys, ks=(1, 5)) -> {"RR@1", "RR@5", "NDCG@5"}
"""
from .blocks import (
                        Block,
                        caption_block,
                        per_query_block,
                        per_shape_record,
                        retrieval_block,
                        text_to_shape_block,
)
from .bootstrap import (
                        BootstrapInputError,
                        align_per_shape,
                        bootstrap_ci,
                        bootstrap_distribution,
                        paired_bootstrap,
)
from .captioning import CAPTION_METRICS, CaptionInputError, JavaNotFoundError, caption_scores, java_executable
from .directions import METRIC_DIRECTIONS, direction, higher_is_better
from .protocols import text_to_shape, true_item_ranks, zero_shot_accuracy
from .retrieval import (
                        QueryRanks,
                        RetrievalInputError,
                        evaluate_retrieval,
                        l2_normalize,
                        per_category,
                        photo_ranks,
                        photo_to_shape,
                        retrieval_ranks,
                        summarize,
)

__all__ = [
    "Block", "caption_block", "per_query_block", "per_shape_record", "retrieval_block", "text_to_shape_block",
    "text_to_shape", "true_item_ranks", "zero_shot_accuracy",
    "BootstrapInputError", "align_per_shape", "bootstrap_ci", "bootstrap_distribution", "paired_bootstrap",
    "CAPTION_METRICS", "CaptionInputError", "JavaNotFoundError", "caption_scores", "java_executable",
    "METRIC_DIRECTIONS", "direction", "higher_is_better",
    "QueryRanks", "RetrievalInputError", "evaluate_retrieval", "l2_normalize", "per_category", "photo_ranks",
    "photo_to_shape", "retrieval_ranks", "summarize",
]
