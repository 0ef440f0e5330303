"""``tox -e quickstart``: the main job end to end on the embedded store.

Synthetic `small` dataset → renders → clip3d-tiny in modes none (untrained baseline), linear and
full → evaluation on held-out shapes → three runs stored → table of the stored runs printed. A rerun reuses
the dataset, renders and feature caches (each run is recorded anew).
"""
from __future__ import annotations

import argparse
import sys

MODES = ("none", "linear", "full")
SHOWN = ["i2t_R@1", "i2t_R@5", "t2i_R@5", "photo2shape_R@5", "zs_top1", "cap_ret_CIDEr", "cap_gen_CIDEr",
         "probe_top1"]


def stored_table(db, run_ids) -> str:
    """The runs as the store holds them (read back, not from memory): identity and ``SHOWN`` metrics.

    A plain table here, not ``leaderboard.queries``: the harness never imports the leaderboard."""
    import pandas as pd

    docs = {d["_id"]: d for d in db.runs.find({"_id": {"$in": list(run_ids)}})}
    rows = []
    for run_id in run_ids:
        doc = docs.get(run_id) or {}
        cfg, metrics = doc.get("config") or {}, (doc.get("result") or {}).get("metrics") or {}
        rows.append({"run_id": run_id, "model": cfg.get("model", {}).get("name"),
                     "pretrained": cfg.get("model", {}).get("pretrained") or "-",
                     "mode": cfg.get("train", {}).get("mode"), "pooling": cfg.get("model", {}).get("pooling"),
                     "status": doc.get("status", "NOT IN THE STORE"),
                     **{m: metrics.get(m, float("nan")) for m in SHOWN}})
    return pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}")


def _literal(text: str):
    """A ``key=value`` value as Sacred's command line reads it: a Python literal, else the string."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.quickstart", description=__doc__.split("\n")[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), help="training modes to run")
    parser.add_argument("updates", nargs="*", help="extra config updates, e.g. train.epochs=2")
    args = parser.parse_args(argv)

    import runstore as store
    from harness import console

    console.setup()  # before Sacred is imported: its import warning, then the console log handler
    from harness.commands import ex

    url = store.resolve_url()
    print(f"run store: {store.describe()} at {store.mask_url(url)}", flush=True)
    updates = {k: _literal(v) for k, v in (u.split("=", 1) for u in args.updates)}
    run_ids = []
    for mode in args.modes:
        print(f"\n=== clip3d-tiny, train.mode={mode} ===", flush=True)
        # WARNING: Sacred's INFO lines would dump the whole result dict; the table below shows it.
        run = ex.run(named_configs=["quickstart"], config_updates={**updates, "train.mode": mode},
                     options={"--loglevel": "WARNING"})
        if run.status != "COMPLETED":
            print(f"run with train.mode={mode} ended {run.status}", file=sys.stderr)
            return 1
        seconds = (run.stop_time - run.start_time).total_seconds()
        print(f"run {run._id} completed in {seconds:.0f} s", flush=True)
        run_ids.append(run._id)

    client = store.connect(url)
    print("\n" + stored_table(client[updates.get("store.db", "clip3d")], run_ids))
    print("\nOpen the leaderboard:\n  streamlit run leaderboard/app.py   (or: python -m leaderboard)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
