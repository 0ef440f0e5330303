"""Bootstrap CIs over shapes, paired bootstrap and metric directions."""
import numpy as np
import pytest

from harness.metrics import (
    METRIC_DIRECTIONS,
    BootstrapInputError,
    align_per_shape,
    bootstrap_ci,
    direction,
    paired_bootstrap,
)


def test_ci_is_seeded_contains_estimate_and_shrinks_with_more_shapes():
    rng = np.random.default_rng(0)
    widths = []
    for n in (50, 500, 5000):
        hits = (rng.random(n) < 0.4).astype(float)
        keys = np.arange(n)
        lo, hi = bootstrap_ci(hits, keys, resamples=300, seed=1)
        assert lo <= hits.mean() <= hi
        assert bootstrap_ci(hits, keys, resamples=300, seed=1) == [lo, hi]
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]


def test_ci_resamples_shapes_not_queries():
    # Two shapes, each with many identical queries: shape-level resampling sees only 2 units.
    values = np.r_[np.zeros(100), np.ones(100)]
    keys = np.r_[np.zeros(100), np.ones(100)]
    lo, hi = bootstrap_ci(values, keys, resamples=500, seed=0)
    assert lo == 0.0 and hi == 1.0
    lo_q, hi_q = bootstrap_ci(values, np.arange(200), resamples=500, seed=0)
    assert hi_q - lo_q < 0.3


def test_median_ci_and_errors():
    lo, hi = bootstrap_ci([1, 2, 3, 4, 100], list("abcde"), stat="median", resamples=200)
    assert 1 <= lo <= 3 <= hi <= 100
    with pytest.raises(BootstrapInputError, match="unknown stat 'mode'"):
        bootstrap_ci([1.0], ["a"], stat="mode")
    with pytest.raises(BootstrapInputError, match="2 values but 1 keys"):
        bootstrap_ci([1.0, 2.0], ["a"])
    assert bootstrap_ci([1.0], ["a"], resamples=0) != bootstrap_ci([1.0], ["a"], resamples=0)  # nan


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    b = (rng.random(300) < 0.3).astype(float)
    a = np.maximum(b, (rng.random(300) < 0.3))
    assert paired_bootstrap(a, b, resamples=500) > 0.99
    assert paired_bootstrap(b, a, resamples=500) < 0.01
    assert paired_bootstrap(a, a, resamples=100) == 0.5
    # medR: lower is better
    assert paired_bootstrap([1, 1, 2], [5, 6, 7], resamples=100, higher_is_better=False) == 1.0
    with pytest.raises(BootstrapInputError, match="same shapes"):
        paired_bootstrap([1, 2], [1, 2, 3])


def test_align_per_shape_uses_shared_shapes():
    a = {"shapes": ["x", "y", "z"], "i2t_R@1": [1, 0, 1]}
    b = {"shapes": ["z", "x"], "i2t_R@1": [0, 0]}
    sa, sb, w = align_per_shape(a, b, "i2t_R@1")
    assert sa.tolist() == [1, 1] and sb.tolist() == [0, 0] and w.tolist() == [1, 1]
    with pytest.raises(BootstrapInputError, match="no per-shape scores for 't2i_R@1'"):
        align_per_shape(a, b, "t2i_R@1")


def test_directions():
    assert direction("i2t_medR") == "lower" and direction("photo2shape_medR") == "lower"
    assert direction("i2t_R@1") == "higher" and direction("cap_gen_CIDEr") == "higher"
    assert direction("t2i_R@50") == "higher"
    assert all(set(k) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@-")
               for k in METRIC_DIRECTIONS)
