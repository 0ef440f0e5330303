"""Streamlit leaderboard of clip3d-bench runs: `streamlit run leaderboard/app.py` or `python -m leaderboard`.

Store: ``$HARNESS_MONGO_URL`` (or ``--url`` after ``--``), else the harness's embedded store; database
``$LEADERBOARD_DB`` (default ``clip3d``). ``$LEADERBOARD_READ_ONLY=1`` (or ``--read-only``) disables
editing tags and notes. Served beyond loopback (Streamlit's ``server.address``), editing needs
``$LEADERBOARD_EDIT_TOKEN`` (``leaderboard.access``). Never imports torch.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run leaderboard/app.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard import access, charts, protocols
from leaderboard import queries as q
from leaderboard.charts import pick_runs

DEFAULT_SHOWN = ["i2t_R@1", "i2t_R@5", "t2i_R@1", "t2i_R@5", "photo2shape_R@1", "zs_top1", "cap_ret_CIDEr",
                 "probe_top1"]
ROWS_SHOWN = 200  # rows styled and sent to the browser; the CSV export holds every filtered run
QUICKSTART = "python -m harness.quickstart   # or: tox -e quickstart"


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="leaderboard/app.py")
    parser.add_argument("--url", default=None)
    parser.add_argument("--db", default=None)
    parser.add_argument("--read-only", action="store_true")
    args, _ = parser.parse_known_args(argv)
    args.url = args.url or os.environ.get("HARNESS_MONGO_URL") or None
    args.db = args.db or os.environ.get("LEADERBOARD_DB") or "clip3d"
    args.read_only = args.read_only or os.environ.get("LEADERBOARD_READ_ONLY", "") not in ("", "0", "false")
    return args


@st.cache_resource(show_spinner=False)
def get_client(url):
    from runstore import connect

    return connect(url, timeout_s=3)


# cache_resource, not cache_data: no pickled copy of 5,000 rows per page view (nothing mutates the frame)
@st.cache_resource(show_spinner="Loading runs…", max_entries=2)
def get_runs(url, db_name, nonce: int) -> pd.DataFrame:
    return q.load_runs(get_client(url)[db_name])


def store_error(exc: Exception, url) -> None:
    from runstore import describe, mask_secrets

    st.error(f"**The run store is unreachable.**\n\n{mask_secrets(str(exc))}")
    st.markdown(f"Store tried: {mask_secrets(describe(url))}.\n\nStart the embedded store with "
                "`python -m runstore start` (then `python -m leaderboard`), or point "
                "`HARNESS_MONGO_URL` / `--url` at a running MongoDB.")


def sidebar_filters(frame: pd.DataFrame) -> pd.DataFrame:
    sb = st.sidebar
    sb.header("Filters")
    chosen = {}
    for column, label in (("state", "Status"), ("experiment", "Experiment"), ("dataset", "Dataset"),
                          ("model", "Model"), ("mode", "Mode")):
        chosen[column] = sb.multiselect(label, sorted(frame[column].dropna().unique().tolist()),
                                        key=f"f_{column}")
    tags = sb.multiselect("Tag", q.tag_options(frame), key="f_tag")
    starts = frame["start_time"].dropna()
    date_range = None
    if len(starts):
        lo, hi = starts.min().date(), starts.max().date()
        picked = sb.date_input("Date range", value=(lo, hi), key="f_dates")
        if isinstance(picked, (tuple, list)) and len(picked) == 2:
            date_range = picked
    text = sb.text_input("Search (literal text)", key="f_text")
    return q.filter_runs(frame, states=chosen["state"], experiments=chosen["experiment"],
                         datasets=chosen["dataset"], models=chosen["model"], modes=chosen["mode"],
                         tags=tags, date_range=date_range, text=text)


def highlight_best(table: pd.DataFrame, columns: list[str]):
    best = q.best_per_column(table, columns)

    def style(column: pd.Series):
        mark = best.get(column.name)
        return ["font-weight: bold; background-color: #d4f4dd" if i == mark else "" for i in column.index]

    fmt = {c: "{:.3f}" for c in columns if c in table}
    return table.style.apply(style, subset=[c for c in columns if c in table]).format(fmt, na_rep="–")


def view_leaderboard(frame: pd.DataFrame, metrics: list[str]) -> None:
    left, mid, right = st.columns([2, 3, 1])
    # rotation columns (rot_so3/i2t_R@1, ...) rank like any metric; view sweeps are in the Views chart
    rankable = metrics + frame.attrs.get("rotation", [])
    metric = left.selectbox("Ranking metric", rankable, index=0, key="rank_metric",
                            help="Direction is declared per metric (medR: lower is better).")
    grouped = right.toggle("Group seeds", key="group_seeds")
    use_borda = right.toggle("Borda rank", key="borda",
                             help="Rank by Borda count over the shown columns (MTEB's summary): a run "
                                  "earns a point per run it beats on each column, half per tie.")
    shown = mid.multiselect("Columns", rankable, default=[m for m in DEFAULT_SHOWN if m in metrics],
                            key="shown_metrics")
    shown = [metric] + [m for m in shown if m != metric]
    shown += [c for c in protocols.rotation_columns(frame, protocols.base_metric(metric)) if c not in shown]
    if use_borda and not grouped:
        table = protocols.borda(frame, shown, {m: q.direction(m) == "higher" for m in shown})
        table = table.rename(columns={"borda_rank": "rank"}).assign(rank_interval="")
        st.caption(f"Ranked by **Borda count** over {len(shown)} columns ({', '.join(shown)}).")
        lead = ["rank", "borda"]
    else:
        st.caption(f"Ranked by **{metric}** ({q.direction(metric)} is better); rank interval from the "
                   "runs' bootstrap 95 % CIs." + (" (Borda rank: ungroup the seeds.)" if use_borda else ""))
        lead = ["rank", "rank_interval"]
    if grouped:
        table = q.rank_groups(q.group_runs(frame, shown), metric)
        columns = [*lead, *q.GROUP_KEYS, "n"]
        for m in shown:
            columns += [m, f"{m} ±"]
        table = table[columns]
    else:
        table = table if use_borda else q.rank_runs(frame, metric)
        table = table[[*lead, "run_id", "model", "pretrained", "mode", *shown, "pooling", "dataset", "seed",
                       "state", "training", "tags"]]
    # deferred: the CSV of every filtered run is built only when the button is clicked
    st.download_button("Download CSV", lambda: q.to_csv(table), file_name="leaderboard.csv", mime="text/csv",
                       key="csv")
    if len(table) > ROWS_SHOWN:
        st.caption(f"Showing the top {ROWS_SHOWN} of {len(table)} rows (the CSV holds all).")
    st.dataframe(highlight_best(table.head(ROWS_SHOWN), shown), hide_index=True, key="table")


def view_compare(frame: pd.DataFrame, db, metrics: list[str]) -> None:
    run_ids = pick_runs(frame, "Runs to compare (2 or more)", "cmp_runs", 2)
    if len(run_ids) < 2:
        st.info("Select at least two runs.")
        return
    configs = {r: q.load_run(db, r).get("config") for r in run_ids}
    st.subheader("Config diff")
    diff = q.config_diff(configs)
    if len(diff):
        diff.columns = [str(c) for c in diff.columns]
        st.dataframe(diff, key="cmp_diff")
    else:
        st.write("The configs are identical.")

    st.subheader("Metric curves")
    names = q.curve_names(db, run_ids)
    if names:
        c1, c2, c3, c4 = st.columns(4)
        chosen = c1.selectbox("Curve", names, key="cmp_curve")
        axis = c2.radio("x axis", ["step", "seconds"], horizontal=True, key="cmp_axis")
        log = c3.checkbox("log scale", key="cmp_log")
        weight = c4.slider("smoothing", 0.0, 0.99, 0.6, key="cmp_smooth")
        curves = q.load_curves(db, run_ids, [chosen])
        curves["value"] = curves.groupby("run_id")["value"].transform(
            lambda v: q.smooth(v.to_numpy(), weight))
        curves["run"] = curves["run_id"].astype(str)
        y_scale = alt.Scale(type="log") if log else alt.Scale(zero=False)
        chart = alt.Chart(curves).mark_line().encode(x=axis, y=alt.Y("value", scale=y_scale, title=chosen),
                                                     color="run:N")
        st.altair_chart(chart, width="stretch")
    else:
        st.write("No curves logged for these runs.")

    st.subheader("Paired bootstrap")
    metric = st.selectbox("Metric", metrics, key="cmp_metric")
    per_shape = q.load_per_shape(db, run_ids)
    rows = []
    for i, a in enumerate(run_ids):
        for b in run_ids[i + 1:]:
            if a not in per_shape or b not in per_shape:
                rows.append({"A": a, "B": b, "P(A better)": None, "shapes": 0,
                             "note": "per-shape scores not recorded"})
                continue
            try:
                prob, n = q.prob_better(per_shape[a], per_shape[b], metric)
                rows.append({"A": a, "B": b, "P(A better)": prob, "shapes": n, "note": ""})
            except (KeyError, ValueError) as exc:
                rows.append({"A": a, "B": b, "P(A better)": None, "shapes": 0, "note": str(exc)})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="cmp_boot")


def edit_policy(args) -> access.EditPolicy:
    """Who may edit, from where this app listens (``server.address``; unset = every interface)."""
    return access.EditPolicy.from_env(st.get_option("server.address"), read_only=args.read_only)


def sidebar_edit_token(policy: access.EditPolicy) -> None:
    if policy.needs_token:
        st.sidebar.text_input("Edit token", type="password", key="edit_token",
                              help=f"Editing tags and notes needs a secret of {access.ENV_TOKEN}.")


def view_detail(frame: pd.DataFrame, db, policy: access.EditPolicy) -> None:
    options = frame["run_id"].tolist()
    wanted = st.query_params.get("run")
    index = next((i for i, r in enumerate(options) if str(r) == str(wanted)), 0)
    run_id = st.selectbox("Run", options, index=index, key="detail_run")
    doc = q.load_run(db, run_id)
    st.subheader(f"Run {run_id} — {doc.get('status', '?')}")
    result = doc.get("result") if isinstance(doc.get("result"), dict) else {}
    tabs = st.tabs(["Result", "Config", "Provenance", "Output", "Artifacts", "Tags & notes"])
    with tabs[0]:
        metrics = result.get("metrics") or {}
        if metrics:
            st.dataframe(pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())}),
                         hide_index=True)
        st.json({k: v for k, v in result.items() if k not in ("metrics", "provenance")}, expanded=False)
    with tabs[1]:
        st.json(doc.get("config"), expanded=True)
    with tabs[2]:
        st.json({"provenance": result.get("provenance"), "host": doc.get("host"),
                 "experiment": doc.get("experiment"), "start_time": str(doc.get("start_time")),
                 "stop_time": str(doc.get("stop_time"))}, expanded=True)
    with tabs[3]:
        st.code(doc.get("captured_out") or "(no captured output)", language=None)
        if doc.get("fail_trace"):
            st.code("".join(doc["fail_trace"]), language=None)
    with tabs[4]:
        artifacts = [a for a in doc.get("artifacts") or [] if isinstance(a, dict) and "file_id" in a]
        if not artifacts:
            st.write("No artifacts.")
        for n, artifact in enumerate(artifacts):
            name = str(artifact.get("name"))
            data = q.load_artifact(db, artifact["file_id"])
            if name.lower().endswith((".png", ".jpg", ".jpeg", ".gif", ".webp")):
                st.image(data, caption=name)
            st.download_button(f"Download {name}", data, file_name=Path(name).name, key=f"art_{n}")
    with tabs[5]:
        board = doc.get("omniboard") if isinstance(doc.get("omniboard"), dict) else {}
        token = st.session_state.get("edit_token")
        editor = policy.authorize(token) if policy.enabled else None
        locked = editor is None
        tags = st.text_input("Tags (comma-separated)", ", ".join(board.get("tags") or []),
                             disabled=locked, key=f"tags_{run_id}")
        notes = st.text_area("Notes", board.get("notes") or "", disabled=locked, key=f"notes_{run_id}")
        if policy.why_disabled():
            st.caption(policy.why_disabled())
        elif locked:
            st.caption(f"Enter an edit token ({access.ENV_TOKEN}) in the sidebar to edit tags and notes.")
        else:
            st.caption(f"Edits are recorded as **{editor}**.")
        if st.button("Save tags and notes", disabled=locked, key="save_meta"):
            # checked again here: never trust that a disabled button cannot be clicked
            who = policy.authorize(st.session_state.get("edit_token"))
            if who is None:
                st.error("Not saved: editing needs a valid edit token." if policy.enabled else
                         f"Not saved: {policy.why_disabled()}")
            elif access.save_tags_and_notes(db, run_id, tags, notes, who):
                st.session_state["nonce"] = st.session_state.get("nonce", 0) + 1
                st.success("Saved.")
            else:
                st.info("Nothing changed.")


# view name → function(filtered runs, db, metric names, app arguments)
VIEWS = {
    "Leaderboard": lambda frame, db, metrics, args: view_leaderboard(frame, metrics),
    "Pareto": lambda frame, db, metrics, args: charts.view_pareto(frame, metrics),
    "Views": lambda frame, db, metrics, args: charts.view_views(frame),
    "Per category": lambda frame, db, metrics, args: charts.view_heatmap(frame, db),
    "Compare": lambda frame, db, metrics, args: view_compare(frame, db, metrics),
    "Run detail": lambda frame, db, metrics, args: view_detail(frame, db, edit_policy(args)),
}


@st.fragment(run_every=30)
def auto_refresh() -> None:
    # runs with the page (flag set) and then every 30 s on its own (flag still set) → reload the app
    if st.session_state.get("_refresh_armed"):
        st.session_state["nonce"] = st.session_state.get("nonce", 0) + 1
        st.rerun()
    st.session_state["_refresh_armed"] = True


def main() -> None:
    st.set_page_config(page_title="clip3d-bench leaderboard", layout="wide")
    args = parse_args(sys.argv[1:])
    st.title("clip3d-bench leaderboard")
    from runstore import StoreError

    try:
        client = get_client(args.url)
    except StoreError as exc:
        store_error(exc, args.url)
        return
    db = client[args.db]
    st.session_state.setdefault("nonce", 0)
    if st.sidebar.button("Refresh", key="refresh"):
        st.session_state["nonce"] += 1
    if st.sidebar.checkbox("Auto-refresh (30 s)", key="auto_refresh"):
        st.session_state["_refresh_armed"] = False
        auto_refresh()
    frame = get_runs(args.url, args.db, st.session_state["nonce"])
    skipped = frame.attrs.get("skipped", 0)
    if skipped:
        reasons = "; ".join(f"{n} × {r}" for r, n in frame.attrs.get("skip_reasons", {}).items())
        st.warning(f"Skipped {skipped} malformed or older run document(s): {reasons}.")
    if not len(frame):
        st.info(f"No runs in database `{args.db}` yet. Run the quickstart to record three:\n\n"
                f"```\n{QUICKSTART}\n```")
        return
    view = st.sidebar.radio("View", list(VIEWS), key="view")
    if args.read_only:
        st.sidebar.caption("read-only")
    sidebar_edit_token(edit_policy(args))
    filtered = sidebar_filters(frame)
    metrics = q.metric_columns(frame)
    st.caption(f"{len(filtered)} of {len(frame)} runs match the filters.")
    if not len(filtered):
        st.info("No run matches the filters.")
        return
    if not metrics and view in ("Leaderboard", "Pareto", "Compare"):
        st.info("No run has finished with results yet.")
        return
    VIEWS[view](filtered, db, metrics, args)


main()
