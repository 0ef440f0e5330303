"""clip3d-bench leaderboard: pure store → DataFrame queries (``leaderboard.queries``) and a Streamlit app.

Start it with ``python -m leaderboard [--url URL] [--db clip3d] [--read-only]`` or
``streamlit run leaderboard/app.py``. Never imports torch.
"""
from leaderboard.queries import (
    direction,
    filter_runs,
    format_table,
    group_runs,
    load_curves,
    load_per_category,
    load_run,
    load_runs,
    pareto_front,
    prob_better,
    rank_runs,
)

__all__ = ["direction", "filter_runs", "format_table", "group_runs", "load_curves",
           "load_per_category", "load_run", "load_runs", "pareto_front", "prob_better", "rank_runs"]
