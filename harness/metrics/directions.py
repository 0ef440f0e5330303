"""Which way is better for every metric — declared once, read by the leaderboard."""
from __future__ import annotations

HIGHER = "higher"
LOWER = "lower"

# Suffix rules: a metric name ending with one of these is lower-is-better; everything else higher.
LOWER_IS_BETTER_SUFFIXES = ("medR", "eval_seconds", "_loss", "loss")

METRIC_DIRECTIONS: dict[str, str] = {
    **{f"{d}_R@{k}": HIGHER for d in ("i2t", "t2i", "photo2shape") for k in (1, 5, 10)},
    **{f"{d}_mAP": HIGHER for d in ("i2t", "t2i", "photo2shape")},
    **{f"{d}_medR": LOWER for d in ("i2t", "t2i", "photo2shape")},
    "probe_top1": HIGHER,
    **{f"t2s_{m}": HIGHER for m in ("RR@1", "RR@5", "NDCG@5")},
    **{f"{p}_{m}": HIGHER for p in ("zs", "zs_photo") for m in ("top1", "top3", "top5", "mean_per_class")},
    **{f"cap_{c}_{m}": HIGHER for c in ("ret", "gen")
       for m in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr")},
}


def direction(metric_name: str) -> str:
    """``"higher"`` or ``"lower"`` (is better) for any metric name, including unlisted R@k values."""
    if metric_name in METRIC_DIRECTIONS:
        return METRIC_DIRECTIONS[metric_name]
    return LOWER if metric_name.endswith(LOWER_IS_BETTER_SUFFIXES) else HIGHER


def higher_is_better(metric_name: str) -> bool:
    """True when a larger value of ``metric_name`` is better."""
    return direction(metric_name) == HIGHER
