"""Realistic fake run documents (Sacred MongoObserver layout) for tests, benchmarks and demos.

``make_runs(n, seed)`` returns run documents shaped like the harness writes them (config scope,
``result`` with metrics / ci95 / per_category / throughput / provenance, ``info.per_shape``,
heartbeat, captured output); ``make_curves(run)`` the matching ``metrics`` collection documents;
``populate(db, n, seed)`` inserts both (and one PNG artifact per ``artifact_every`` runs in GridFS).
CLI: ``python -m leaderboard.demo N [--url URL] [--db clip3d]``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import struct
import zlib

import numpy as np

MODELS = [("clip3d-tiny", None), ("clip3d-small", None), ("ViT-B-32", "openai"),
          ("ViT-B-32", "laion2b_s34b_b79k"), ("ViT-B-16", "openai")]
PARAMS = {"clip3d-tiny": 2.1e6, "clip3d-small": 11.4e6, "ViT-B-32": 151.3e6, "ViT-B-16": 149.6e6}
MODES = ["none", "linear", "projection", "lora", "partial", "full"]
POOLINGS = ["mean", "max", "single", "attention"]
DATASETS = [("runs/data/small", "small", "a1b2c3d4e5f6"), ("runs/data/tiny", "tiny", "0f9e8d7c6b5a"),
            ("/data/pix3d", None, "5d41402abc4b")]
CATEGORIES = ["bed", "bookcase", "chair", "desk", "misc", "sofa", "table", "tool", "wardrobe"]
EXPERIMENTS = ["clip3d", "clip3d-ablation"]
STATUSES = ["COMPLETED"] * 16 + ["FAILED", "RUNNING", "INTERRUPTED"]
T0 = dt.datetime(2026, 11, 1, 8, 0, 0)


def _metrics(quality: float, rng: np.random.Generator) -> dict[str, float]:
    """A consistent metric set for a model of the given latent quality in [0, 1]."""
    m = {}
    for task, scale in (("i2t", 1.0), ("t2i", 0.95), ("photo2shape", 0.8)):
        r1 = float(np.clip(quality * 0.6 * scale + rng.normal(0, 0.02), 0.001, 0.99))
        m[f"{task}_R@1"] = r1
        m[f"{task}_R@5"] = min(0.999, r1 * 2.0 + 0.05)
        m[f"{task}_R@10"] = min(0.999, r1 * 2.6 + 0.08)
        m[f"{task}_mAP"] = min(0.999, r1 * 1.3 + 0.02)
        m[f"{task}_medR"] = float(max(1.0, round(40 * (1 - quality) + rng.normal(0, 2))))
    m["probe_top1"] = float(np.clip(0.3 + quality * 0.6 + rng.normal(0, 0.02), 0, 1))
    for kind in ("cap_ret", "cap_gen"):
        m[f"{kind}_BLEU-4"] = float(np.clip(0.05 + quality * 0.25 + rng.normal(0, 0.01), 0, 1))
        m[f"{kind}_METEOR"] = float(np.clip(0.08 + quality * 0.2 + rng.normal(0, 0.01), 0, 1))
        m[f"{kind}_ROUGE_L"] = float(np.clip(0.2 + quality * 0.3 + rng.normal(0, 0.01), 0, 1))
        m[f"{kind}_CIDEr"] = float(max(0.0, 0.1 + quality * 1.2 + rng.normal(0, 0.05)))
    return m


def make_run(run_id: int, rng: np.random.Generator, n_shapes: int = 40) -> dict:
    """One Sacred run document with the harness's ``result`` schema."""
    name, pretrained = MODELS[rng.integers(len(MODELS))]
    mode = MODES[rng.integers(len(MODES))]
    pooling = POOLINGS[rng.integers(len(POOLINGS))]
    root, preset, fingerprint = DATASETS[rng.integers(len(DATASETS))]
    seed = int(rng.integers(3))
    status = STATUSES[rng.integers(len(STATUSES))]
    quality = (0.25 + 0.1 * MODELS.index((name, pretrained)) + 0.07 * MODES.index(mode)
               + rng.normal(0, 0.03))
    quality = float(np.clip(quality, 0.02, 0.98))
    start = T0 + dt.timedelta(minutes=int(run_id) * 7)
    metrics = _metrics(quality, rng)
    ci95 = {k: [max(0.0, v - 0.04), v + 0.04] for k, v in metrics.items() if not k.endswith("medR")}
    per_category = {c: {"i2t_R@1": float(np.clip(metrics["i2t_R@1"] + rng.normal(0, 0.08), 0, 1)),
                        "t2i_R@1": float(np.clip(metrics["t2i_R@1"] + rng.normal(0, 0.08), 0, 1))}
                    for c in CATEGORIES}
    shapes = [f"model/{CATEGORIES[i % len(CATEGORIES)]}/shape_{i:03d}/model.obj" for i in range(n_shapes)]
    per_shape = {"shapes": shapes,
                 "i2t_R@1": [float(x) for x in (rng.random(n_shapes) < metrics["i2t_R@1"])],
                 "t2i_R@1": [float(x) for x in (rng.random(n_shapes) < metrics["t2i_R@1"])]}
    eps = float(PARAMS[name] / 1e6)
    doc = {
        "_id": int(run_id),
        "experiment": {"name": EXPERIMENTS[rng.integers(len(EXPERIMENTS))], "base_dir": "/work/main",
                       "mainfile": "harness/__main__.py", "dependencies": ["torch==2.14.1"]},
        "format": "MongoObserver-0.7.0",
        "command": "run",
        "host": {"hostname": "ci", "cpu": "x86_64", "python_version": "3.11.2"},
        "start_time": start,
        "heartbeat": start + dt.timedelta(minutes=5),
        "meta": {"command": "run", "options": {"--name": None}, "comment": ""},
        "status": status,
        "config": {
            "seed": seed,
            "data": {"root": root, "synth_preset": preset},
            "model": {"name": name, "pretrained": pretrained, "pooling": pooling, "device": "cpu"},
            "train": {"mode": mode, "epochs": int(rng.integers(1, 20)), "lr": float(rng.choice([1e-4, 5e-4])),
                      "batch_size": 32},
            "eval": {"bootstrap": 1000},
            "store": {"db": "clip3d"},
        },
        "info": {"params": {"total": int(PARAMS[name]), "trainable": int(PARAMS[name] * 0.1)},
                 "per_shape": per_shape},
        "captured_out": f"INFO - clip3d - Running command 'run'\nepoch 1 loss 2.31\nrun {run_id} done\n",
        "artifacts": [],
        "resources": [],
        "omniboard": {"tags": ["demo"] + (["baseline"] if mode == "none" else []), "notes": ""},
    }
    if status == "RUNNING":
        # a run whose heartbeat stopped long ago: the leaderboard shows it as probably dead
        doc["heartbeat"] = start + dt.timedelta(minutes=1)
        return doc
    doc["stop_time"] = start + dt.timedelta(minutes=6)
    if status == "FAILED":
        doc["fail_trace"] = ["Traceback (most recent call last):\n", "RuntimeError: demo failure\n"]
        return doc
    doc["result"] = {
        "metrics": metrics,
        "ci95": ci95,
        "per_category": per_category,
        "throughput": {"render_views_per_s": float(rng.uniform(50, 400)),
                       "train_samples_per_s": float(rng.uniform(20, 900) / max(eps, 1.0) * 10),
                       "encode_images_per_s": float(3000 / max(eps, 1.0) ** 0.5 * rng.uniform(0.8, 1.2)),
                       "eval_seconds": float(rng.uniform(5, 60)), "device": "cpu"},
        "provenance": {"dataset_fingerprint": fingerprint, "split": "s0", "render_config_id": "rc01",
                       "model": name, "pretrained": pretrained, "weights_sha256": "ab" * 32,
                       "metric_impl": {"retrieval": "1"}, "git_commit": "44e890a", "seed": seed},
    }
    if run_id % 2:  # every other run has a view-count sweep and a rotation evaluation
        doc["result"].update(_sweeps(run_id, metrics))
    return doc


