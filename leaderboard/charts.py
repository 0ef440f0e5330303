"""The leaderboard's charts (Streamlit + Altair): the Pareto front, metric against number of views,
the per-category heatmap. Pure table work lives in ``leaderboard.frames`` / ``leaderboard.protocols``."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import protocols
from leaderboard import queries as q


def view_pareto(frame: pd.DataFrame, metrics: list[str]) -> None:
    axes = [c for c in frame.attrs.get("throughput", []) if c in frame] + ["params"]
    left, right = st.columns(2)
    y = left.selectbox("Quality metric", metrics, key="pareto_y")
    x = right.selectbox("Against", axes, key="pareto_x",
                        index=axes.index("tp_encode_images_per_s") if "tp_encode_images_per_s" in axes else 0)
    data = frame[["run_id", "model", "mode", x, y]].dropna()
    if not len(data):
        st.info(f"No run has both {x} and {y}.")
        return
    x_higher = x != "params" and q.direction(x) == "higher"
    data = data.assign(front=q.pareto_front(data[x], data[y], x_higher, q.direction(y) == "higher"))
    # plain field names: altair reads ":" and "." in names as type and nesting markers
    plot = data.rename(columns={x: "x", y: "y"})
    base = alt.Chart(plot).encode(x=alt.X("x:Q", scale=alt.Scale(type="log"), title=x),
                                  y=alt.Y("y:Q", title=y))
    points = base.mark_circle(size=50).encode(
        color=alt.Color("front:N", scale=alt.Scale(domain=[True, False], range=["#d62728", "#bbbbbb"])),
        tooltip=["run_id", "model", "mode", alt.Tooltip("x:Q", title=x), alt.Tooltip("y:Q", title=y)])
    line = base.transform_filter("datum.front").mark_line(color="#d62728")
    st.altair_chart(points + line, width="stretch")
    st.caption(f"Pareto front: {int(data['front'].sum())} of {len(data)} runs.")
    st.dataframe(data[data["front"]].sort_values(x), hide_index=True)


def pick_runs(frame: pd.DataFrame, label: str, key: str, default_n: int) -> list:
    ranked = q.rank_runs(frame, q.DEFAULT_METRIC) if q.DEFAULT_METRIC in frame else frame
    options = ranked["run_id"].tolist()
    return st.multiselect(label, options, default=options[:default_n], key=key)


def view_heatmap(frame: pd.DataFrame, db) -> None:
    run_ids = pick_runs(frame, "Runs", "heat_runs", 8)
    if not run_ids:
        st.info("Select runs to compare per category.")
        return
    names = q.per_category_metrics(db, run_ids)
    if not names:
        st.info("None of the selected runs recorded per-category results.")
        return
    metric = st.selectbox("Metric", names, key="heat_metric")
    table = q.load_per_category(db, run_ids, metric)
    long = table.reset_index().melt(id_vars="run_id", var_name="category", value_name="value")
    long["run"] = long["run_id"].astype(str)
    order = [str(r) for r in run_ids]
    chart = alt.Chart(long).mark_rect().encode(
        x=alt.X("category:N"), y=alt.Y("run:N", sort=order),
        color=alt.Color("value:Q", scale=alt.Scale(scheme="viridis"), title=metric),
        tooltip=["run", "category", alt.Tooltip("value:Q", title=metric)])
    text = alt.Chart(long).mark_text(fontSize=10, color="white").encode(
        x="category:N", y=alt.Y("run:N", sort=order), text=alt.Text("value:Q", format=".2f"))
    st.altair_chart(chart + text, width="stretch")
    st.dataframe(table, key="heat_table")


def view_views(frame: pd.DataFrame) -> None:
    """A metric against the number of views per shape, one line per run (runs with ``eval.views``)."""
    names = protocols.view_metrics(frame)
    if not names:
        st.info("No run has a view-count sweep yet: evaluate with `eval.views=[1,2,4,12]` "
                "(docs/evaluation.md).")
        return
    default = names.index(q.DEFAULT_METRIC) if q.DEFAULT_METRIC in names else 0
    metric = st.selectbox("Metric", names, index=default, key="views_metric")
    long = protocols.views_long(frame, metric)
    counts = sorted(long["views"].unique().tolist())
    chart = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("views:Q", scale=alt.Scale(type="log", base=2), title="views per shape",
                axis=alt.Axis(values=counts)),
        y=alt.Y("value:Q", title=metric), color=alt.Color("label:N", title="run"),
        tooltip=["label", "views", alt.Tooltip("value:Q", title=metric, format=".3f")])
    st.altair_chart(chart, width="stretch")
    st.caption(f"{long['run_id'].nunique()} runs; {q.direction(metric)} is better. Each point scores the "
               "shapes pooled from that many evenly spaced views of the rig.")
    table = long.pivot_table(index="label", columns="views", values="value")
    table.columns = [f"{c} views" for c in table.columns]
    st.dataframe(table, key="views_table")
