"""The leaderboard's protocol columns: view sweeps and rotations as row columns, Borda ranks, views data."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from leaderboard import demo, protocols
from leaderboard import queries as q


def test_sweep_columns_flatten_views_and_rotations():
    result = {"metrics": {"i2t_R@1": 0.5},
              "by_views": {"1": {"i2t_R@1": 0.2, "zs_top1": 0.3}, "12": {"i2t_R@1": 0.5, "bad": "x"}},
              "by_rotation": {"so3": {"i2t_medR": 4.0}, "z": "not a dict"}}
    assert protocols.sweep_columns(result) == {"v1/i2t_R@1": 0.2, "v1/zs_top1": 0.3, "v12/i2t_R@1": 0.5,
                                               "rot_so3/i2t_medR": 4.0}
    assert protocols.sweep_columns(None) == {} and protocols.sweep_columns({"by_views": [1]}) == {}
    assert protocols.base_metric("rot_so3/i2t_medR") == "i2t_medR" == protocols.base_metric("i2t_medR")
    assert q.direction("rot_so3/i2t_medR") == "lower" and q.direction("v4/i2t_R@1") == "higher"


def test_rows_keep_sweeps_out_of_the_metric_list():
    docs = demo.make_runs(6, seed=2)
    frame = q.rows_to_frame(docs)
    assert frame.attrs["views"] and frame.attrs["rotation"]
    assert not any("/" in m for m in frame.attrs["metrics"]) and "i2t_R@1" in frame.attrs["metrics"]
    swept = [d for d in docs if "by_views" in d.get("result", {})]
    row = frame.set_index("run_id").loc[swept[0]["_id"]]
    assert row["v4/i2t_R@1"] == swept[0]["result"]["by_views"]["4"]["i2t_R@1"]
    assert row["rot_so3/i2t_R@1"] == swept[0]["result"]["by_rotation"]["so3"]["i2t_R@1"]
    assert protocols.rotation_columns(frame, "i2t_R@1") == ["rot_so3/i2t_R@1"]
    assert protocols.view_metrics(frame) == ["i2t_R@1", "t2i_R@1"]
    long = protocols.views_long(frame, "i2t_R@1")
    assert set(long["run_id"]) == {d["_id"] for d in swept} and sorted(set(long["views"])) == [1, 2, 4, 12]
    first = long[long["run_id"] == swept[0]["_id"]]
    sweep = swept[0]["result"]["by_views"]
    assert first["value"].tolist() == [sweep[str(n)]["i2t_R@1"] for n in (1, 2, 4, 12)]


def _naive_borda(values: dict, higher: dict):
    n = len(next(iter(values.values())))
    points = [0.0] * n
    for m, col in values.items():
        for i, j in itertools.permutations(range(n), 2):
            a, b = col[i], col[j]
            if math.isnan(a) or math.isnan(b):
                continue
            a, b = (a, b) if higher[m] else (-a, -b)
            points[i] += 1.0 if a > b else 0.5 if a == b else 0.0
    return points


@pytest.mark.parametrize("seed", range(5))
def test_borda_matches_a_naive_count_with_ties_missing_values_and_directions(seed):
    rng = np.random.default_rng(seed)
    n = 9
    values = {"i2t_R@1": rng.integers(0, 4, n) / 4, "i2t_medR": rng.integers(1, 5, n).astype(float),
              "zs_top1": np.where(rng.random(n) < 0.3, np.nan, rng.random(n))}
    higher = {"i2t_R@1": True, "i2t_medR": False, "zs_top1": True}
    frame = pd.DataFrame({"run_id": range(n), **values})
    out = protocols.borda(frame, list(values), higher)
    want = _naive_borda(values, higher)
    got = out.set_index("run_id")["borda"]
    assert [got[i] for i in range(n)] == pytest.approx(want)
    ranks = out.set_index("run_id")["borda_rank"]
    for i in range(n):  # rank 1 + the number of runs with strictly more points
        assert ranks[i] == 1 + sum(p > want[i] for p in want)
    assert out["borda"].is_monotonic_decreasing
