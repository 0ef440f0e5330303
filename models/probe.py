"""The classic linear probe: logistic regression on frozen image features predicting the category."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_CS = (0.01, 0.1, 1.0, 10.0, 100.0)


def linear_probe(train_x, train_y: Sequence[str], val_x, val_y: Sequence[str], test_x, test_y: Sequence[str],
                 cs: Sequence[float] = DEFAULT_CS, seed: int = 0, per_item: bool = False):
    """Fit on train, choose the inverse regularisation C on val, report top-1 accuracy on test.

    Returns {"probe_top1", "probe_val_top1", "probe_C"} as plain floats; with ``per_item`` also
    whether each test item was classified right (a bool array; all False when no probe could fit).
    """
    from sklearn.linear_model import LogisticRegression

    train_x, val_x, test_x = (np.asarray(x, dtype=np.float64) for x in (train_x, val_x, test_x))
    if len(set(train_y)) < 2:
        out = {"probe_top1": float("nan"), "probe_val_top1": float("nan"), "probe_C": float("nan")}
        return (out, np.zeros(len(test_y), dtype=bool)) if per_item else out
    best = None
    for c in cs:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(train_x, list(train_y))
        acc = float(clf.score(val_x, list(val_y))) if len(val_y) else 0.0
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    acc, c, clf = best
    correct = clf.predict(test_x) == np.asarray(list(test_y), dtype=object)
    out = {"probe_top1": float(clf.score(test_x, list(test_y))), "probe_val_top1": acc, "probe_C": float(c)}
    return (out, np.asarray(correct, dtype=bool)) if per_item else out