def _sweeps(run_id: int, metrics: dict) -> dict:
    """``by_views`` (accuracy rising with the number of views, as Duoduo CLIP reports) and ``by_rotation``
    (lower under rotation) of a demo run; its own generator, so the other demo figures stay as they were."""
    rng = np.random.default_rng(10_000 + int(run_id))
    names = ("i2t_R@1", "t2i_R@1", "zs_top1")
    by_views = {str(n): {m: float(np.clip(metrics[m] * (0.55 + 0.45 * np.log2(n) / np.log2(12))
                                          + rng.normal(0, 0.01), 0, 1)) for m in names if m in metrics}
                for n in (1, 2, 4, 12)}
    by_rotation = {"so3": {m: float(np.clip(metrics[m] * rng.uniform(0.5, 0.8), 0, 1))
                           for m in names if m in metrics}}
    return {"by_views": by_views, "by_rotation": by_rotation}


def make_runs(n: int, seed: int = 0, n_shapes: int = 40) -> list[dict]:
    """``n`` run documents with ids 1..n, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    return [make_run(i, rng, n_shapes) for i in range(1, n + 1)]


def make_curves(run: dict, steps: int = 50) -> list[dict]:
    """Sacred ``metrics`` documents (train loss, val loss, lr) for a run."""
    rng = np.random.default_rng(int(run["_id"]))
    step = list(range(0, steps * 10, 10))
    t0 = run["start_time"]
    stamps = [t0 + dt.timedelta(seconds=3 * i) for i in range(steps)]
    loss = (2.5 * np.exp(-np.arange(steps) / (steps / 3)) + 0.3 + rng.normal(0, 0.05, steps)).tolist()
    val = (2.6 * np.exp(-np.arange(steps) / (steps / 2.5)) + 0.4 + rng.normal(0, 0.03, steps)).tolist()
    lr = [5e-4 * min(1.0, (i + 1) / 5) for i in range(steps)]
    return [{"run_id": run["_id"], "name": name, "steps": step, "values": values, "timestamps": stamps}
            for name, values in (("train.loss", loss), ("val.loss", val), ("train.lr", lr))]


def tiny_png(rgb=(200, 60, 40), size: int = 8) -> bytes:
    """A valid solid-colour PNG (no Pillow needed), used as an image artifact."""
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def populate(db, n: int, seed: int = 0, curves_every: int = 1, artifact_every: int = 10,
             n_shapes: int = 40) -> list[dict]:
    """Insert ``n`` fake runs (+ curves for every ``curves_every``-th, artifacts) into ``db``."""
    import gridfs

    runs = make_runs(n, seed, n_shapes)
    fs = gridfs.GridFS(db)
    for run in runs:
        if artifact_every and run["_id"] % artifact_every == 1:
            name = "contact_sheet.png"
            file_id = fs.put(tiny_png(), filename=f"artifact://runs/{run['_id']}/{name}")
            text_id = fs.put(b"epoch,loss\n1,2.3\n", filename=f"artifact://runs/{run['_id']}/history.csv")
            run["artifacts"] = [{"name": name, "file_id": file_id},
                                {"name": "history.csv", "file_id": text_id}]
    for start in range(0, len(runs), 500):
        db.runs.insert_many(runs[start:start + 500])
    if curves_every:
        docs = [c for run in runs[::curves_every] for c in make_curves(run)]
        for start in range(0, len(docs), 500):
            db.metrics.insert_many(docs[start:start + 500])
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderboard.demo", description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, help="how many runs to insert")
    parser.add_argument("--url", default=None, help="MongoDB URL (default: the harness's resolution)")
    parser.add_argument("--db", default="clip3d")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from runstore import connect

    populate(connect(args.url)[args.db], args.n, args.seed)
    print(f"inserted {args.n} demo runs into db {args.db}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
